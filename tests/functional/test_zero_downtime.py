# Copyright (c) Dihya ops maintainers
# GNU General Public License v3.0+ (see LICENSES/GPL-3.0-or-later.txt or https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later

"""Rolling restarts without lost requests: the real demo fleet behind a real HAProxy (tests/demo_backend/deploy.yml)."""

from __future__ import annotations

import concurrent.futures
import json
import re
import shutil
import threading
import urllib.error
import urllib.request

import pytest

from ansible_collections.dihya.ops.tests.support.fleet import HOSTS, assert_no_traceback
from ansible_collections.dihya.ops.tests.support.request_loop import RequestLoop


def words(text: str) -> str:
    return " ".join(text.split())


def balancer_states(fleet) -> dict[str, str]:
    states = {}
    for host in HOSTS:
        result = fleet.adhoc("dihya.ops.balancer_member", {
            "socket": str(fleet.sandbox / "haproxy" / "admin.sock"), "backend": "dihya_backend", "server": host})
        assert not result["failed"], result
        states[host] = result["before"]["admin_state"]
    return states


def through_haproxy(fleet, path: str = "/healthz") -> str:
    return f"http://127.0.0.1:{fleet.base_port}{path}"


@pytest.mark.parametrize("method", ["restart", "reload", "upgrade"])
def test_a_rolling_restart_through_haproxy_loses_no_request(fleet, method):
    before = fleet.pids()
    with RequestLoop(through_haproxy(fleet), interval=0.02, max_seconds=300) as loop:
        proc = fleet.playbook("playbooks/restart_services.yml", "-e", f"restart_services_method={method}")
    tally = loop.tally
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert tally.sent > 100, tally
    assert tally.failed == 0, (tally.sent, tally.statuses)
    after = fleet.pids()
    for host in HOSTS:
        assert fleet.healthz(host)[0] == 200
        if method == "reload":
            assert after[host] == before[host]  # same master, new workers
        else:
            assert after[host] and after[host] != before[host], (before, after)
    assert set(balancer_states(fleet).values()) == {"ready"}


def test_a_broken_upgrade_keeps_the_old_master_and_stops_the_rollout(fleet):
    wsgi = fleet.root("dihya-demo-2") / "app" / "dihya_demo" / "wsgi.py"
    saved = wsgi.with_suffix(".saved")
    shutil.copy2(wsgi, saved)
    before = fleet.pids()
    try:
        wsgi.write_text('raise ImportError("release broken on purpose")\n')
        with RequestLoop(through_haproxy(fleet), interval=0.02, max_seconds=300) as loop:
            proc = fleet.playbook("playbooks/restart_services.yml", "-e", "restart_services_method=upgrade")
        after = fleet.pids()
    finally:
        shutil.copy2(saved, wsgi)
        saved.unlink()
    output = words(proc.stdout + proc.stderr)
    assert proc.returncode != 0, output
    assert loop.tally.failed == 0, loop.tally.statuses
    assert "Rollout stopped at dihya-demo-2" in output, output[-6000:]
    assert "Rolled back: rolled back to old gunicorn master" in output, output[-6000:]
    assert "The host is left drained at haproxy" in output, output[-6000:]
    assert_no_traceback(output)
    # Host 1 upgraded, host 2 still on its old master (serving), host 3 untouched.
    assert after["dihya-demo-1"] != before["dihya-demo-1"]
    assert after["dihya-demo-2"] == before["dihya-demo-2"]
    assert fleet.healthz("dihya-demo-2")[0] == 200
    assert after["dihya-demo-3"] == before["dihya-demo-3"]
    assert balancer_states(fleet) == {"dihya-demo-1": "ready", "dihya-demo-2": "drain", "dihya-demo-3": "ready"}
    # Fixed: the same rollout on host 2 upgrades it and sets it ready again.
    fixed = fleet.playbook("playbooks/restart_services.yml", "--limit", "dihya-demo-2")
    assert fixed.returncode == 0, fixed.stdout + fixed.stderr
    assert fleet.pids()["dihya-demo-2"] != before["dihya-demo-2"]
    assert set(balancer_states(fleet).values()) == {"ready"}


def test_the_drain_lets_a_slow_request_finish_before_the_restart(fleet):
    host = "dihya-demo-1"
    before = fleet.pids()[host]
    opener = urllib.request.build_opener(urllib.request.ProxyHandler({}))
    done = threading.Event()

    def slow() -> tuple[int, str]:
        try:
            with opener.open(through_haproxy(fleet, "/slow?seconds=3"), timeout=20) as response:
                return int(response.status), str(json.loads(response.read())["instance"])
        except urllib.error.HTTPError as exc:
            return int(exc.code), exc.read().decode(errors="replace")[:200]
        except OSError as exc:
            return 0, type(exc).__name__

    # Requests taking 3 s, one started every second through HAProxy (round robin) for as long as the rollout runs,
    # at most 60: some are in flight on the host when it is drained, and the two other hosts (two workers each) are
    # never saturated.
    with concurrent.futures.ThreadPoolExecutor(12) as pool:
        futures = []

        def feed() -> None:
            while not done.is_set() and len(futures) < 60:
                futures.append(pool.submit(slow))
                done.wait(1.0)

        feeder = threading.Thread(target=feed)
        feeder.start()
        try:
            proc = fleet.playbook("playbooks/restart_services.yml", "--limit", host, "-v", "-e", "restart_services_method=restart")
        finally:
            done.set()
            feeder.join()
        answers = [future.result() for future in futures]
    assert proc.returncode == 0, proc.stdout[-6000:] + proc.stderr
    assert all(status == 200 for status, dummy in answers), [(i, a) for i, a in enumerate(answers) if a[0] != 200]
    assert host in [instance for dummy, instance in answers], answers
    waited = re.search(r"set dihya_backend/dihya-demo-1 to drain; 0 active sessions after (\d+\.\d) s", words(proc.stdout))
    assert waited and float(waited.group(1)) >= 0.3, proc.stdout[-6000:]
    assert fleet.pids()[host] != before


def test_an_unreachable_haproxy_stops_the_rollout_before_anything_restarts(fleet, tmp_path):
    before = fleet.pids()
    balancer = {"type": "haproxy", "socket": str(tmp_path / "missing.sock"), "backend": "dihya_backend", "host": "localhost"}
    proc = fleet.playbook("playbooks/restart_services.yml", "-e", json.dumps({"restart_services_balancer": balancer}))
    output = words(proc.stdout + proc.stderr)
    assert proc.returncode != 0
    assert "Rollout stopped at dihya-demo-1 before anything restarted" in output, output
    assert f"HAProxy stats socket {tmp_path / 'missing.sock'} is unreachable" in output
    assert_no_traceback(output)
    assert fleet.pids() == before
    assert "dihya-demo-2" not in re.findall(r"^(\S+)\s+:\s+ok=", proc.stdout, re.MULTILINE)


def test_check_mode_tells_the_method_and_the_balancer_and_changes_nothing(fleet):
    before = fleet.pids()
    proc = fleet.playbook("playbooks/restart_services.yml", "--check", "--limit", "dihya-demo-1", "-v")
    output = words(proc.stdout + proc.stderr)
    assert proc.returncode == 0, output
    assert "would tell haproxy" in output and "dihya_backend/dihya-demo-1 to drain" in output, output[-6000:]
    assert "would send USR2 to gunicorn master" in output
    assert fleet.pids() == before
    assert set(balancer_states(fleet).values()) == {"ready"}


@pytest.mark.parametrize("new_code", ["true", "yes"])
def test_new_code_is_never_reloaded(fleet, new_code):
    """restart_services_new_code (set by update_dependencies) refuses reload; auto turns a service's own reload into upgrade."""
    before = fleet.pids()
    refused = fleet.playbook("playbooks/restart_services.yml", "--limit", "dihya-demo-1", "-e", "restart_services_method=reload",
                             "-e", f"restart_services_new_code={new_code}")
    output = words(refused.stdout + refused.stderr)
    assert refused.returncode != 0
    assert "cannot be restarted with the method reload" in output and "Nothing was restarted." in output, output[-4000:]
    assert_no_traceback(output)
    service = {"name": "web", "manager": "supervisor", "unit": "dihya-web", "restart_method": "reload", "gunicorn_keeper": True,
               "pidfile": str(fleet.root("dihya-demo-1") / "run" / "gunicorn.pid")}
    for code, told in (("false", "would send HUP to gunicorn master"), (new_code, "would send USR2 to gunicorn master")):
        proc = fleet.playbook("playbooks/restart_services.yml", "--check", "--limit", "dihya-demo-1", "-v", "-e",
                              json.dumps({"dihya_backend_services": [service], "restart_services_new_code": code}))
        output = words(proc.stdout + proc.stderr)
        assert proc.returncode == 0, output[-4000:]
        assert told in output, output[-4000:]
    assert fleet.pids() == before
    assert set(balancer_states(fleet).values()) == {"ready"}
