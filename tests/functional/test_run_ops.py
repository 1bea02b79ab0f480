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
import pathlib
import shutil
import subprocess
import xml.etree.ElementTree as ET

import pytest

from ansible_collections.dihya.ops.tests.support.fleet import BIN, ROOT, assert_no_traceback

from dihya_ops_run import run_ops

CANARIES = {
    "vault_dihya_audit_key": "auditcanary-" + "a" * 52,
    "vault_dihya_pseudonym_key": "pseudocanary-" + "b" * 51,
    "vault_dihya_export_key": "exportcanary-" + "c" * 51,
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
