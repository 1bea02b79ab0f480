# Copyright (c) Dihya ops maintainers
# GNU General Public License v3.0+ (see LICENSES/GPL-3.0-or-later.txt or https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later

"""Every operation playbook on the second sample backend, chirp (tests/social_backend), in check mode and for real.

chirp is deliberately unlike the demo: one tenant and no tenant column, ids SQLite hands out again, secrets in
the user table, followers and private messages, an HTML login page for health, an application log it rotates
itself in three gunicorn workers, a current/ + shared/ layout with the virtual environment elsewhere. Its
inventory (tests/social_backend/inventory) sets documented variables only; the first test counts the others.

Check mode must leave the PID of the gunicorn master, every file of the sandbox and every row of the database
as they were; each real run's effect is checked. The instance is deployed once for this file (the functional
stage keeps a file's tests on one worker, in order) and torn down by PID at the end.
"""

from __future__ import annotations

import json
import os
import pathlib
import re
import secrets
import shutil
import sqlite3
import subprocess
import sys
import time
import typing as t
import zipfile

import pytest
import yaml
from ansible.parsing.vault import VaultLib, VaultSecret

from ansible_collections.dihya.ops.plugins.module_utils._rgpd_archive import decrypt_archive
from ansible_collections.dihya.ops.tests.support.fleet import ROOT
from ansible_collections.dihya.ops.tests.support.social import HOST, INVENTORY, Social, recap, social_for_worker
from ansible_collections.dihya.ops.tests.support.wheelbuilder import build_all

ROLE = ROOT / "tests" / "social_backend" / "roles" / "social_backend"
REAL_ADVISORIES = ROOT / "tests" / "fixtures" / "osv"
# Variables of Ansible itself that an inventory sets for the connection (documented by Ansible).
CONNECTION_VARIABLES = frozenset({"ansible_connection", "ansible_python_interpreter"})
# Keys of a dihya_backend_services entry the model documents.
SERVICE_KEYS = ("name", "manager", "unit", "pidfile", "error_log")


@pytest.fixture(scope="module")
def chirp() -> t.Iterator[Social]:
    social = social_for_worker()
    if social.sandbox.exists():  # left by an interrupted run: start from nothing
        social.playbook("tests/social_backend/teardown.yml", "-e", "social_backend_purge=true")
    deployed = social.playbook("tests/social_backend/deploy.yml")
    try:
        assert deployed.returncode == 0, deployed.stdout + deployed.stderr
        yield social
    finally:
        social.playbook("tests/social_backend/teardown.yml", "-e", "social_backend_purge=true")
        left = social.processes()
        assert not left, f"processes of the instance survived the teardown: {left}"
        assert not social.sandbox.exists(), sorted(str(path) for path in social.sandbox.rglob("*"))[:20]


def ok(proc: subprocess.CompletedProcess[str]) -> str:
    output = proc.stdout + proc.stderr
    assert proc.returncode == 0, output[-6000:]
    assert "Traceback" not in output, output[-6000:]
    return output


def changed(output: str) -> int:
    return recap(output)[HOST]["changed"]


class Runs(t.NamedTuple):
    checked: str
    real: str
    before: dict[str, t.Any]


def check_then_real(chirp: Social, *args: str) -> Runs:
    """Run a playbook with --check (asserting nothing changed), then for real; the outputs and the state before."""
    before = chirp.state()
    checked = ok(chirp.playbook(*args, "--check"))
    assert_unchanged(chirp, before)
    return Runs(checked, ok(chirp.playbook(*args)), before)


def assert_unchanged(chirp: Social, before: dict[str, t.Any]) -> None:
    """The gunicorn master, every file of the sandbox and every row are as they were; else name what changed."""
    after = chirp.state()
    if after != before:
        files = {path for path in before["files"].keys() | after["files"].keys() if before["files"].get(path) != after["files"].get(path)}
        tables = [table for table in before["rows"].keys() | after["rows"].keys() if before["rows"].get(table) != after["rows"].get(table)]
        raise AssertionError(f"check mode changed the instance: pid {before['pid']} -> {after['pid']}, files {sorted(files)[:10]}, "
                             f"tables {sorted(tables)}")


# --- the inventory: documented variables only -------------------------------------------------------------------

def documented_variables() -> set[str]:
    """Every variable the collection documents: the backend model (docs/*.md) and every role's options."""
    names: set[str] = set()
    for doc in (ROOT / "docs").glob("*.md"):
        names.update(re.findall(r"`(dihya_[a-z0-9_]+)`", doc.read_text()))
        names.update(re.findall(r"\b(dihya_backend_[a-z0-9_]+)\b", doc.read_text()))
    for spec in (ROOT / "roles").glob("*/meta/argument_specs.yml"):
        for entry in yaml.safe_load(spec.read_text())["argument_specs"].values():
            names.update(entry.get("options", {}))
    return names


def inventory_variables() -> dict[str, t.Any]:
    hosts = yaml.safe_load((INVENTORY / "hosts.yml").read_text())
    found: dict[str, t.Any] = {}
    for group in hosts.values():
        found.update(group.get("vars") or {})
        for host_vars in (group.get("hosts") or {}).values():
            found.update(host_vars or {})
    for path in sorted((INVENTORY / "group_vars").rglob("*.yml")):
        if path.name != "vault.yml":
            found.update(yaml.safe_load(path.read_text()) or {})
    for path in sorted((INVENTORY / "host_vars").rglob("*.yml")) if (INVENTORY / "host_vars").exists() else []:
        found.update(yaml.safe_load(path.read_text()) or {})
    return found


def vault_values() -> dict[str, str]:
    """The inventory's Vault values, opened with the demo password that ansible.cfg names."""
    vault = VaultLib([("default", VaultSecret((ROOT / "inventories" / "local" / "demo-vault-password").read_bytes().strip()))])

    class Loader(yaml.SafeLoader):
        pass

    Loader.add_constructor("!vault", lambda loader, node: vault.decrypt(loader.construct_scalar(node)).decode())
    values: dict[str, str] = yaml.load((INVENTORY / "group_vars" / "dihya_backend" / "vault.yml").read_text(), Loader=Loader)
    return values


def test_the_inventory_sets_documented_variables_only():
    variables = inventory_variables()
    documented = documented_variables()
    undocumented = sorted(name for name in variables if name not in documented and name not in CONNECTION_VARIABLES)
    assert undocumented == [], f"{len(undocumented)} undocumented overrides: {undocumented}"
    role_variable = re.compile(r"(check_health|restart_services|purge_temp_files|rotate_logs|update_dependencies|rgpd|operation)_")
    assert not [name for name in variables if role_variable.match(name)], "no role variable is overridden"
    model = " ".join((ROOT / "docs" / "backend-model.md").read_text().split())
    for service in variables["dihya_backend_services"]:
        assert set(service) <= set(SERVICE_KEYS) and all(f"`{key}`" in model or f"{key}," in model or f"{key}}}" in model
                                                         for key in service), service
    # Secrets come from the Vault only, each read by a documented model variable.
    secrets_in_vault = set(vault_values())
    assert secrets_in_vault and all(name.startswith("vault_") for name in secrets_in_vault)
    assert all(any(isinstance(value, str) and name in value for value in variables.values()) for name in secrets_in_vault)


def test_the_deploy_role_documents_its_defaults():
    sys.path.insert(0, str(ROOT / "tests" / "lint"))
    try:
        from check_argument_specs import check_role  # pylint: disable=import-outside-toplevel
    finally:
        sys.path.pop(0)
    assert check_role(ROLE) == []


# --- the application and its deployment -------------------------------------------------------------------------

def test_deployment_is_idempotent_and_check_mode_safe(chirp):
    before = chirp.state()
    assert changed(ok(chirp.playbook("tests/social_backend/deploy.yml", "--check"))) == 0
    assert changed(ok(chirp.playbook("tests/social_backend/deploy.yml"))) == 0
    assert chirp.state() == before
    status, content_type, body = chirp.request("/login")
    assert status == 200 and content_type.startswith("text/html") and '<form method="post" action="/login">' in body
    assert chirp.request("/healthz")[0] == 404, "no JSON health endpoint"
    workers = subprocess.run(["pgrep", "--parent", str(chirp.gunicorn_pid())], capture_output=True, text=True, check=False).stdout.split()
    assert len(workers) == 3


def test_the_highest_id_is_handed_out_again_after_a_deletion(chirp, tmp_path):
    copy = tmp_path / "copy.sqlite3"
    with sqlite3.connect(f"file:{chirp.db_path}?mode=ro", uri=True) as source, sqlite3.connect(copy) as target:
        source.backup(target)
    with sqlite3.connect(copy) as db:
        highest = db.execute('SELECT max(id) FROM "user"').fetchone()[0]
        db.execute('INSERT INTO "user" (username, email, display_name, password_hash, member_since) '
                   "VALUES ('newcomer', 'newcomer@example.org', 'New', 'x', 'now')")
        first = db.execute('SELECT id FROM "user" WHERE username = ?', ("newcomer",)).fetchone()[0]
        db.execute('DELETE FROM "user" WHERE id = ?', (first,))
        db.execute('INSERT INTO "user" (username, email, display_name, password_hash, member_since) '
                   "VALUES ('another', 'another@example.org', 'Other', 'x', 'later')")
        second = db.execute('SELECT id FROM "user" WHERE username = ?', ("another",)).fetchone()[0]
    assert first == second == highest + 1


# --- check_health, restart_services, purge_temp_files ----------------------------------------------------------

def test_check_health_on_the_html_login_page(chirp):
    metrics = chirp.shared / "metrics" / "dihya_health.prom"
    runs = check_then_real(chirp, "playbooks/check_health.yml")
    assert re.search(r"(\d+)/\1 checks healthy", runs.real), runs.real[-3000:]
    assert metrics.is_file() and 'dihya_health_check_up{' in metrics.read_text()
    assert chirp.gunicorn_pid() == runs.before["pid"]


def test_restart_services_restarts_gunicorn_behind_the_login_page_gate(chirp):
    runs = check_then_real(chirp, "playbooks/restart_services.yml")
    assert changed(runs.checked) >= 1, "check mode reports the restart it would do"
    after = chirp.gunicorn_pid()
    assert after is not None and after != runs.before["pid"]
    assert chirp.request("/login")[0] == 200


def test_purge_temp_files_removes_old_uploads_only(chirp):
    tmp = chirp.shared / "tmp"
    old, fresh, log = tmp / "avatar-upload.part", tmp / "fresh.part", chirp.log_dir / "old-but-a-log.log"
    long_ago = time.time() - 30 * 86400
    for path in (old, fresh, log):
        path.write_text("x" * 100)
    for path in (old, log):
        os.utime(path, (long_ago, long_ago))
    check_then_real(chirp, "playbooks/purge_temp_files.yml")
    assert not old.exists() and fresh.exists() and log.exists()
    log.unlink()
    fresh.unlink()


# --- rotate_logs: gunicorn's logs rotated, the self-rotated application log recognised ---------------------------

def test_rotate_logs_rotates_gunicorn_logs_and_leaves_the_self_rotated_app_log_alone(chirp):
    # Enough requests for chirp's RotatingFileHandler (64 KiB) to rotate chirp.log itself, in several workers.
    for number in range(400):
        chirp.request(f"/u/nobody-{number}-" + "x" * 200)
    assert (chirp.log_dir / "chirp.log.1").is_file(), "the application rotated its own log"
    access = chirp.log_dir / "access.log"
    inode, master = access.stat().st_ino, chirp.gunicorn_pid()
    # The schedule's cron.d entry goes to the sandbox, not to this machine's /etc/cron.d.
    cron_dir = chirp.sandbox / "cron.d"
    cron_dir.mkdir(exist_ok=True)
    try:
        rotate_and_check(chirp, cron_dir, access, inode, master)
    finally:
        shutil.rmtree(cron_dir)


def rotate_and_check(chirp: Social, cron_dir: pathlib.Path, access: pathlib.Path, inode: int, master: int | None) -> None:
    """rotate_logs, forced, in check mode then for real; then in check mode with chirp.log wrongly listed."""
    cron = ("-e", f"rotate_logs_cron_dir={cron_dir}")
    check_then_real(chirp, "playbooks/rotate_logs.yml", "-e", "rotate_logs_force=true", *cron)
    config = (chirp.root / "etc" / "logrotate.conf").read_text()
    assert str(chirp.log_dir / "access.log") in config and "chirp.log" not in config, "logrotate leaves chirp.log to the application"
    rotated = [path.name for path in chirp.log_dir.iterdir() if path.name.startswith("access.log") and path.name != "access.log"]
    assert rotated, sorted(path.name for path in chirp.log_dir.iterdir())
    assert access.stat().st_ino != inode, "logrotate moved the access log away"
    # USR1 reaches the master, which then tells each worker to reopen: a worker may still write one line to the moved
    # file. Requests until one lands in the new file, bounded in time.
    deadline = time.monotonic() + 20
    while True:
        assert chirp.request("/login")[0] == 200
        if access.stat().st_size > 0 or time.monotonic() > deadline:
            break
        time.sleep(0.2)
    assert access.stat().st_size > 0, "gunicorn reopened its access log"
    assert chirp.gunicorn_pid() == master, "a signal, not a restart"
    assert not [name for name in os.listdir(chirp.log_dir) if name.startswith("chirp.log-")]
    entries = list(cron_dir.iterdir())
    assert len(entries) == 1 and str(chirp.root / "etc" / "logrotate.conf") in entries[0].read_text()

    # Had the inventory listed chirp.log with the logs to rotate, its numbered backups give it away.
    before = chirp.state()
    listed = json.dumps({"dihya_backend_logs": [str(chirp.log_dir / name) for name in ("access.log", "error.log", "chirp.log")],
                         "dihya_backend_self_rotated_logs": []})
    output = " ".join(ok(chirp.playbook("playbooks/rotate_logs.yml", "--check", "-e", listed, *cron)).split())
    assert re.search(r"the app rotates these logs itself on chirp-1: \S*/chirp\.log \(numbered backups chirp\.log\.1", output), output[-3000:]
    assert_unchanged(chirp, before)


# --- update_dependencies from local wheels ----------------------------------------------------------------------

def test_update_dependencies_from_local_wheels(chirp, tmp_path):
    wheels = build_all(tmp_path / "wheels")
    pip = [str(chirp.venv / "bin" / "python"), "-m", "pip", "--disable-pip-version-check"]
    subprocess.run([*pip, "install", "--quiet", "--no-index", "--find-links", str(wheels), "dihya-demo-ext==1.0.0"],
                   check=True, timeout=120, capture_output=True)
    extra = json.dumps({
        "update_dependencies_packages": ["dihya-demo-ext==1.1.0"],
        "update_dependencies_find_links": [str(wheels)],
        "update_dependencies_no_index": True,
        "update_dependencies_osv_dirs": [str(REAL_ADVISORIES)],
        "update_dependencies_health_deadline": 30,
    })

    def freeze() -> list[str]:
        return subprocess.run([*pip, "freeze"], check=True, timeout=60, capture_output=True, text=True).stdout.splitlines()

    assert "dihya-demo-ext==1.0.0" in freeze()
    runs = check_then_real(chirp, "playbooks/update_dependencies.yml", "-e", extra)
    assert "1.1.0" in runs.checked
    assert "dihya-demo-ext==1.1.0" in freeze()
    assert chirp.gunicorn_pid() not in (None, runs.before["pid"]), "restarted behind the health gate"
    assert chirp.request("/login")[0] == 200


# --- rgpd: inventory, export, anonymise, erase, consent, replay ------------------------------------------------

def rgpd(chirp: Social, tmp_path: pathlib.Path, operation: str, subject: int, *args: str, **variables: t.Any) -> subprocess.CompletedProcess[str]:
    extra = tmp_path / f"rgpd-{secrets.token_hex(4)}.json"
    extra.write_text(json.dumps({"rgpd_operation": operation, "rgpd_subject_id": str(subject), **variables}))
    return chirp.playbook("playbooks/rgpd.yml", "-e", f"@{extra}", *args)


def footprint(chirp: Social, user: int) -> dict[str, int]:
    where = {"user": "id = ?", "followers": "follower_id = ? OR followed_id = ?", "post": "user_id = ?",
             "comment": "user_id = ?", "message": "sender_id = ? OR recipient_id = ?"}
    return {table: chirp.query(f'SELECT count(*) FROM "{table}" WHERE {cond}', *[user] * cond.count("?"))[0][0]
            for table, cond in where.items()}


def busiest(chirp: Social, skip: tuple[int, ...] = ()) -> int:
    # Seeded people only: not the tombstones that erasures leave (their e-mail is a pseudonym).
    ranked = chirp.query('SELECT u.id FROM "user" u WHERE u.email LIKE \'%@example.org\' '
                         "ORDER BY (SELECT count(*) FROM message m WHERE m.sender_id = u.id) > 0 "
                         "AND (SELECT count(*) FROM message m WHERE m.recipient_id = u.id) > 0 DESC, "
                         "(SELECT count(*) FROM followers f WHERE f.followed_id = u.id) DESC, u.id")
    return next(user for (user,) in ranked if user not in skip)


def test_rgpd_inventory_checks_the_map_and_reads_only(chirp, tmp_path):
    user = busiest(chirp)
    before = chirp.state()
    for args in (("--check",), ()):
        output = ok(rgpd(chirp, tmp_path, "inventory", user, *args))
        assert changed(output) == 0 and "tenant: main" in output
    assert chirp.state()["rows"] == before["rows"]
    refused = rgpd(chirp, tmp_path, "inventory", user, rgpd_tenant="acme")
    assert refused.returncode != 0 and "acme" in refused.stdout + refused.stderr


def test_rgpd_export_holds_both_sides_and_no_secret(chirp, tmp_path):
    user = busiest(chirp)
    fetch = chirp.sandbox / "rgpd-exports"
    secret_values = chirp.query('SELECT password_hash, api_token FROM "user" WHERE id = ?', user)[0]
    check_then_real(chirp, "playbooks/rgpd.yml", "-e", json.dumps(
        {"rgpd_operation": "export", "rgpd_subject_id": str(user)}))
    archives = [path for path in fetch.rglob("*") if path.is_file()]
    assert len(archives) == 1, archives
    plain = tmp_path / "export.zip"
    decrypt_archive(str(archives[0]), str(plain), vault_values()["vault_chirp_export_key"])
    with zipfile.ZipFile(plain) as archive:
        manifest = json.loads(archive.read("manifest.json"))
        assert {table: entry["rows"] for table, entry in manifest["tables"].items()} == footprint(chirp, user)
        everything = b"".join(archive.read(name) for name in archive.namelist())
        rows = {table: json.loads(archive.read(f"{table}.json")) for table in manifest["tables"]}
    assert all(secret_values) and not [value for value in secret_values if value.encode() in everything], "no password hash or API token"
    assert {user} == {row["id"] for row in rows["user"]} and "password_hash" not in rows["user"][0]
    assert any(row["sender_id"] == user for row in rows["message"]) and any(row["recipient_id"] == user for row in rows["message"])
    assert any(row["follower_id"] == user for row in rows["followers"]) and any(row["followed_id"] == user for row in rows["followers"])
    shutil.rmtree(fetch)


def test_rgpd_anonymise_then_erase(chirp, tmp_path):
    first = busiest(chirp)
    second = busiest(chirp, skip=(first,))
    runs = check_then_real(chirp, "playbooks/rgpd.yml", "-e", json.dumps(
        {"rgpd_operation": "anonymise", "rgpd_subject_id": str(first)}))
    username, email, password_hash, token = chirp.query('SELECT username, email, password_hash, api_token FROM "user" WHERE id = ?', first)[0]
    old = {row[0]: row for row in runs.before["rows"]["user"]}[first]
    assert username != old[1] and email != old[2] and password_hash != old[5] and token != old[6]

    messages = footprint(chirp, second)["message"]
    runs = check_then_real(chirp, "playbooks/rgpd.yml", "-e", json.dumps(
        {"rgpd_operation": "erase", "rgpd_subject_id": str(second), "rgpd_confirm_erase": True}))
    assert messages > 0 and footprint(chirp, second) == {"user": 0, "followers": 0, "post": 0, "comment": 0, "message": 0}
    assert chirp.request("/login")[0] == 200


def test_rgpd_consent_is_refused_without_a_consent_table(chirp, tmp_path):
    # chirp keeps no consent history: its map has no consent section, and the operation says so.
    before = chirp.state()["rows"]
    proc = rgpd(chirp, tmp_path, "consent", busiest(chirp))
    assert proc.returncode != 0 and re.search(r"consent", proc.stdout + proc.stderr)
    assert "Traceback" not in proc.stdout + proc.stderr
    assert chirp.state()["rows"] == before


def test_rgpd_replay_after_a_restore_spares_the_newcomer_with_the_reused_id(chirp, tmp_path):
    backup = tmp_path / "backup.sqlite3"
    with sqlite3.connect(f"file:{chirp.db_path}?mode=ro", uri=True) as source, sqlite3.connect(backup) as target:
        source.backup(target)
    status, dummy, body = chirp.request("/signup", {"username": "leaving", "password": "s3cret-pass"})
    assert status == 201, body
    leaving = json.loads(body)["id"]
    ok(rgpd(chirp, tmp_path, "erase", leaving, rgpd_confirm_erase=True))
    assert footprint(chirp, leaving)["user"] == 0

    # The backup from before the erasure is restored; someone new signs up and gets the erased person's id.
    with sqlite3.connect(backup) as source, sqlite3.connect(chirp.db_path) as target:
        source.backup(target)
    status, dummy, body = chirp.request("/signup", {"username": "newcomer", "password": "an0ther-pass"})
    assert status == 201 and json.loads(body)["id"] == leaving, body

    check_then_real(chirp, "playbooks/rgpd.yml", "-e", json.dumps(
        {"rgpd_operation": "replay", "rgpd_subject_id": "", "rgpd_confirm_erase": True}))
    assert chirp.query('SELECT username FROM "user" WHERE id = ?', leaving) == [("newcomer",)]


# --- audit ------------------------------------------------------------------------------------------------------

AUDIT_EVENT = ("playbooks/audit.yml", "-e", "audit_user=amel1@example.org", "-e", "audit_tenant=main", "-e", "audit_route=/login",
               "-e", "audit_action=user.login")


def test_audit_in_check_mode_records_nothing(chirp):
    before = chirp.state()
    assert "Would record user.login" in ok(chirp.playbook(*AUDIT_EVENT, "--check"))
    assert chirp.state() == before


def test_audit_records_one_business_event(chirp):
    lines = chirp.audit_log.read_text().splitlines() if chirp.audit_log.exists() else []
    ok(chirp.playbook(*AUDIT_EVENT))
    records = chirp.audit_log.read_text().splitlines()
    assert records[:len(lines)] == lines and len(records) == len(lines) + 1
    assert json.loads(records[-1])["event"]["action"] == "user.login"
    assert "amel1@example.org" not in chirp.audit_log.read_text(), "the user is pseudonymised"
