"""The rotate_logs playbook on the real fleet's logs, under load."""

from __future__ import annotations

import gzip
import subprocess
import threading
import time
import urllib.request
import uuid

from ansible_collections.dihya.ops.tests.support.fleet import HOSTS
from test_restart_services import recap

HOST = "dihya-demo-1"


def config(fleet, host):
    return fleet.root(host) / "etc" / "logrotate.conf"


def rotated(fleet, host):
    """Rotated access logs of the host, next to the live one and in the archive folder."""
    log_dir = fleet.root(host) / "log"
    return sorted(path for folder in (log_dir, log_dir / "archive") if folder.is_dir() for path in folder.glob("access.log-*"))


def lines(path, marker):
    opener = gzip.open if path.suffix == ".gz" else open
    with opener(path, "rt", encoding="utf-8", errors="replace") as handle:
        return sum(1 for line in handle if marker in line)


def get(url):
    try:
        with urllib.request.build_opener(urllib.request.ProxyHandler({})).open(url, timeout=5) as response:
            response.read()
            return response.status == 200
    except OSError:
        return False


class Load(threading.Thread):
    """GET /healthz?load=<marker> at a steady pace until stopped (bounded), counting successes."""

    def __init__(self, port, marker, limit=2000, pace=0.007):
        super().__init__(daemon=True)
        self.url = f"http://127.0.0.1:{port}/healthz?load={marker}"
        self.limit, self.pace = limit, pace
        self.stop = threading.Event()
        self.sent = self.ok = 0

    def run(self):
        while not self.stop.is_set() and self.sent < self.limit:
            self.sent += 1
            self.ok += get(f"{self.url}&n={self.sent}")
            time.sleep(self.pace)


def test_check_mode_writes_nothing_then_configuration_is_valid_and_idempotent(fleet):
    logs_before = {host: sorted((fleet.root(host) / "log").iterdir()) for host in HOSTS}

    check = fleet.playbook("playbooks/rotate_logs.yml", "--check", "--diff")
    assert check.returncode == 0, check.stdout + check.stderr
    assert all(stats["changed"] >= 1 for stats in recap(check.stdout).values())
    assert "postrotate" in check.stdout
    for host in HOSTS:
        assert not config(fleet, host).exists(), host
        assert sorted((fleet.root(host) / "log").iterdir()) == logs_before[host], host

    apply = fleet.playbook("playbooks/rotate_logs.yml")
    assert apply.returncode == 0, apply.stdout + apply.stderr
    for host in HOSTS:
        text = config(fleet, host).read_text()
        for name in ("access.log", "error.log", "app.log"):
            assert f'"{fleet.root(host)}/log/{name}"' in text
        assert "supervisord.log" not in text
        assert f"kill -USR1 \"$(cat {fleet.root(host)}/run/gunicorn.pid)\"" in text
        debug = subprocess.run(["logrotate", "-d", "-s", "/dev/null", str(config(fleet, host))],
                               capture_output=True, text=True, check=False)
        assert debug.returncode == 0, debug.stdout + debug.stderr
        assert not rotated(fleet, host), host

    again = fleet.playbook("playbooks/rotate_logs.yml")
    assert again.returncode == 0, again.stdout + again.stderr
    stats = recap(again.stdout)
    assert set(stats) == set(HOSTS)
    assert all(host_stats["changed"] == 0 for host_stats in stats.values()), stats


def test_forced_rotation_under_load_loses_no_line_and_reopens_the_log(fleet):
    port, marker = fleet.port(HOST), uuid.uuid4().hex
    pids = fleet.pids()
    load = Load(port, marker)
    load.start()
    time.sleep(0.5)
    try:
        proc = fleet.playbook("playbooks/rotate_logs.yml", "--limit", HOST, "-e", "rotate_logs_force=true",
                              "-e", "rotate_logs_olddir={{ dihya_backend_log_dir }}/archive")
        time.sleep(0.5)
    finally:
        load.stop.set()
        load.join(timeout=30)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert recap(proc.stdout)[HOST]["changed"] >= 1
    time.sleep(1)

    access = fleet.root(HOST) / "log" / "access.log"
    archives = rotated(fleet, HOST)
    assert archives and all(path.parent.name == "archive" for path in archives), archives
    in_rotated = sum(lines(path, marker) for path in archives)
    in_fresh = lines(access, marker)
    print(f"load: sent={load.sent} ok={load.ok} rotated={in_rotated} fresh={in_fresh}")
    assert load.ok > 100 and load.ok == load.sent
    assert in_rotated > 0 and in_fresh > 0
    assert in_rotated + in_fresh == load.ok

    after = uuid.uuid4().hex
    assert all(get(f"http://127.0.0.1:{port}/healthz?after={after}") for dummy in range(5))
    time.sleep(0.5)
    assert lines(access, after) == 5
    assert sum(lines(path, after) for path in rotated(fleet, HOST)) == 0
    assert fleet.pids() == pids
