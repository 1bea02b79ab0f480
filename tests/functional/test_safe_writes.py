"""The rgpd role never writes over or through what is already at an export's name, on the host or on the controller.

Each run gives every host of the fleet its own case (see ``per_host``). The archive's name is pinned through
the role's internal ``_rgpd_archive`` (extra variables win over set_fact) so that the test can put something
at the archive's name, on the host and on the controller, before the run.
"""

from __future__ import annotations

import base64
import json
import os
import secrets
import stat

import pytest

from ansible_collections.dihya.ops.tests.support.fleet import HOSTS, ROOT

DATA_MAP = ROOT / "docs" / "examples" / "rgpd-datamap-demo.yml"
PRECIOUS = b"precious, not an archive\n"
MAGIC = b"DIHYA-RGPD-AESGCM-1\n"
FOUND = {"file": "a regular file", "symlink": "a symbolic link", "dangling": "a symbolic link", "directory": "a directory",
         "fifo": "a FIFO", "device": "a device"}


def per_host(requests):
    """{host: {var: value}} -> {var: "{{ {...}[inventory_hostname] }}"}: each host gets its own value."""
    names = {name for values in requests.values() for name in values}
    return {name: "{{ " + json.dumps({host: values[name] for host, values in requests.items()}) + "[inventory_hostname] }}" for name in names}


def state(path):
    """Type, inode and content (or link target, or listing) of what is at ``path``."""
    try:
        info = os.lstat(path)
    except FileNotFoundError:
        return None
    if stat.S_ISREG(info.st_mode):
        extra = path.read_bytes()
    elif stat.S_ISLNK(info.st_mode):
        extra = os.readlink(path)
    elif stat.S_ISDIR(info.st_mode):
        extra = sorted(os.listdir(path))
    else:
        extra = info.st_rdev
    return stat.S_IFMT(info.st_mode), info.st_ino, extra


def make(kind, path, victims):
    victims.mkdir(parents=True, exist_ok=True)
    (victims / "target").write_bytes(PRECIOUS)
    if kind == "file":
        path.write_bytes(PRECIOUS)
    elif kind == "symlink":
        path.symlink_to(victims / "target")
    elif kind == "dangling":
        path.symlink_to(victims / "nowhere")
    elif kind == "directory":
        path.mkdir()
    elif kind == "fifo":
        os.mkfifo(path)
    elif kind == "device":
        # The same device numbers as /dev/null, made here: the system's own node is never touched.
        os.mknod(path, stat.S_IFCHR | 0o666, os.makedev(1, 3))
    else:
        raise ValueError(kind)


@pytest.fixture
def export(fleet, tmp_path):
    """Run an export on every host (subject 3 of acme), each host with its pinned archive name; return the run and the paths."""
    key = base64.urlsafe_b64encode(secrets.token_bytes(32)).decode()
    fetch = tmp_path / "fetch"
    (fetch / "acme").mkdir(parents=True, mode=0o700)
    written = []

    def play(names, force=False):
        archives = {host: fleet.root(host) / "rgpd" / "exports" / names[host] for host in HOSTS}
        written.extend(archives.values())
        for path in archives.values():
            path.parent.mkdir(parents=True, exist_ok=True, mode=0o700)
        extra = tmp_path / f"vars-{secrets.token_hex(4)}.json"
        extra.touch(mode=0o600)
        extra.write_text(json.dumps({
            "rgpd_data_map": str(DATA_MAP), "rgpd_export_key": key, "rgpd_operation": "export", "rgpd_tenant": "acme",
            "rgpd_subject_id": "3", "rgpd_fetch_dir": str(fetch), "rgpd_force": force,
            **per_host({host: {"_rgpd_archive": str(archives[host])} for host in HOSTS}),
        }))
        proc = fleet.playbook("playbooks/rgpd.yml", "-e", f"@{extra}", timeout=300)
        output = proc.stdout + proc.stderr
        assert "Traceback" not in output and key not in output, output
        fetched = {host: fetch / "acme" / f"{host}-{names[host]}" for host in HOSTS}
        return proc, archives, fetched

    yield play
    # The archives refused at the fetch stay on the hosts: remove them, the fleet is shared with other tests.
    for path in written:
        if path.is_symlink() or path.is_file():
            path.unlink()


@pytest.mark.parametrize("force", [False, True], ids=["no-force", "force"])
def test_fetch_refuses_what_is_at_the_controller_name(fleet, export, tmp_path, force):
    cases = dict(zip(HOSTS, ("symlink", "fifo", "device") if force else ("file", "symlink", "dangling"), strict=True))
    names = {host: f"case-{kind}-{secrets.token_hex(3)}.zip.enc" for host, kind in cases.items()}
    fetched = {host: tmp_path / "fetch" / "acme" / f"{host}-{names[host]}" for host in HOSTS}
    for host, kind in cases.items():
        make(kind, fetched[host], tmp_path / "victims")
    before = {host: state(path) for host, path in fetched.items()}
    victims = state(tmp_path / "victims" / "target")

    proc, archives, dummy = export(names, force=force)
    output = proc.stdout + proc.stderr
    assert proc.returncode != 0, output
    for host, kind in cases.items():
        assert state(fetched[host]) == before[host], f"{host}: the {kind} at the controller name must be left as it was"
        assert f"{fetched[host]} already exists on the controller ({FOUND[kind]}); refusing to replace it" in " ".join(output.split())
        assert archives[host].read_bytes().startswith(MAGIC), "the archive stays on the host"
    assert state(tmp_path / "victims" / "target") == victims
    assert not list((tmp_path / "fetch" / "acme").glob(".fetch-*")), "no private fetch folder stays behind"


def test_fetch_with_force_replaces_only_a_regular_file_and_never_writes_through(fleet, export, tmp_path):
    cases = dict(zip(HOSTS, ("file", "directory", "missing"), strict=True))
    names = {host: f"force-{kind}-{secrets.token_hex(3)}.zip.enc" for host, kind in cases.items()}
    fetched = {host: tmp_path / "fetch" / "acme" / f"{host}-{names[host]}" for host in HOSTS}
    for host, kind in cases.items():
        if kind != "missing":
            make(kind, fetched[host], tmp_path / "victims")
    before = {host: state(path) for host, path in fetched.items()}

    proc, dummy_archives, dummy = export(names, force=True)
    output = " ".join((proc.stdout + proc.stderr).split())
    assert proc.returncode != 0, output  # the directory is refused
    directory_host, file_host, new_host = HOSTS[1], HOSTS[0], HOSTS[2]
    assert state(fetched[directory_host]) == before[directory_host]
    assert f"{fetched[directory_host]} already exists on the controller (a directory)" in output
    for host in (file_host, new_host):
        data = fetched[host].read_bytes()
        assert data.startswith(MAGIC) and data != PRECIOUS
        assert stat.S_IMODE(os.lstat(fetched[host]).st_mode) == 0o600
    assert os.lstat(fetched[file_host]).st_ino != before[file_host][1], "the old file is replaced by rename, not rewritten"


def test_the_host_archive_name_is_never_written_over_without_force_nor_through_with_it(fleet, export, tmp_path):
    names = {host: f"host-{secrets.token_hex(3)}.zip.enc" for host in HOSTS}
    host_cases = {HOSTS[0]: "file", HOSTS[1]: "fifo", HOSTS[2]: "symlink"}
    victims = tmp_path / "victims"
    for host, kind in host_cases.items():
        path = fleet.root(host) / "rgpd" / "exports" / names[host]
        path.parent.mkdir(parents=True, exist_ok=True, mode=0o700)
        make(kind, path, victims)
    paths = {host: fleet.root(host) / "rgpd" / "exports" / names[host] for host in HOSTS}
    before = {host: state(path) for host, path in paths.items()}
    try:
        for force in (False, True):
            proc, dummy_archives, fetched = export(names, force=force)
            output = " ".join((proc.stdout + proc.stderr).split())
            assert proc.returncode != 0, output
            for host in (HOSTS[1], HOSTS[2]):
                assert state(paths[host]) == before[host], f"{host_cases[host]} at the host archive name, force={force}"
                assert not fetched[host].exists()
            assert f"{paths[HOSTS[1]]} is a FIFO; refusing to write through or over it" in output
            assert f"{paths[HOSTS[2]]} is a symbolic link; refusing to write through or over it" in output
            assert state(victims / "target")[2] == PRECIOUS
            if not force:
                assert state(paths[HOSTS[0]]) == before[HOSTS[0]]
                assert f"{paths[HOSTS[0]]} is an existing file; refusing" in output
        # With force, the regular file on the first host was replaced by the archive (then fetched and removed).
        assert fetched[HOSTS[0]].read_bytes().startswith(MAGIC)
    finally:
        for path in paths.values():
            if path.is_symlink() or path.exists():
                path.unlink()


@pytest.mark.parametrize("kind", ["symlink", "fifo"])
def test_restart_marker_that_is_not_a_regular_file_stops_the_host_before_the_restart(fleet, tmp_path, kind):
    host = HOSTS[0]
    marker = fleet.root(host) / "state" / "web.restart-id"
    marker.parent.mkdir(parents=True, exist_ok=True)
    if marker.is_symlink() or marker.exists():
        marker.unlink()
    victims = tmp_path / "victims"
    make(kind, marker, victims)
    before, victim = state(marker), state(victims / "target")
    pid = fleet.gunicorn_pid(host)
    try:
        proc = fleet.playbook("playbooks/restart_services.yml", "--limit", host, "-e", f"restart_services_request_id=CHG-{kind}")
        output = " ".join((proc.stdout + proc.stderr).split())
        assert proc.returncode != 0, output
        assert f"The restart marker {marker} is {FOUND[kind]}; refusing to write through or over it" in output
        assert state(marker) == before and state(victims / "target") == victim
        assert fleet.gunicorn_pid(host) == pid, "nothing was restarted"
    finally:
        marker.unlink()


def test_fetch_refuses_a_tenant_folder_that_is_a_symbolic_link(fleet, export, tmp_path):
    """The tenant's folder on the controller is the role's own: a link there would send the archive elsewhere."""
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    tenant_dir = tmp_path / "fetch" / "acme"
    tenant_dir.rmdir()
    tenant_dir.symlink_to(elsewhere)
    names = {host: f"tenant-link-{secrets.token_hex(3)}.zip.enc" for host in HOSTS}
    proc, archives, dummy = export(names)
    output = " ".join((proc.stdout + proc.stderr).split())
    assert proc.returncode != 0, output
    assert f"{tenant_dir} on the controller is a symbolic link; refusing to fetch through it" in output
    assert os.listdir(elsewhere) == [] and os.readlink(tenant_dir) == str(elsewhere)
    assert all(path.read_bytes().startswith(MAGIC) for path in archives.values()), "the archives stay on the hosts"
