"""Verify the converged demo fleet: restarted, healthy, metrics valid."""

from __future__ import annotations

import json
import os
import pathlib
import urllib.request

SANDBOX = pathlib.Path(os.environ["DIHYA_DEMO_SANDBOX"])
BASE_PORT = int(os.environ["DIHYA_DEMO_BASE_PORT"])
SAVED = json.loads((SANDBOX / ".fleet-state.json").read_text())


def instance(host) -> str:
    return host.backend.get_hostname()


def test_gunicorn_master_was_replaced(host):
    name = instance(host)
    pidfile = host.file(str(SANDBOX / name / "run" / "gunicorn.pid"))
    assert pidfile.exists
    pid = int(pidfile.content_string.strip())
    assert pid != SAVED[name]["gunicorn"]
    assert host.file(f"/proc/{pid}").exists


def test_supervisor_reports_the_program_running(host):
    root = SANDBOX / instance(host)
    status = host.run("%s -c %s status dihya-web", str(root / "venv" / "bin" / "supervisorctl"), str(root / "etc" / "supervisord.conf"))
    assert "RUNNING" in status.stdout


def test_healthz_answers(host):
    port = BASE_PORT + int(instance(host).rsplit("-", 1)[1])
    opener = urllib.request.build_opener(urllib.request.ProxyHandler({}))
    with opener.open(f"http://127.0.0.1:{port}/healthz", timeout=5) as response:
        assert response.status == 200
        assert json.loads(response.read())["status"] == "ok"


def test_metrics_file_is_valid_for_promtool(host):
    metrics = SANDBOX / instance(host) / "metrics" / "dihya_health.prom"
    assert host.file(str(metrics)).exists
    checked = host.run("promtool check metrics < %s", str(metrics))
    assert checked.rc == 0, checked.stderr


def test_logrotate_configuration_is_installed_and_valid(host):
    config = SANDBOX / instance(host) / "etc" / "logrotate.conf"
    assert host.file(str(config)).exists
    state = SANDBOX / instance(host) / "run" / "logrotate.status"
    checked = host.run("logrotate -d -s %s %s", str(state), str(config))
    assert checked.rc == 0, checked.stderr


def test_operations_are_audited_on_each_host(host):
    log = SANDBOX / instance(host) / "audit" / "audit.log"
    lines = host.file(str(log)).content_string.splitlines()
    actions = [json.loads(line)["event"]["action"] for line in lines]
    for operation in ("restart_services", "check_health", "purge_temp_files", "rotate_logs"):
        assert f"{operation}.started" in actions and f"{operation}.finished" in actions
