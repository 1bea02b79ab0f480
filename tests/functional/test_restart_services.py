"""Controlled rolling restarts against the real demo fleet."""

from __future__ import annotations

import json
import os
import re
import shutil
import typing as t

import pytest

from ansible_collections.dihya.ops.tests.support.fleet import HOSTS, ROOT, assert_no_traceback
from ansible_collections.dihya.ops.tests.support.login_page import login_page_server

# Written into the failing service's error log: none of it may reach the output.
CANARIES = ("hunter2-canary-secret", "tok-canary-0123456789", "canary.person@example.org", "198.51.100.77")


@pytest.fixture(scope="module")
def login_url() -> t.Iterator[str]:
    """The URL of a login page served on loopback by a real HTTP server of this process."""
    with login_page_server() as base:
        yield f"{base}/login"


def words(text: str) -> str:
    """The output with its line wrapping undone."""
    return " ".join(text.split())


def recap(output: str) -> dict[str, dict[str, int]]:
    """Parse the PLAY RECAP lines of ansible-playbook's output."""
    stats: dict[str, dict[str, int]] = {}
    for host, counters in re.findall(r"^(\S+)\s+:\s+(ok=.*)$", output, re.MULTILINE):
        stats[host] = {key: int(value) for key, value in re.findall(r"(\w+)=(\d+)", counters)}
    return stats


def test_check_mode_reports_restarts_and_changes_nothing(fleet):
    before = fleet.pids()
    assert all(before.values()), before
    proc = fleet.playbook("playbooks/restart_services.yml", "--check")
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert fleet.pids() == before
    stats = recap(proc.stdout)
    for host in HOSTS:
        assert stats[host]["changed"] >= 1, stats
        assert stats[host]["failed"] == 0, stats


def test_rolling_restart_replaces_every_master_and_stays_healthy(fleet, tmp_path):
    # The drain hook records, on each host, the master it saw just before the restart.
    hook = tmp_path / "drain.yml"
    hook.write_text(
        "---\n"
        "- name: Drain the host\n"
        "  ansible.builtin.copy:\n"
        f"    dest: {tmp_path}/drained-{{{{ inventory_hostname }}}}\n"
        "    content: \"{{ lookup('ansible.builtin.file', dihya_backend_root ~ '/run/gunicorn.pid') }}\"\n"
        "    mode: '0600'\n"
    )
    before = fleet.pids()
    proc = fleet.playbook("playbooks/restart_services.yml", "-e", f"restart_services_pre_restart_tasks={hook}")
    assert proc.returncode == 0, proc.stdout + proc.stderr
    after = fleet.pids()
    for host in HOSTS:
        assert after[host] and after[host] != before[host], (before, after)
        assert int((tmp_path / f"drained-{host}").read_text()) == before[host]
        status, body = fleet.healthz(host)
        assert status == 200 and body["status"] == "ok"
    # serial: 1 -> one batch per host, in inventory order.
    assert proc.stdout.count("PLAY [Restart the Dihya backend services host by host]") == 3


def test_request_id_makes_a_relaunched_rollout_resume(fleet):
    first = fleet.playbook("playbooks/restart_services.yml", "-e", "restart_services_request_id=CHG-1001")
    assert first.returncode == 0, first.stdout + first.stderr
    pids = fleet.pids()
    again = fleet.playbook("playbooks/restart_services.yml", "-e", "restart_services_request_id=CHG-1001")
    assert again.returncode == 0, again.stdout + again.stderr
    assert fleet.pids() == pids
    assert all(host["changed"] == 0 for host in recap(again.stdout).values()), again.stdout


def test_rollout_stops_at_the_broken_second_host(fleet):
    config = fleet.root("dihya-demo-2") / "etc" / "gunicorn.conf.py"
    saved = config.with_suffix(".saved")
    shutil.copy2(config, saved)
    before = fleet.pids()
    try:
        config.write_text(config.read_text() + (
            "\nimport sys\n"
            f"print('connecting with password={CANARIES[0]} token={CANARIES[1]} for {CANARIES[2]} from {CANARIES[3]}', file=sys.stderr)\n"
            'raise RuntimeError("configuration broken on purpose")\n'))
        # A stop/start restart: the new configuration is read by a master that replaces the old one (an upgrade would
        # keep the old master serving, see test_zero_downtime.py).
        proc = fleet.playbook("playbooks/restart_services.yml", "-e", "restart_services_method=restart")
        after = fleet.pids()
    finally:
        shutil.copy2(saved, config)
        saved.unlink()
    output = proc.stdout + proc.stderr
    assert proc.returncode != 0, output
    # Where to look: the end of the service's error log, scrubbed.
    assert re.search(r"Error log, last \d+ line\(s\) of \S+/dihya-demo-2/log/dihya-web\.stdout\.log", output), output
    assert "RuntimeError: configuration broken on purpose" in output
    assert "password=********" in output and "token=********" in output
    for canary in CANARIES:
        assert canary not in output, canary
    # Host 1 restarted and healthy.
    assert after["dihya-demo-1"] and after["dihya-demo-1"] != before["dihya-demo-1"]
    assert fleet.healthz("dihya-demo-1")[0] == 200
    # Host 2 reported by name, with its failing check.
    assert "Rollout stopped at dihya-demo-2" in output
    assert re.search(r"failed: http_health \(", output), output
    # Host 3 untouched.
    assert after["dihya-demo-3"] == before["dihya-demo-3"]
    assert "dihya-demo-3" not in recap(proc.stdout)
    # Bring host 2 back for the next tests.
    fixed = fleet.playbook("playbooks/restart_services.yml", "--limit", "dihya-demo-2")
    assert fixed.returncode == 0, fixed.stdout + fixed.stderr
    assert fleet.healthz("dihya-demo-2")[0] == 200


def test_hostile_service_name_is_refused_before_anything_runs(fleet, tmp_path):
    canary = tmp_path / "pwned"
    before = fleet.pids()
    proc = fleet.playbook(
        "playbooks/restart_services.yml", "--limit", "dihya-demo-1",
        "-e", '{"restart_services_services": [{"name": "web", "manager": "supervisor", "unit": "dihya-web; touch ' + str(canary) + '"}]}',
    )
    output = proc.stdout + proc.stderr
    assert proc.returncode != 0
    assert "is not valid" in output and "Nothing was restarted" in output
    assert_no_traceback(output)
    assert not canary.exists()
    assert fleet.pids() == before


def test_unreachable_first_host_stops_the_rollout(fleet, tmp_path):
    inventory = tmp_path / "hosts.yml"
    inventory.write_text(
        "dihya_backend:\n"
        "  hosts:\n"
        "    dihya-gone:\n"
        "      ansible_connection: ssh\n"
        "      ansible_host: 127.0.0.1\n"
        "      ansible_port: 9\n"
        "      ansible_ssh_common_args: -o ConnectTimeout=3 -o BatchMode=yes\n"
        "      dihya_backend_health_url: http://127.0.0.1:9/healthz\n"
        "      dihya_backend_services: [{name: web, manager: supervisor, unit: dihya-web}]\n"
        "    dihya-demo-1:\n"
        "      dihya_backend_instance: 1\n"
        "      ansible_connection: local\n"
        "      ansible_python_interpreter: '{{ ansible_playbook_python }}'\n"
    )
    (tmp_path / "group_vars").symlink_to(ROOT / "inventories" / "local" / "group_vars")
    before = fleet.pids()
    proc = fleet.playbook("-i", str(inventory), "playbooks/restart_services.yml")
    output = proc.stdout + proc.stderr
    assert proc.returncode != 0
    assert "UNREACHABLE" in output and "dihya-gone" in output
    assert_no_traceback(output)
    assert fleet.pids() == before


def _model(login_url: str, **more: t.Any) -> str:
    """Extra vars pointing the backend model's health definition at the HTML login page (no JSON check)."""
    return json.dumps(dict({"dihya_backend_health_url": login_url, "dihya_backend_health_json_field": ""}, **more))


def test_the_gate_and_check_health_agree_on_the_model(fleet, login_url):
    host = "dihya-demo-1"
    # An HTML page is healthy for both, with no body check.
    healthy = _model(login_url)
    checked = fleet.playbook("playbooks/check_health.yml", "--limit", host, "-e", healthy)
    assert checked.returncode == 0, checked.stdout + checked.stderr
    restarted = fleet.playbook("playbooks/restart_services.yml", "--limit", host, "-e", healthy)
    assert restarted.returncode == 0, restarted.stdout + restarted.stderr
    # A body regex set once in the model fails both, with the same words.
    expected = "http_health (HTTP 200 but the body does not match 'Welcome back')"
    unhealthy = _model(login_url, dihya_backend_health_body_regex="Welcome back", restart_services_health_deadline=3)
    checked = fleet.playbook("playbooks/check_health.yml", "--limit", host, "-e", unhealthy)
    assert checked.returncode != 0
    assert f"{host} is unhealthy: 3/4 checks healthy; failed: {expected}" in words(checked.stdout + checked.stderr)
    restarted = fleet.playbook("playbooks/restart_services.yml", "--limit", host, "-e", unhealthy)
    output = words(restarted.stdout + restarted.stderr)
    assert restarted.returncode != 0
    assert f"health gate failed: 0/1 checks healthy; failed: {expected}" in output
    assert f"Failing checks now: 0/1 checks healthy; failed: {expected}" in output
    assert_no_traceback(output)
    assert fleet.healthz(host)[0] == 200


@pytest.mark.parametrize(("error_log", "expected"), [
    (None, "No error log is set for service web (error_log in dihya_backend_services)."),
    ("missing.log", "Error log: {log} does not exist."),
    ("link.log", "Error log: {log} not read: it is a symbolic link, which is never followed."),
    ("fifo", "Error log: {log} not read: it is a FIFO, not a regular file."),
], ids=["unset", "missing", "symlink", "fifo"])
def test_an_error_log_that_cannot_be_shown_is_said(fleet, login_url, tmp_path, error_log, expected):
    service = {"name": "web", "manager": "supervisor", "unit": "dihya-web"}
    log = tmp_path / (error_log or "none")
    if error_log:
        service["error_log"] = str(log)
    (tmp_path / "secret.txt").write_text(f"password={CANARIES[0]}\n")
    if error_log == "link.log":
        log.symlink_to(tmp_path / "secret.txt")
    elif error_log == "fifo":
        os.mkfifo(log)
    extra = _model(login_url, dihya_backend_health_body_regex="Welcome back", restart_services_health_deadline=3,
                   restart_services_services=[service])
    proc = fleet.playbook("playbooks/restart_services.yml", "--limit", "dihya-demo-1", "-e", extra)
    output = words(proc.stdout + proc.stderr)
    assert proc.returncode != 0
    assert "Rollout stopped at dihya-demo-1" in output
    assert expected.format(log=log) in output, output
    assert CANARIES[0] not in output
    assert_no_traceback(output)


@pytest.mark.parametrize("error_log", ["relative/web.log", "/srv/../etc/shadow", ["/a"]], ids=["relative", "dotdot", "list"])
def test_an_unsafe_error_log_is_refused_before_anything_runs(fleet, error_log):
    before = fleet.pids()
    services = [{"name": "web", "manager": "supervisor", "unit": "dihya-web", "error_log": error_log}]
    proc = fleet.playbook("playbooks/restart_services.yml", "--limit", "dihya-demo-1",
                          "-e", json.dumps({"restart_services_services": services}))
    output = words(proc.stdout + proc.stderr)
    assert proc.returncode != 0
    assert "is not valid" in output and "Nothing was restarted" in output
    assert_no_traceback(output)
    assert fleet.pids() == before
