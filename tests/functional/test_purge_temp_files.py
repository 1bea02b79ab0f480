"""The purge_temp_files playbook on the real fleet's temp folders."""

from __future__ import annotations

import os
import time

from ansible_collections.dihya.ops.tests.support.fleet import HOSTS
from test_restart_services import recap

OLD = time.time() - 30 * 86400


def tree(fleet, host, outside):
    """Old and new files, hostile names, and a symlink out of the root, in the host's temp folders."""
    root = fleet.root(host)
    old = [root / "tmp" / "old-report.csv", root / "cache" / "sessions" / "old-session", root / "uploads" / "staging" / "; rm -rf x"]
    new = [root / "tmp" / "fresh.csv", root / "cache" / "fresh-session"]
    for path in old + new:
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text("x" * 100)
    for path in old:
        os.utime(path, (OLD, OLD))
    link = root / "tmp" / "outside"
    if not link.is_symlink():
        link.symlink_to(outside)
    return old, new


def snapshot(fleet):
    return sorted(str(path) for host in HOSTS for folder in ("tmp", "cache", "uploads") for path in (fleet.root(host) / folder).rglob("*"))


def test_check_mode_lists_and_removes_nothing_then_purge_is_idempotent(fleet, tmp_path):
    outside = tmp_path / "outside"
    outside.mkdir()
    victim = outside / "precious"
    victim.write_text("keep me")
    os.utime(victim, (OLD, OLD))
    planted = {host: tree(fleet, host, outside) for host in HOSTS}
    pids = fleet.pids()

    before = snapshot(fleet)
    check = fleet.playbook("playbooks/purge_temp_files.yml", "--check")
    assert check.returncode == 0, check.stdout + check.stderr
    assert snapshot(fleet) == before
    assert "Would remove 3 files" in check.stdout
    assert all(stats["changed"] == 1 for stats in recap(check.stdout).values())

    purge = fleet.playbook("playbooks/purge_temp_files.yml")
    assert purge.returncode == 0, purge.stdout + purge.stderr
    for host, (old, new) in planted.items():
        assert not any(path.exists() for path in old), host
        assert all(path.exists() for path in new), host
        assert (fleet.root(host) / "tmp").is_dir() and (fleet.root(host) / "uploads" / "staging").is_dir()
    assert victim.read_text() == "keep me"
    assert fleet.pids() == pids

    again = fleet.playbook("playbooks/purge_temp_files.yml")
    assert again.returncode == 0, again.stdout + again.stderr
    assert all(stats["changed"] == 0 for stats in recap(again.stdout).values())


def test_paths_outside_the_allowed_roots_are_refused(fleet, tmp_path):
    victim = tmp_path / "old"
    victim.write_text("x")
    os.utime(victim, (OLD, OLD))
    proc = fleet.playbook("playbooks/purge_temp_files.yml", "--limit", "dihya-demo-1",
                          "-e", '{"purge_temp_files_paths": ["' + str(tmp_path) + '"]}')
    output = proc.stdout + proc.stderr
    assert proc.returncode != 0
    assert "allowed_roots" in output and "Traceback" not in output
    assert victim.exists()


def test_backend_folders_are_refused_and_nothing_is_removed(fleet):
    """The backend root itself (code, database, virtual environment inside) and its protected folders are refused."""
    host = "dihya-demo-1"
    root = fleet.root(host)
    junk = root / "tmp" / "old-junk"
    junk.parent.mkdir(parents=True, exist_ok=True)
    junk.write_text("x")
    os.utime(junk, (OLD, OLD))
    database = sorted((root / "data").glob("*.db"))
    assert database, "the demo backend has a database"
    for paths, check in (([str(root)], "--check"), ([str(root) + "/"], None), ([str(root / "tmp"), str(root / "data")], None),
                         ([str(root / "tmp"), str(root / "app") + "/."], "--check"), ([str(root / "venv")], None)):
        args = ["--limit", host, "-e", '{"purge_temp_files_paths": ' + str(paths).replace("'", '"') + "}"]
        proc = fleet.playbook("playbooks/purge_temp_files.yml", *args, *([check] if check else []))
        output = proc.stdout + proc.stderr
        assert proc.returncode != 0, output
        assert "protected path" in output and "Traceback" not in output
        assert ".git" not in output and "dihya.db" not in output.replace(str(root / "data"), "")
        assert junk.exists() and all(path.exists() for path in database)
        assert (root / "venv" / "bin").is_dir() and (root / "app").is_dir()
