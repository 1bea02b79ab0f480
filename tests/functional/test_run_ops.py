# Copyright (c) Dihya ops maintainers
# GNU General Public License v3.0+ (see LICENSES/GPL-3.0-or-later.txt or https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later

"""run_ops and the dihya-ops command line (runops/) against the demo fleet, through ansible-runner.

Every run uses a copy of the demo inventory whose Vault holds canaries (audit, pseudonym and export keys) and whose
hosts write their audit events to a log of their own (the fleet's logs stay chained under the demo key), and the
caller's environment holds a CI token. After every run, no canary is in runner's private data folder (artifacts, job
events, command, env) nor in the JSON or JUnit output.
"""

from __future__ import annotations

import json
import os
import pathlib
import shutil
import socket
import subprocess
import xml.etree.ElementTree as ET

import psycopg
import psycopg.sql
import pytest

from ansible_collections.dihya.ops.tests.support.fleet import BIN, HOSTS, ROOT, assert_no_traceback
from ansible_collections.dihya.ops.tests.support.services import Postgres, Unavailable
from ansible_collections.dihya.ops.tests.unit.plugins.rgpd_fixtures import copy_sqlite_to_postgres

from dihya_ops_run import run_ops

CANARIES = {
    "vault_dihya_audit_key": "auditcanary-" + "a" * 52,
    "vault_dihya_pseudonym_key": "pseudocanary-" + "b" * 51,
    "vault_dihya_export_key": "ec" * 32,  # a usable key (64 hex digits): the export runs with it
    # The password of the PostgreSQL DSN some hosts of the DSN inventory use (see the pg_scene fixture).
    "vault_dihya_db_password": "dsncanary" + "d" * 40,
}
# A secret of the caller's environment (a CI job's token): runner records the environment in artifacts/*/command.
CI_TOKEN = "ci-token-canary-0123456789"
CALLER = "ci-pipeline"  # a caller the demo policy allows


@pytest.fixture(scope="module")
def scene(fleet, tmp_path_factory):
    base = tmp_path_factory.mktemp("runops")
    inventory = base / "inventory"
    shutil.copytree(ROOT / "inventories" / "local", inventory, ignore=shutil.ignore_patterns("vault.yml", "demo-vault-password"))
    main = inventory / "group_vars" / "dihya_backend" / "main.yml"
    main.write_text(main.read_text() + (
        f'\ndihya_backend_audit_log: "{base}/audit/{{{{ inventory_hostname }}}}/audit.log"\n'
        f'dihya_backend_rgpd_data_map: "{ROOT}/docs/examples/rgpd-datamap-demo.yml"\n'))
    password = base / "vault-password"
    password.write_text("runops-canary-vault-password\n")
    vault = inventory / "group_vars" / "dihya_backend" / "vault.yml"
    vault.write_text("---\n" + "".join(f"{k}: {v}\n" for k, v in CANARIES.items()))
    proc = subprocess.run([str(BIN / "ansible-vault"), "encrypt", "--vault-password-file", str(password), str(vault)],
                          cwd=base, capture_output=True, text=True, timeout=60, check=False)  # away from the checkout's ansible.cfg
    assert proc.returncode == 0, proc.stderr
    return {"base": base, "inventory": inventory, "password": password, "env": dict(fleet.env, CI_JOB_TOKEN=CI_TOKEN)}


def assert_no_canary(*places: pathlib.Path | str) -> None:
    """No canary (nor the Vault password) in these folders' files or in these texts."""
    secrets = [*CANARIES.values(), "runops-canary-vault-password", CI_TOKEN]
    for place in places:
        if isinstance(place, pathlib.Path):
            files = [p for p in place.rglob("*") if p.is_file()] if place.is_dir() else [place]
            assert files, place
            for path in files:
                text = path.read_text(errors="replace")
                for secret in secrets:
                    assert secret not in text, f"{secret[:12]} in {path}"
        else:
            for secret in secrets:
                assert secret not in place, secret[:12]


def cli(scene, *args: str, timeout: int = 600) -> subprocess.CompletedProcess[str]:
    proc = subprocess.run([str(BIN / "dihya-ops"), *args], env=scene["env"], capture_output=True, text=True, timeout=timeout, check=False)
    assert_no_traceback(proc.stdout + proc.stderr)
    return proc


def test_check_run_changes_nothing_then_the_real_restart_replaces_every_master(fleet, scene, monkeypatch):
    pids = fleet.pids()
    assert all(pids.values()), pids
    pdd = scene["base"] / "pdd-check"
    monkeypatch.setenv("DIHYA_DEMO_SANDBOX", str(fleet.sandbox))
    monkeypatch.setenv("DIHYA_DEMO_BASE_PORT", str(fleet.base_port))
    monkeypatch.setenv("CI_JOB_TOKEN", CI_TOKEN)
    checked = run_ops("restart_services", {"user": CALLER}, inventory=scene["inventory"], check=True, verbosity=3,
                      vault_password_file=scene["password"], private_data_dir=pdd)
    assert checked.status == "successful", checked.message
    assert checked.exit_code == 0 and checked.rc == 0 and checked.check
    assert sorted(checked.hosts) == ["dihya-demo-1", "dihya-demo-2", "dihya-demo-3"]
    assert all(stats["failures"] == 0 and stats["dark"] == 0 for stats in checked.hosts.values())
    assert fleet.pids() == pids
    assert checked.artifact_dir and pathlib.Path(checked.artifact_dir, "job_events").is_dir()
    assert_no_canary(pdd, json.dumps(checked.as_dict()))

    real_pdd = scene["base"] / "pdd-real"
    done = run_ops("restart_services", {"user": CALLER}, inventory=scene["inventory"], vault_password_file=scene["password"],
                   private_data_dir=real_pdd)
    after = fleet.pids()
    assert done.status == "successful", done.message
    assert all(after[host] and after[host] != pids[host] for host in pids), (pids, after)
    assert all(done.hosts[host]["changed"] > 0 for host in pids)
    assert done.trace_id != checked.trace_id and len(done.trace_id) == 32
    assert done.start < done.end and done.duration > 0
    # The hosts' audit events carry the run's trace id and name the caller (pseudonymised).
    audit = [pathlib.Path(p) for p in done.paths.get("audit_logs", [])]
    assert audit and all(p.is_file() for p in audit), done.paths
    assert done.trace_id in audit[0].read_text()
    assert_no_canary(real_pdd, json.dumps(done.as_dict()))


def test_a_failed_rollout_names_the_broken_second_host_in_json_and_junit(fleet, scene):
    config = fleet.root("dihya-demo-2") / "etc" / "gunicorn.conf.py"
    original = config.read_text()
    junit = scene["base"] / "failed.xml"
    pdd = scene["base"] / "pdd-failed"
    try:
        config.write_text(original + '\nraise RuntimeError("configuration broken on purpose")\n')
        proc = cli(scene, "run", "restart_services", "-i", str(scene["inventory"]), "--user", CALLER, "--vault-password-file",
                   str(scene["password"]), "--json", "--junit", str(junit), "--private-data-dir", str(pdd), "-vvv")
    finally:
        config.write_text(original)
    assert proc.returncode == 1, proc.stdout + proc.stderr
    result = json.loads(proc.stdout)
    assert result["status"] == "failed" and result["exit_code"] == 1
    assert [f["host"] for f in result["failures"]] == ["dihya-demo-2"], result["failures"]
    assert "dihya-demo-2" in result["failures"][0]["message"]
    assert "dihya-demo-3" not in result["hosts"]
    cases = ET.parse(junit).getroot().findall(".//testcase")
    failed = [case for case in cases if case.find("failure") is not None]
    assert [case.get("name") for case in failed] == ["dihya-demo-2: restart_services"]
    assert failed[0].find("failure").get("message").startswith(result["failures"][0]["task"])
    assert_no_canary(pdd, junit, proc.stdout, proc.stderr)
    # Bring host 2 back for the next tests; supervisord may still be retrying the broken start once.
    fixed = fleet.playbook("playbooks/restart_services.yml", "--limit", "dihya-demo-2")
    if fixed.returncode != 0:
        fixed = fleet.playbook("playbooks/restart_services.yml", "--limit", "dihya-demo-2")
    assert fixed.returncode == 0, fixed.stdout + fixed.stderr
    assert fleet.healthz("dihya-demo-2")[0] == 200


def test_context_reaches_the_playbook_as_data_never_as_a_template(fleet, scene):
    marker = scene["base"] / "templated"
    payload = "{{ lookup('pipe', 'id > " + str(marker) + "') }}"
    pdd = scene["base"] / "pdd-audit"
    proc = cli(scene, "run", "audit", "-i", str(scene["inventory"]), "--user", CALLER, "--tenant", "acme", "--action", "invoice.export",
               "--route", "/api/invoices/export", "--data", f"note={payload}", "--vault-password-file", str(scene["password"]),
               "--json", "--private-data-dir", str(pdd))
    assert proc.returncode == 0, proc.stdout + proc.stderr
    result = json.loads(proc.stdout)
    log = pathlib.Path(result["paths"]["audit_logs"][0])
    record = json.loads(log.read_text().splitlines()[-1])
    assert record["dihya"]["details"]["note"] == payload
    # Through the variables file as well (every other operation), in check mode.
    checked = cli(scene, "run", "check_health", "-i", str(scene["inventory"]), "--user", CALLER, "--check", "--json",
                  "--data", f"check_health_json_value={payload}", "--vault-password-file", str(scene["password"]))
    assert json.loads(checked.stdout)["status"] == "failed", checked.stdout
    assert payload in checked.stdout
    assert not marker.exists()
    assert_no_canary(pdd, proc.stdout, checked.stdout)


def test_a_caller_the_policy_does_not_know_is_denied(fleet, scene):
    proc = cli(scene, "run", "check_health", "-i", str(scene["inventory"]), "--user", "mallory", "--check", "--json",
               "--vault-password-file", str(scene["password"]))
    result = json.loads(proc.stdout)
    assert proc.returncode == 3 and result["status"] == "denied", proc.stdout
    assert all(f["message"].startswith("access denied:") for f in result["failures"]), result["failures"]


@pytest.mark.parametrize(("args", "expected"), [
    (["run", "check_health", "--user", CALLER], "no Vault password file"),
    (["run", "nosuch", "--user", CALLER, "--vault-password-file", "{password}"], "unknown operation 'nosuch'"),
    (["run", "security", "--vault-password-file", "{password}"], "not available yet"),
    (["run", "rgpd", "--action", "erase", "--tenant", "../acme", "--subject", "42", "--vault-password-file", "{password}"], "context.tenant"),
    (["run", "check_health", "--data", "rm_rf=1", "--vault-password-file", "{password}"], "not a variable of the check_health operation"),
])
def test_bad_input_is_refused_before_anything_runs(scene, args, expected):
    pdd = scene["base"] / "pdd-bad"
    argv = [a.replace("{password}", str(scene["password"])) for a in args]
    proc = cli(scene, *argv, "-i", str(scene["inventory"]), "--json", "--private-data-dir", str(pdd))
    assert proc.returncode == 2, proc.stdout + proc.stderr
    result = json.loads(proc.stdout)
    assert result["status"] == "bad_input" and expected in result["message"], result["message"]
    assert not pdd.exists()


def test_an_inventory_that_does_not_exist_is_bad_input(scene):
    proc = cli(scene, "run", "check_health", "-i", str(scene["base"] / "nowhere"), "--junit", str(scene["base"] / "bad.xml"))
    assert proc.returncode == 2, proc.stdout + proc.stderr
    assert "does not exist" in " ".join(proc.stdout.split())
    errors = ET.parse(scene["base"] / "bad.xml").getroot().findall(".//error")
    assert len(errors) == 1 and errors[0].get("type") == "bad_input"


def test_a_canceled_run_says_so_and_stops(fleet, scene, monkeypatch):
    monkeypatch.setenv("DIHYA_DEMO_SANDBOX", str(fleet.sandbox))
    monkeypatch.setenv("DIHYA_DEMO_BASE_PORT", str(fleet.base_port))
    seen: list[str] = []
    result = run_ops("check_health", {"user": CALLER}, inventory=scene["inventory"], check=True, vault_password_file=scene["password"],
                     progress=lambda events: seen.append(events.task), cancel_callback=lambda: bool(seen))
    assert result.status == "canceled" and result.exit_code == 5, result.message
    assert result.private_data_dir is None


# ---------------------------------------------------------------------------
# Every operation, in check mode and for real, against what the hosts show
# ---------------------------------------------------------------------------

OLD = 1_000_000_000  # an mtime of 2001: older than any purge age


def fleet_state(fleet) -> dict[str, object]:
    """What a run could change on the fleet: every file of the sandbox (size and mtime; the services' own logs, which
    the health checks' requests append to, by name only), the masters' PIDs, and every row of every host's database."""
    files: dict[str, object] = {}
    for path in sorted(fleet.sandbox.rglob("*")):
        info = path.lstat()
        if path.is_dir() and not path.is_symlink():
            files[str(path)] = "dir"
        elif path.parent.name == "log" and path.suffix == ".log":
            files[str(path)] = "log"
        else:
            files[str(path)] = (info.st_size, info.st_mtime_ns)
    rows = {}
    for host in HOSTS:
        tables = [name for (name,) in fleet.query(host, "SELECT name FROM sqlite_master WHERE type = 'table' ORDER BY name")]
        rows[host] = {table: sorted(map(repr, fleet.query(host, f'SELECT * FROM "{table}"'))) for table in tables}
    return {"files": files, "pids": fleet.pids(), "rows": rows}


@pytest.fixture
def both(fleet, scene, monkeypatch):
    """Run an operation in check mode, then for real, through run_ops; the fleet's state before, after each run."""
    monkeypatch.setenv("DIHYA_DEMO_SANDBOX", str(fleet.sandbox))
    monkeypatch.setenv("DIHYA_DEMO_BASE_PORT", str(fleet.base_port))
    monkeypatch.setenv("CI_JOB_TOKEN", CI_TOKEN)

    def run(operation, context, limit=None, real_context=None, between=None):
        out = {"before": fleet_state(fleet)}
        for mode, ctx in (("check", context), ("real", real_context or context)):
            pdd = scene["base"] / f"pdd-{operation}-{ctx.get('action', '')}-{mode}"
            result = run_ops(operation, {"user": CALLER, **ctx}, inventory=scene["inventory"], check=mode == "check", limit=limit,
                             vault_password_file=scene["password"], private_data_dir=pdd)
            assert result.status == "successful", (mode, result.message)
            assert result.check is (mode == "check") and result.exit_code == 0
            assert all(stats["failures"] == 0 and stats["dark"] == 0 for stats in result.hosts.values()), result.hosts
            assert_no_canary(pdd, json.dumps(result.as_dict()))
            out[mode], out[f"after_{mode}"] = result, fleet_state(fleet)
            if between is not None and mode == "check":
                between()
        assert out["after_check"] == out["before"], "the check-mode run changed the fleet"
        return out

    return run


def test_check_health_reports_every_host_and_the_metrics_it_wrote(fleet, both):
    metrics = {host: fleet.root(host) / "metrics" / "dihya_health.prom" for host in HOSTS}
    for path in metrics.values():
        path.unlink(missing_ok=True)
    runs = both("check_health", {}, between=lambda: assert_absent(metrics.values()))
    for mode in ("check", "real"):
        assert sorted(runs[mode].hosts) == list(HOSTS) and all(s["ok"] > 0 for s in runs[mode].hosts.values())
    assert "metrics" not in runs["check"].paths
    assert sorted(runs["real"].paths["metrics"]) == sorted(map(str, metrics.values()))
    assert all('dihya_health_check_up{check="database"' in p.read_text() for p in metrics.values())


def test_purge_temp_files_removes_old_files_for_real_only(fleet, both):
    old = [fleet.root(host) / "tmp" / f"runops-old-{n}" for host in HOSTS for n in range(2)]
    fresh = [fleet.root(host) / "cache" / "runops-fresh" for host in HOSTS]
    for path in old + fresh:
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text("x")
    for path in old:
        os.utime(path, (OLD, OLD))
    runs = both("purge_temp_files", {})
    assert all(runs["check"].hosts[host]["changed"] == 1 for host in HOSTS), runs["check"].hosts
    assert all(runs["real"].hosts[host]["changed"] == 1 for host in HOSTS), runs["real"].hosts
    assert not any(path.exists() for path in old)
    assert all(path.exists() for path in fresh)
    assert runs["after_real"]["pids"] == runs["before"]["pids"]
    for path in fresh:
        path.unlink()


def test_rotate_logs_rotates_for_real_only(fleet, scene, both):
    host = "dihya-demo-3"
    log_dir = fleet.root(host) / "log"
    own = scene["base"] / "rotate"
    own.mkdir()
    data = {"rotate_logs_force": True, "rotate_logs_config_path": str(own / "logrotate.conf"),
            "rotate_logs_state_file": str(own / "logrotate.status"), "rotate_logs_schedule": "none"}
    names = {p.name for p in log_dir.rglob("*")}
    try:
        runs = both("rotate_logs", {"data": data}, limit=host, between=lambda: assert_absent([own / "logrotate.conf", own / "logrotate.status"]))
        assert list(runs["check"].hosts) == [host] and runs["check"].hosts[host]["changed"] > 0
        new = sorted(p.name for p in log_dir.rglob("*") if p.name not in names)
        assert any(name.startswith("access.log-") for name in new), new
        assert (own / "logrotate.conf").is_file() and runs["after_real"]["pids"] == runs["before"]["pids"]
    finally:
        # The fleet's logs as they were (names): test_rotate_logs expects no rotated log before its own runs.
        for path in sorted(log_dir.rglob("*"), reverse=True):
            if path.name not in names:
                if path.is_dir():
                    shutil.rmtree(path)
                else:
                    path.unlink()


def test_update_dependencies_to_the_pinned_versions_changes_nothing(fleet, both):
    """A real update is a no-op here (the pins the host already has, from its wheelhouse): cheap, and still the
    whole rollout (plan, advisory gate, nothing to install, no restart)."""
    host = "dihya-demo-3"
    python = fleet.root(host) / "venv" / "bin" / "python"
    version = subprocess.run([str(python), "-c", "import importlib.metadata as m; print(m.version('flask'))"],
                             capture_output=True, text=True, timeout=60, check=True).stdout.strip()
    data = {"update_dependencies_packages": [f"flask=={version}"], "update_dependencies_find_links": [str(fleet.sandbox / "wheelhouse")],
            "update_dependencies_no_index": True, "update_dependencies_osv_dirs": [str(ROOT / "tests" / "fixtures" / "osv")]}
    runs = both("update_dependencies", {"data": data}, limit=host)
    assert list(runs["real"].hosts) == [host] and runs["real"].hosts[host]["changed"] == 0, runs["real"].hosts
    assert runs["after_real"] == runs["before"]


def acme_user(fleet, host) -> int:
    """The acme user of the host with the most orders (every kind of row is exported or erased)."""
    return int(fleet.query(host, "SELECT u.id FROM users u WHERE u.tenant_id = 1 ORDER BY "
                                 "(SELECT count(*) FROM orders WHERE user_id = u.id) DESC, u.id DESC")[0][0])


def test_rgpd_export_produces_the_archive_for_real_only(fleet, scene, both):
    host = "dihya-demo-1"
    fetch = scene["base"] / "exports"
    context = {"action": "export", "tenant": "acme", "subject": str(acme_user(fleet, host)), "data": {"rgpd_fetch_dir": str(fetch)}}
    runs = both("rgpd", context, limit=host, between=lambda: assert_absent([fetch]))
    assert "exports" not in runs["check"].paths
    archives = sorted(str(p) for p in fetch.rglob("*.zip.enc"))
    assert len(archives) == 1 and archives[0] in runs["real"].paths["exports"], runs["real"].paths
    assert runs["after_real"]["rows"] == runs["before"]["rows"]


def test_rgpd_erase_removes_the_rows_for_real_only(fleet, scene, both):
    host = "dihya-demo-2"
    user = acme_user(fleet, host)
    data = {"rgpd_ledger_file": str(scene["base"] / "ledger" / "erasure-ledger.jsonl")}  # the fleet's ledger is test_rgpd's
    context = {"action": "erase", "tenant": "acme", "subject": str(user), "data": data}
    runs = both("rgpd", context, limit=host, real_context=dict(context, data=dict(data, rgpd_confirm_erase=True)))
    before = runs["before"]["rows"][host]
    after = runs["after_real"]["rows"][host]
    assert len(after["users"]) == len(before["users"])  # a tombstone replaces the user
    email = next(row for row in before["users"] if row.startswith(f"({user}, "))
    email = email.split("'")[3]
    assert "@" in email and email not in repr(after)
    assert fleet.query(host, "SELECT count(*) FROM users WHERE id = ?", user) == [(0,)]
    assert fleet.query(host, "SELECT count(*) FROM orders WHERE user_id = ?", user) == [(0,)]
    assert (scene["base"] / "ledger" / "erasure-ledger.jsonl").is_file()


def test_audit_records_the_event_for_real_only(fleet, scene, both):
    logs = sorted((scene["base"] / "audit").rglob("audit.log"))
    before = {p: p.read_bytes() for p in logs}
    context = {"action": "runops.cover", "tenant": "acme", "route": "/api/cover", "data": {"ticket": "OPS-13"}}
    runs = both("audit", context, between=lambda: assert_logs_unchanged(scene, before))
    log = pathlib.Path(runs["real"].paths["audit_logs"][0])
    records = [json.loads(line) for line in log.read_text().splitlines()]
    ours = [r for r in records if r["event"]["action"] == "runops.cover"]
    assert ours and ours[-1]["dihya"]["details"] == {"ticket": "OPS-13"}, records[-1]
    assert runs["real"].trace_id in log.read_text()


def assert_logs_unchanged(scene, before) -> None:
    assert {p: p.read_bytes() for p in sorted((scene["base"] / "audit").rglob("audit.log"))} == before


def assert_absent(paths) -> None:
    present = [str(p) for p in paths if p.exists()]
    assert not present, present


# ---------------------------------------------------------------------------
# The password of a PostgreSQL DSN, from Vault, in no artifact and no output
# ---------------------------------------------------------------------------

@pytest.fixture(scope="module")
def pg_scene(fleet, scene):
    """The scene's inventory where dihya-demo-3 keeps its data in PostgreSQL (a copy of its SQLite database) and
    dihya-demo-2 names a PostgreSQL that does not answer; both DSNs take their password from the Vault canary."""
    try:
        postgres = Postgres.start()
    except Unavailable as exc:
        pytest.skip(str(exc))
    try:
        password = CANARIES["vault_dihya_db_password"]
        with psycopg.connect(postgres.dsn(), autocommit=True) as conn:
            conn.execute(psycopg.sql.SQL("ALTER USER postgres PASSWORD {}").format(psycopg.sql.Literal(password)))
            conn.execute('CREATE DATABASE "runops"')
        postgres.password = password
        copy_sqlite_to_postgres(str(fleet.root("dihya-demo-3") / "data" / "dihya.db"), postgres.dsn(database="runops"), accounts=False)
        with socket.socket() as sock:
            sock.bind(("127.0.0.1", 0))
            closed = sock.getsockname()[1]
        inventory = scene["base"] / "inventory-dsn"
        shutil.copytree(scene["inventory"], inventory)
        host_vars = inventory / "host_vars"
        host_vars.mkdir()
        for host, port in (("dihya-demo-3", postgres.port), ("dihya-demo-2", closed)):
            (host_vars / f"{host}.yml").write_text(
                f'dihya_backend_db_url: "postgresql://postgres:{{{{ vault_dihya_db_password }}}}@127.0.0.1:{port}/runops?connect_timeout=5"\n')
        yield {"inventory": inventory, "postgres": postgres}
    finally:
        postgres.stop()


def test_the_dsn_password_is_in_no_artifact_and_no_output(fleet, scene, pg_scene, monkeypatch):
    monkeypatch.setenv("DIHYA_DEMO_SANDBOX", str(fleet.sandbox))
    monkeypatch.setenv("DIHYA_DEMO_BASE_PORT", str(fleet.base_port))
    monkeypatch.setenv("CI_JOB_TOKEN", CI_TOKEN)
    host = "dihya-demo-3"
    user = acme_user(fleet, host)
    base = scene["base"] / "dsn"
    common = {"inventory": pg_scene["inventory"], "vault_password_file": scene["password"], "verbosity": 3}

    def rows() -> list[tuple[object, ...]]:
        with psycopg.connect(pg_scene["postgres"].dsn(database="runops")) as conn:
            return conn.execute("SELECT * FROM users ORDER BY id").fetchall()

    before = rows()
    # Check mode, -vvv: an erasure that only counts.
    checked = run_ops("rgpd", {"user": CALLER, "action": "erase", "tenant": "acme", "subject": str(user),
                               "data": {"rgpd_ledger_file": str(base / "ledger.jsonl")}},
                      check=True, limit=host, private_data_dir=base / "pdd-check", **common)
    assert checked.status == "successful", checked.message
    assert rows() == before
    # A successful export, -vvv, from PostgreSQL.
    fetch = base / "exports"
    exported = run_ops("rgpd", {"user": CALLER, "action": "export", "tenant": "acme", "subject": str(user),
                                "data": {"rgpd_fetch_dir": str(fetch)}}, limit=host, private_data_dir=base / "pdd-export", **common)
    assert exported.status == "successful", exported.message
    assert [pathlib.Path(p).is_file() for p in exported.paths["exports"]] == [True]
    # A failed request: the database of dihya-demo-2 does not answer.
    failed = run_ops("rgpd", {"user": CALLER, "action": "inventory", "tenant": "acme", "subject": "1"}, limit="dihya-demo-2",
                     private_data_dir=base / "pdd-failed", **common)
    assert failed.status == "failed" and [f.host for f in failed.failures] == ["dihya-demo-2"], failed.message
    for result in (checked, exported, failed):
        assert_no_canary(pathlib.Path(result.private_data_dir), json.dumps(result.as_dict()))
    # The command line, JSON and JUnit, -vvv: the health check of both databases, one of which does not answer.
    junit = base / "health.xml"
    proc = cli(scene, "run", "check_health", "-i", str(pg_scene["inventory"]), "--user", CALLER, "--limit", "dihya-demo-2,dihya-demo-3",
               "--vault-password-file", str(scene["password"]), "--json", "--junit", str(junit), "--private-data-dir", str(base / "pdd-cli"),
               "-vvv")
    result = json.loads(proc.stdout)
    assert proc.returncode == 1 and [f["host"] for f in result["failures"]] == ["dihya-demo-2"], proc.stdout
    assert result["hosts"][host]["failures"] == 0
    assert_no_canary(base / "pdd-cli", junit, proc.stdout, proc.stderr)
