"""The rgpd playbook on the real fleet's seeded SQLite databases.

Several requests go into one ansible-playbook run where they can: each host of
the fleet gets its own request through extra variables that pick a value by
inventory_hostname (see :func:`per_host`).
"""

from __future__ import annotations

import base64
import hashlib
import io
import json
import re
import secrets
import sqlite3
import zipfile

import pytest
from cryptography.hazmat.primitives.ciphers.aead import AESGCM

from ansible_collections.dihya.ops.tests.support.fleet import ROOT
from test_restart_services import recap

DATA_MAP = ROOT / "docs" / "examples" / "rgpd-datamap-demo.yml"
MAGIC = b"DIHYA-RGPD-AESGCM-1\n"
HOSTILE = "1; DROP TABLE users"
TENANT_ID = {"acme": 1}

# How each table of the demo data map points at a user (SQL on the demo schema, ? = the user id).
SUBJECT_ROWS = {
    "users": "id = ?",
    "posts": "author_id = ?",
    "messages": "sender_id = ? OR recipient_id = ?",
    "follows": "follower_id = ? OR followee_id = ?",
    "consents": "user_id = ?",
    "orders": "user_id = ?",
    "order_items": "order_id IN (SELECT id FROM orders WHERE user_id = ?)",
    "uploads": "user_id = ?",
}


def footprint(fleet, host, user_id):
    """Rows per mapped table that belong to the user, counted straight from the database."""
    return {table: fleet.query(host, f"SELECT count(*) FROM {table} WHERE {where}", *[user_id] * where.count("?"))[0][0]
            for table, where in SUBJECT_ROWS.items()}


def busiest(fleet, host, skip=()):
    """The acme user with the most posts, messages and orders (so every kind of row is exported or erased)."""
    rows = fleet.query(host, """
        SELECT u.id FROM users u WHERE u.tenant_id = 1 ORDER BY
          (SELECT count(*) FROM orders WHERE user_id = u.id) > 0 DESC,
          (SELECT count(*) FROM posts WHERE author_id = u.id) + (SELECT count(*) FROM messages WHERE sender_id = u.id OR recipient_id = u.id) DESC,
          u.id""")
    return next(row[0] for row in rows if row[0] not in skip)


def ledger_file(fleet, host):
    return fleet.sandbox / "dihya-ops-state" / host / "rgpd" / "erasure-ledger.jsonl"


def fingerprint(fleet, host):
    path = fleet.database(host)
    return hashlib.sha256(path.read_bytes()).hexdigest(), path.stat().st_mtime_ns


def summaries(output):
    """The role's one-line reports: {(verb, tenant): {table: rows}}."""
    found = {}
    for verb, tenant, counts in re.findall(r"summary: '?(\w+(?: \w+)?) subject of tenant (\w+): ([\w ,]*\d)", " ".join(output.split())):
        found[verb, tenant] = {table: int(rows) for table, rows in (pair.rsplit(" ", 1) for pair in counts.split(", "))}
    return found


def per_host(requests):
    """Extra variables giving each host its own value: {host: {var: value}} -> {var: "{{ {...}[inventory_hostname] }}"}."""
    names = {name for values in requests.values() for name in values}
    return {name: "{{ " + json.dumps({host: values[name] for host, values in requests.items()}) + "[inventory_hostname] }}" for name in names}


@pytest.fixture
def rgpd(fleet, tmp_path):
    """Run playbooks/rgpd.yml with the demo data map, a fresh export key and the given variables (written to a 0600 file)."""
    key = base64.urlsafe_b64encode(secrets.token_bytes(32)).decode()

    def play(variables, *args, env=None):
        extra = tmp_path / f"vars-{secrets.token_hex(4)}.json"
        extra.touch(mode=0o600)
        extra.write_text(json.dumps({"rgpd_data_map": str(DATA_MAP), "rgpd_export_key": key, **variables}))
        proc = fleet.playbook("playbooks/rgpd.yml", "-e", f"@{extra}", *args, env=env)
        output = proc.stdout + proc.stderr
        assert "Traceback" not in output, output
        assert key not in output
        return proc

    play.key = base64.urlsafe_b64decode(key)
    return play


def test_check_mode_counts_and_changes_nothing(fleet, rgpd, tmp_path):
    exported, erased = busiest(fleet, "dihya-demo-1"), busiest(fleet, "dihya-demo-2")
    before = {host: fingerprint(fleet, host) for host in ("dihya-demo-1", "dihya-demo-2")}
    fetch = tmp_path / "fetch"
    proc = rgpd({"rgpd_tenant": "acme", "rgpd_fetch_dir": str(fetch), **per_host({
        "dihya-demo-1": {"rgpd_operation": "export", "rgpd_subject_id": str(exported)},
        "dihya-demo-2": {"rgpd_operation": "erase", "rgpd_subject_id": str(erased)},
    })}, "--check", "--limit", "dihya-demo-1,dihya-demo-2")
    assert proc.returncode == 0, proc.stdout + proc.stderr

    assert {host: fingerprint(fleet, host) for host in before} == before
    assert not fetch.exists()
    exports = fleet.root("dihya-demo-1") / "rgpd" / "exports"
    assert not exports.exists() or not any(exports.iterdir())
    reports = summaries(proc.stdout)
    assert reports["Would export", "acme"] == footprint(fleet, "dihya-demo-1", exported)
    assert reports["Would erase", "acme"] == footprint(fleet, "dihya-demo-2", erased)


def test_export_is_fetched_encrypted_with_a_valid_manifest_and_only_the_subjects_rows(fleet, rgpd, tmp_path):
    host, fetch = "dihya-demo-1", tmp_path / "fetch"
    user = busiest(fleet, host)
    expected = footprint(fleet, host, user)
    proc = rgpd({"rgpd_operation": "export", "rgpd_tenant": "acme", "rgpd_subject_id": str(user), "rgpd_fetch_dir": str(fetch)},
                "--limit", host)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert recap(proc.stdout)[host]["changed"] >= 1

    archives = list((fetch / "acme").iterdir())
    assert len(archives) == 1 and archives[0].name.startswith(f"{host}-rgpd-export-acme-") and archives[0].name.endswith(".zip.enc")
    assert (archives[0].stat().st_mode & 0o777, (fetch / "acme").stat().st_mode & 0o777) == (0o600, 0o700)
    assert not any((fleet.root(host) / "rgpd" / "exports").iterdir()), "the archive stays on the host"
    data = archives[0].read_bytes()
    assert data.startswith(MAGIC)
    plain = AESGCM(rgpd.key).decrypt(data[len(MAGIC):len(MAGIC) + 12], data[len(MAGIC) + 12:], MAGIC)

    with zipfile.ZipFile(io.BytesIO(plain)) as archive:
        manifest = json.loads(archive.read("manifest.json"))
        assert manifest["format"] == "dihya-rgpd-export/1" and manifest["tenant"] == "acme"
        assert manifest["subject"].startswith("hmac:") and manifest["data_map_version"] == "demo-3.1"
        assert {table: entry["rows"] for table, entry in manifest["tables"].items()} == expected
        assert set(archive.namelist()) == {"manifest.json"} | set(manifest["files"])
        for name, entry in manifest["files"].items():
            assert hashlib.sha256(archive.read(name)).hexdigest() == entry["sha256"], name
        rows = {table: json.loads(archive.read(f"{table}.json")) for table in SUBJECT_ROWS}
    orders = {row["id"] for row in rows["orders"]}
    assert [row["id"] for row in rows["users"]] == [user]
    assert all(row["author_id"] == user for row in rows["posts"])
    assert all(user in (row["sender_id"], row["recipient_id"]) for row in rows["messages"])
    assert all(user in (row["follower_id"], row["followee_id"]) for row in rows["follows"])
    assert all(row["user_id"] == user for table in ("consents", "orders", "uploads") for row in rows[table])
    assert all(row["order_id"] in orders for row in rows["order_items"])
    assert sum(map(len, rows.values())) == sum(expected.values()) > 10


def test_refusals_unconfirmed_erase_unknown_tenant_hostile_subject(fleet, rgpd):
    victim = busiest(fleet, "dihya-demo-1")
    before = {host: fingerprint(fleet, host) for host in ("dihya-demo-1", "dihya-demo-2", "dihya-demo-3")}
    proc = rgpd(per_host({
        "dihya-demo-1": {"rgpd_operation": "erase", "rgpd_tenant": "acme", "rgpd_subject_id": str(victim)},
        "dihya-demo-2": {"rgpd_operation": "inventory", "rgpd_tenant": "initech", "rgpd_subject_id": "1"},
        "dihya-demo-3": {"rgpd_operation": "inventory", "rgpd_tenant": "acme", "rgpd_subject_id": HOSTILE},
    }))
    output = " ".join(proc.stdout.split())
    assert proc.returncode != 0
    assert all(stats["failed"] == 1 for stats in recap(proc.stdout).values()), proc.stdout
    assert re.search(r"Refused: erasing subject hmac:[0-9a-f]{64} of tenant acme cannot be undone", output)
    assert "confirm with -e rgpd_confirm_erase=true" in output
    assert 'Refused: tenant "initech" is not served by dihya-demo-2 (dihya_backend_tenants: acme, globex)' in output
    assert "dihya.ops.rgpd inventory failed: subject_id must be an integer" in output
    assert {host: fingerprint(fleet, host) for host in before} == before
    assert fleet.query("dihya-demo-3", "SELECT count(*) FROM users")[0][0] > 0


def test_erase_then_inventory_finds_nothing_and_the_app_stays_healthy(fleet, rgpd):
    host = "dihya-demo-1"
    user = busiest(fleet, host, skip={busiest(fleet, host)})
    footprint_before = footprint(fleet, host, user)
    users_before = fleet.query(host, "SELECT count(*) FROM users")[0][0]
    messages_before = fleet.query(host, "SELECT count(*) FROM messages")[0][0]

    erase = rgpd({"rgpd_operation": "erase", "rgpd_tenant": "acme", "rgpd_subject_id": str(user), "rgpd_confirm_erase": True},
                 "--limit", host)
    assert erase.returncode == 0, erase.stdout + erase.stderr
    assert recap(erase.stdout)[host]["changed"] >= 1
    assert fleet.healthz(host)[0] == 200

    assert footprint(fleet, host, user) == dict.fromkeys(SUBJECT_ROWS, 0)
    # The tombstone replaces the user; the messages other people keep stay.
    assert fleet.query(host, "SELECT count(*) FROM users")[0][0] == users_before
    assert fleet.query(host, "SELECT count(*) FROM messages")[0][0] == messages_before
    assert fleet.query(host, "PRAGMA foreign_key_check") == []
    # The ledger sits in the collection's own state folder, outside the backend's folders and database.
    ledger = ledger_file(fleet, host)
    assert ledger.stat().st_mode & 0o777 == 0o600
    assert not (fleet.root(host) / "rgpd" / "erasure-ledger.jsonl").exists()
    assert fleet.query(host, "SELECT count(*) FROM sqlite_master WHERE name = 'dihya_rgpd_erasure_ledger'") == [(0,)]
    assert '"state":"committed"' in ledger.read_text() and f'"{user}"' not in ledger.read_text()

    inventory = rgpd({"rgpd_operation": "inventory", "rgpd_tenant": "acme", "rgpd_subject_id": str(user)}, "--limit", host)
    assert inventory.returncode == 0, inventory.stdout + inventory.stderr
    output = " ".join(inventory.stdout.split())
    assert "subject_found: false" in output and "total_rows: 0" in output
    assert summaries(inventory.stdout)["Inventory", "acme"] == dict.fromkeys(SUBJECT_ROWS, 0)
    assert sum(footprint_before.values()) > 5
    assert all(fleet.healthz(name)[0] == 200 for name in ("dihya-demo-1", "dihya-demo-2", "dihya-demo-3"))


# ---------------------------------------------------------------------------
# no clear subject id in any output or audit record
# ---------------------------------------------------------------------------

DISTINCT_ID = "987654321"
CONTROLLER_KEY = "functional-controller-audit-key-rgpd-0123456789"


def host_audit_text(fleet, host):
    log = fleet.root(host) / "audit" / "audit.log"
    return log.read_text() if log.exists() else ""


def test_refusals_never_show_the_clear_subject_id(fleet, rgpd, tmp_path):
    controller_log = tmp_path / "controller-audit.log"
    env = dict(fleet.env, ANSIBLE_CALLBACKS_ENABLED="dihya.ops.audit", DIHYA_AUDIT_KEY=CONTROLLER_KEY,
               DIHYA_AUDIT_LOG_PATH=str(controller_log))
    hosts = ("dihya-demo-1", "dihya-demo-2", "dihya-demo-3")
    audit_before = {host: len(host_audit_text(fleet, host)) for host in hosts}
    outputs = []
    for requests in (
        {   # an unconfirmed erase, a tenant the host does not serve, a subject id that is not an integer
            "dihya-demo-1": {"rgpd_operation": "erase", "rgpd_tenant": "acme", "rgpd_subject_id": DISTINCT_ID, "rgpd_confirm_erase": False},
            "dihya-demo-2": {"rgpd_operation": "inventory", "rgpd_tenant": "initech", "rgpd_subject_id": DISTINCT_ID, "rgpd_confirm_erase": False},
            "dihya-demo-3": {"rgpd_operation": "erase", "rgpd_tenant": "acme", "rgpd_subject_id": f"{DISTINCT_ID}; DROP TABLE users",
                             "rgpd_confirm_erase": True},
        },
        {   # requests that run, about nobody: a confirmed erase, an export and an anonymisation
            "dihya-demo-1": {"rgpd_operation": "erase", "rgpd_tenant": "acme", "rgpd_subject_id": DISTINCT_ID, "rgpd_confirm_erase": True},
            "dihya-demo-2": {"rgpd_operation": "export", "rgpd_tenant": "acme", "rgpd_subject_id": DISTINCT_ID, "rgpd_confirm_erase": False},
            "dihya-demo-3": {"rgpd_operation": "anonymise", "rgpd_tenant": "globex", "rgpd_subject_id": DISTINCT_ID, "rgpd_confirm_erase": False},
        },
    ):
        proc = rgpd(per_host(requests), "-v", env=env)
        outputs.append(proc.stdout + proc.stderr)
    assert "Refused: erasing subject hmac:" in outputs[0] and "is not served by dihya-demo-2" in outputs[0]
    assert "subject_id must be an integer" in outputs[0]
    assert "subject_found: false" in " ".join(outputs[1].split()) or "subject_found" in outputs[1]
    controller = controller_log.read_text()
    assert '"rgpd.' in controller or "Refuse" in controller, controller[:2000]
    new_host_records = {host: host_audit_text(fleet, host)[audit_before[host]:] for host in hosts}
    assert all('"rgpd.finished"' in text or "rgpd.finished" in text for text in new_host_records.values()), new_host_records
    for where, text in (("stdout", outputs[0]), ("stdout", outputs[1]), ("controller trail", controller), *new_host_records.items()):
        assert DISTINCT_ID not in text, where


# ---------------------------------------------------------------------------
# replay through the role: confirmation, check-mode list, reused ids
# ---------------------------------------------------------------------------

def write(fleet, host, sql, *params):
    conn = sqlite3.connect(fleet.database(host), timeout=30)
    try:
        with conn:
            conn.execute(sql, params)
    finally:
        conn.close()


def test_replay_asks_for_confirmation_and_leaves_a_newcomer_with_a_reused_id_alone(fleet, rgpd):
    host = "dihya-demo-3"
    write(fleet, host, "INSERT INTO users (tenant_id, name, email, created_at) VALUES (1, 'Lone', 'lone-replay@example.com', '2025-01-01T00:00:00Z')")
    lone = fleet.query(host, "SELECT max(id) FROM users")[0][0]
    erase = rgpd({"rgpd_operation": "erase", "rgpd_tenant": "acme", "rgpd_subject_id": str(lone), "rgpd_confirm_erase": True}, "--limit", host)
    assert erase.returncode == 0, erase.stdout + erase.stderr
    # A new person signs up and gets the same id (SQLite: max(id) + 1).
    write(fleet, host, "INSERT INTO users (tenant_id, name, email, created_at) VALUES (1, 'Newcomer', 'newcomer@example.com', '2026-02-01T00:00:00Z')")
    assert fleet.query(host, "SELECT max(id) FROM users")[0][0] == lone
    before = fingerprint(fleet, host)

    refused = rgpd({"rgpd_operation": "replay", "rgpd_tenant": "acme"}, "--limit", host)
    assert refused.returncode != 0
    assert "Refused: replaying the erasure ledger" in " ".join(refused.stdout.split()) and "rgpd_confirm_erase=true" in refused.stdout

    planned = rgpd({"rgpd_operation": "replay", "rgpd_tenant": "acme"}, "--check", "--limit", host)
    assert planned.returncode == 0, planned.stdout + planned.stderr
    text = " ".join(planned.stdout.split())
    assert "Would replay the erasure ledger on tenant acme: 0 to erase again, 1 mismatch and 0 unverified left alone" in text, text
    assert "status: mismatch" in text or "'status': 'mismatch'" in text or '"status": "mismatch"' in text

    confirmed = rgpd({"rgpd_operation": "replay", "rgpd_tenant": "acme", "rgpd_confirm_erase": True}, "--limit", host)
    assert confirmed.returncode == 0, confirmed.stdout + confirmed.stderr
    assert "Replayed the erasure ledger on tenant acme: 0 erased again, 1 mismatch" in " ".join(confirmed.stdout.split())
    assert fingerprint(fleet, host)[0] == before[0]
    assert fleet.query(host, "SELECT name, email FROM users WHERE id = ?", lone) == [("Newcomer", "newcomer@example.com")]
