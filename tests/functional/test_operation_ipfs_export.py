"""The IPFS export at the end of an operation (dihya_ops_ipfs_export) on the real fleet: an encrypted CAR file per host
whose root CID is recorded in the host's audit trail; nothing in check mode; a clear refusal without a key."""

from __future__ import annotations

import base64
import json
import stat

from ansible_collections.dihya.ops.tests.support.fleet import HOSTS

KEY = base64.urlsafe_b64encode(bytes(range(32))).decode()


def events(fleet, host: str) -> list[dict]:
    log = fleet.root(host) / "audit" / "audit.log"
    return [json.loads(line) for line in log.read_text().splitlines()] if log.exists() else []


def cars(fleet, host: str) -> list:
    folder = fleet.root(host) / "state" / "ipfs-exports"
    return sorted(folder.glob("*.car")) if folder.exists() else []


def export_vars(tmp_path, **extra: str) -> str:
    path = tmp_path / "ipfs-vars.json"
    path.write_text(json.dumps({"dihya_ops_ipfs_export": True, "dihya_backend_ipfs_export_key": KEY,
                                "dihya_backend_ipfs_export_key_id": "ipfs-export-test", **extra}))
    return f"@{path}"


def test_check_mode_says_what_it_would_export_and_writes_nothing(fleet, tmp_path):
    before = {host: (len(events(fleet, host)), cars(fleet, host)) for host in HOSTS}
    proc = fleet.playbook("playbooks/check_health.yml", "--check", "-e", export_vars(tmp_path))
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert "Would export" in proc.stdout and "ipfs-export-test" in proc.stdout
    assert KEY not in proc.stdout + proc.stderr
    assert {host: (len(events(fleet, host)), cars(fleet, host)) for host in HOSTS} == before


def test_an_operation_exports_its_audit_trail_encrypted_and_records_the_root_cid(fleet, tmp_path):
    before = {host: len(events(fleet, host)) for host in HOSTS}
    old = {host: cars(fleet, host) for host in HOSTS}
    proc = fleet.playbook("playbooks/check_health.yml", "-e", export_vars(tmp_path))
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert KEY not in proc.stdout + proc.stderr
    for host in HOSTS:
        new = events(fleet, host)[before[host]:]
        expected = ["check_health.started", "check_health.finished", "check_health.ipfs_exported"]
        assert [event["event"]["action"] for event in new] == expected
        details = new[-1]["dihya"]["details"]
        assert details["root_cid"].startswith("bafy") and details["key_id"] == "ipfs-export-test"
        assert len({event["trace"]["id"] for event in new}) == 1
        (car,) = [path for path in cars(fleet, host) if path not in old[host]]
        assert str(car) == details["car"] and new[0]["trace"]["id"] in car.name
        assert stat.S_IMODE(car.stat().st_mode) == 0o600
        data = car.read_bytes()
        # Encrypted: no record of the audit log is in the CAR file in clear, only their encrypted copies.
        assert b"dihya.audit" not in data and b"check_health.started" not in data
        assert b"audit.log.aesgcm" in data and b"dihya-ipfs-manifest.json" in data


def test_an_export_without_its_key_is_refused_clearly_after_the_operation(fleet, tmp_path):
    before = {host: cars(fleet, host) for host in HOSTS}
    proc = fleet.playbook("playbooks/check_health.yml", "-e", export_vars(tmp_path, dihya_backend_ipfs_export_key=""))
    assert proc.returncode != 0
    assert "dihya_backend_ipfs_export_key" in proc.stdout and "nothing was exported" in proc.stdout
    assert {host: cars(fleet, host) for host in HOSTS} == before
