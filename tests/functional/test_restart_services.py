"""Controlled rolling restarts against the real demo fleet."""

from __future__ import annotations

import re
import shutil

from ansible_collections.dihya.ops.tests.support.fleet import HOSTS, ROOT


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
        config.write_text(config.read_text() + '\nraise RuntimeError("configuration broken on purpose")\n')
        proc = fleet.playbook("playbooks/restart_services.yml")
        after = fleet.pids()
    finally:
        shutil.copy2(saved, config)
        saved.unlink()
    output = proc.stdout + proc.stderr
    assert proc.returncode != 0, output
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
    assert "Traceback" not in output
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
    assert "Traceback" not in output
    assert fleet.pids() == before
