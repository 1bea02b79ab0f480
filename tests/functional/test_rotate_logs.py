"""The rotate_logs playbook: on the real fleet's logs (under load, and as its cron.d entry runs it), and on fresh roots.

The fresh roots are hosts of an inventory written by the test (local connection), each a backend model with
only what the test puts there: no folder beforehand, missing logs, logs the app rotates itself, hostile paths,
links and foreign files where the role writes.
"""

from __future__ import annotations

import gzip
import json
import os
import pathlib
import re
import shutil
import subprocess
import sys
import threading
import time
import urllib.request
import uuid

import pytest
import yaml

from ansible_collections.dihya.ops.tests.support.fleet import BIN, HOSTS, run
from test_restart_services import recap

HOST = "dihya-demo-1"
PLAYBOOK = "playbooks/rotate_logs.yml"
MARKER = "# Written by dihya.ops.rotate_logs"


def config(fleet, host):
    return fleet.root(host) / "etc" / "logrotate.conf"


def cron_entry(fleet, host):
    return fleet.sandbox / "cron.d" / f"dihya-rotate-logs-{host}"


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
    """GET /healthz?load=<marker> at a steady pace until stopped (bounded in count and time), counting successes."""

    def __init__(self, port, marker, limit=50000, seconds=300, pace=0.007):
        super().__init__(daemon=True)
        self.url = f"http://127.0.0.1:{port}/healthz?load={marker}"
        self.limit, self.pace, self.deadline = limit, pace, time.monotonic() + seconds
        self.stop = threading.Event()
        self.sent = self.ok = 0

    def run(self):
        while not self.stop.is_set() and self.sent < self.limit and time.monotonic() < self.deadline:
            self.sent += 1
            self.ok += get(f"{self.url}&n={self.sent}")
            time.sleep(self.pace)


def cron_command(entry: pathlib.Path) -> str:
    """The command of the one schedule line of a cron.d entry, as cron reads it (5 time fields, the user, the command)."""
    jobs = [line for line in entry.read_text().splitlines()
            if line.strip() and not line.lstrip().startswith("#") and "=" not in line.split()[0]]
    assert len(jobs) == 1, jobs
    fields = jobs[0].split(None, 6)
    assert fields[5] == "root", fields
    return fields[6]


def run_as_cron(command: str) -> subprocess.CompletedProcess[str]:
    """Run a cron.d command the way cron runs it: /bin/sh -c with cron's minimal environment."""
    return subprocess.run(["env", "-i", "PATH=/usr/bin:/bin", "SHELL=/bin/sh", "/bin/sh", "-c", command],
                          capture_output=True, text=True, timeout=60, check=False)


@pytest.fixture(scope="module")
def configured(fleet):
    """The fleet's first rotate_logs runs: in check mode (what the logs were before it), for real, and again.

    The tests of the installed schedule use the entries these runs wrote instead of running the playbook again.
    """
    logs_before = {host: sorted((fleet.root(host) / "log").iterdir()) for host in HOSTS}
    check = fleet.playbook(PLAYBOOK, "--check", "--diff")
    after_check = {host: (config(fleet, host).exists(), cron_entry(fleet, host).exists(),
                          sorted((fleet.root(host) / "log").iterdir())) for host in HOSTS}
    apply = fleet.playbook(PLAYBOOK) if check.returncode == 0 else check
    after_apply = {host: rotated(fleet, host) for host in HOSTS}
    again = fleet.playbook(PLAYBOOK) if apply.returncode == 0 else apply
    return {"logs_before": logs_before, "check": check, "after_check": after_check, "apply": apply,
            "rotated_after_apply": after_apply, "again": again}


def test_check_mode_writes_nothing_then_configuration_is_valid_and_idempotent(fleet, configured):
    logs_before, check = configured["logs_before"], configured["check"]
    assert check.returncode == 0, check.stdout + check.stderr
    assert all(stats["changed"] >= 1 for stats in recap(check.stdout).values())
    assert "postrotate" in check.stdout
    for host in HOSTS:
        config_written, entry_written, logs = configured["after_check"][host]
        assert not config_written, host
        assert not entry_written, host
        assert logs == logs_before[host], host

    apply = configured["apply"]
    assert apply.returncode == 0, apply.stdout + apply.stderr
    for host in HOSTS:
        text = config(fleet, host).read_text()
        for name in ("access.log", "error.log", "app.log"):
            assert f'"{fleet.root(host)}/log/{name}"' in text
        assert "supervisord.log" not in text and MARKER in text
        assert f"kill -USR1 \"$(cat {fleet.root(host)}/run/gunicorn.pid)\"" in text
        debug = subprocess.run(["logrotate", "-d", "-s", "/dev/null", str(config(fleet, host))],
                               capture_output=True, text=True, check=False)
        assert debug.returncode == 0, debug.stdout + debug.stderr
        assert not configured["rotated_after_apply"][host], host
        assert cron_command(cron_entry(fleet, host)) == (
            f"/usr/sbin/logrotate -s {fleet.root(host)}/run/logrotate.status {config(fleet, host)}")
        assert oct(cron_entry(fleet, host).stat().st_mode & 0o7777) == "0o644"

    again = configured["again"]
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
        proc = fleet.playbook(PLAYBOOK, "--limit", HOST, "-e", "rotate_logs_force=true",
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


def test_the_scheduled_run_rotates_and_the_service_reopens_its_log(fleet, configured):
    """The installed cron.d line, run as cron runs it, rotates a log that is due and gunicorn writes to the new file."""
    host = "dihya-demo-2"
    assert configured["apply"].returncode == 0, configured["apply"].stdout + configured["apply"].stderr
    log_dir = fleet.root(host) / "log"
    before_marker = uuid.uuid4().hex
    assert all(get(f"http://127.0.0.1:{fleet.port(host)}/healthz?before={before_marker}") for dummy in range(3))
    # The logs were last rotated two days ago, as logrotate's state file records it: the daily rotation is due.
    state = fleet.root(host) / "run" / "logrotate.status"
    state.write_text("logrotate state -- version 2\n"
                     + "".join(f'"{log_dir / name}" 2020-1-1-3:17:0\n' for name in ("access.log", "error.log", "app.log")))
    pids, rotated_before = fleet.pids(), rotated(fleet, host)

    command = cron_command(cron_entry(fleet, host))
    done = run_as_cron(command)
    assert done.returncode == 0, done.stdout + done.stderr

    new = sorted(set(rotated(fleet, host)) - set(rotated_before))
    assert len(new) == 1 and new[0].parent == log_dir, new
    assert lines(new[0], before_marker) == 3
    after = uuid.uuid4().hex
    assert all(get(f"http://127.0.0.1:{fleet.port(host)}/healthz?after={after}") for dummy in range(3))
    deadline = time.monotonic() + 10
    while lines(log_dir / "access.log", after) < 3 and time.monotonic() < deadline:
        time.sleep(0.1)
    assert lines(log_dir / "access.log", after) == 3
    assert lines(new[0], after) == 0
    assert f'"{log_dir / "access.log"}" 2020-1-1' not in state.read_text()
    assert fleet.pids() == pids

    # Run again at once: nothing is due any more.
    again = run_as_cron(command)
    assert again.returncode == 0, again.stdout + again.stderr
    assert sorted(set(rotated(fleet, host)) - set(rotated_before)) == new


def cron_clock(hour: int, minute: int, lead: float) -> str:
    """A TZ value whose local time is ``lead`` seconds before hour:minute now (POSIX offsets go to the second).

    cron matches its entries, and sleeps to the next minute, in local time: the daemon started with it runs an
    entry of that minute about ``lead`` seconds later, with the host's clock left alone.
    """
    east = round(hour * 3600 + minute * 60 - lead - time.time()) % 86400
    hours, rest = divmod(east, 3600)
    return "CRN-{:02d}:{:02d}:{:02d}".format(hours, *divmod(rest, 60))


@pytest.mark.skipif(shutil.which("cron") is None or shutil.which("unshare") is None, reason="needs cron and unshare")
def test_the_cron_daemon_runs_the_entry_and_the_log_rotates(fleet, configured, tmp_path):
    """The real cron daemon, in a mount namespace that shows it the fleet's cron.d folder as /etc/cron.d (and an empty
    crontab and spool), runs the installed entry at its minute (the role's default, 03:17): its local time is set, by
    its TZ, a few seconds before that minute. It runs at most 40 s and is stopped by PID."""
    host = "dihya-demo-3"
    assert configured["apply"].returncode == 0, configured["apply"].stdout + configured["apply"].stderr
    fields = [line.split(None, 5) for line in cron_entry(fleet, host).read_text().splitlines()
              if line.strip() and not line.startswith("#") and "=" not in line.split()[0]]
    assert [field[:5] for field in fields] == [["17", "3", "*", "*", "*"]], fields
    log_dir = fleet.root(host) / "log"
    (fleet.root(host) / "run" / "logrotate.status").write_text(
        "logrotate state -- version 2\n" + "".join(f'"{log_dir / name}" 2020-1-1-3:17:0\n' for name in ("access.log", "error.log", "app.log")))
    marker = uuid.uuid4().hex
    assert all(get(f"http://127.0.0.1:{fleet.port(host)}/healthz?cron={marker}") for dummy in range(3))
    before = rotated(fleet, host)
    (tmp_path / "empty").mkdir()
    (tmp_path / "crontab").write_text("")
    script = (f"mount -t tmpfs tmpfs /run && mount --bind {fleet.sandbox / 'cron.d'} /etc/cron.d && "
              f"mount --bind {tmp_path / 'crontab'} /etc/crontab && mount --bind {tmp_path / 'empty'} /var/spool/cron/crontabs && "
              "exec cron -f -L 15")
    # Long enough for the daemon to start and read its entries on a busy machine, well before the minute.
    clock = cron_clock(3, 17, lead=8)
    daemon = subprocess.Popen(["unshare", "--mount", "--propagation", "private", "/bin/sh", "-c", script],
                              env=dict(os.environ, TZ=clock), stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        deadline = time.monotonic() + 40
        while time.monotonic() < deadline and not set(rotated(fleet, host)) - set(before):
            time.sleep(0.2)
        # Let the job (cron's child running logrotate) finish before the daemon stops.
        children = pathlib.Path(f"/proc/{daemon.pid}/task/{daemon.pid}/children")
        while time.monotonic() < deadline + 10 and children.exists() and children.read_text().strip():
            time.sleep(0.2)
    finally:
        daemon.terminate()
        daemon.wait(timeout=10)
    new = sorted(set(rotated(fleet, host)) - set(before))
    assert len(new) == 1, new
    deadline = time.monotonic() + 10
    while lines(new[0], marker) < 3 and time.monotonic() < deadline:
        time.sleep(0.2)
    assert lines(new[0], marker) == 3


# --- Fresh roots: an inventory of hosts with nothing but what each test puts there. -------------------------------


class Roots:
    """Hosts of a throw-away inventory, each a root under ``base`` with its own backend model."""

    def __init__(self, base: pathlib.Path):
        self.base = base
        self.hosts: dict[str, dict] = {}

    def root(self, host: str) -> pathlib.Path:
        return self.base / host

    def cron_dir(self, host: str) -> pathlib.Path:
        return self.base / f"{host}-cron.d"

    def add(self, host: str, logs: list[str] | None = None, absent: tuple[str, ...] = (), **model) -> pathlib.Path:
        """A host whose root holds only a log folder; ``logs`` are names in it listed in the model, created unless ``absent``."""
        root = self.root(host)
        (root / "log").mkdir(parents=True)
        self.cron_dir(host).mkdir()
        names = ["app.log"] if logs is None else logs
        for name in names:
            if "*" not in name and name not in absent:
                (root / "log" / name).write_text("a line\n")
        self.hosts[host] = {
            "ansible_connection": "local",
            "ansible_python_interpreter": sys.executable,
            "dihya_backend_root": str(root),
            "dihya_backend_log_dir": str(root / "log"),
            "dihya_backend_logs": [str(root / "log" / name) for name in names],
            "dihya_backend_services": [],
            "rotate_logs_cron_dir": str(self.cron_dir(host)),
            **model,
        }
        return root

    def play(self, *args: str) -> tuple[subprocess.CompletedProcess[str], Results]:
        inventory = self.base / "inventory.yml"
        inventory.write_text(yaml.safe_dump({"dihya_backend": {"hosts": self.hosts}}))
        proc = run([str(BIN / "ansible-playbook"), "-v", "-i", str(inventory), PLAYBOOK, *args], env=PLAY_ENV, timeout=300)
        return proc, Results(proc.stdout)


PLAY_ENV = dict(os.environ, ANSIBLE_NOCOLOR="1", ANSIBLE_FORCE_COLOR="0", ANSIBLE_CALLBACK_RESULT_FORMAT="json")
RESULT = re.compile(r"^(ok|changed|fatal|skipping): \[([^\]]+)\](?:: FAILED!)? => (?=\{)", re.MULTILINE)
TASK = re.compile(r"^TASK \[(?:[^\]]* : )?([^\]]+)\] \*+$", re.MULTILINE)


class Results:
    """The task results of a verbose ansible-playbook run (results printed as JSON): task name, host, result."""

    def __init__(self, output: str):
        self.output = output
        self.stats = recap(output)
        tasks = [(match.start(), match.group(1)) for match in TASK.finditer(output)]
        self.items: list[tuple[str, str, dict]] = []
        decoder = json.JSONDecoder()
        for match in RESULT.finditer(output):
            task = [name for start, name in tasks if start < match.start()][-1]
            result, dummy = decoder.raw_decode(output, match.end())
            result["failed"] = match.group(1) == "fatal"
            self.items.append((task, match.group(2), result))

    def of(self, host: str) -> list[tuple[str, dict]]:
        return [(task, result) for task, name, result in self.items if name == host]

    def report(self, host: str) -> dict:
        found = [result["ansible_facts"]["rotate_logs_report"] for task, result in self.of(host)
                 if "rotate_logs_report" in result.get("ansible_facts", {})]
        assert found, self.output[-3000:]
        return found[-1]

    def failure(self, host: str) -> str:
        messages = [result.get("msg", "") for task, result in self.of(host) if result.get("failed")]
        assert messages, f"{host} did not fail"
        return "\n".join(messages)

    def warnings(self, host: str) -> str:
        return "\n".join(result["msg"] for task, result in self.of(host) if task.startswith("Warn about") and "msg" in result)

    def changed(self, host: str) -> int:
        return self.stats[host]["changed"]


def tree(path: pathlib.Path) -> list[tuple[str, int]]:
    return sorted((str(item.relative_to(path)), item.lstat().st_mode) for item in path.rglob("*") if item.name != "inventory.yml")


@pytest.fixture
def roots(tmp_path):
    return Roots(tmp_path)


def test_fresh_roots_check_mode_reports_the_folders_then_the_run_creates_them(roots):
    """One inventory of fresh roots, in the same runs: one with the defaults, one with an archive folder and a size,
    and one whose schedule becomes ``none`` for the third run (the role removes its former cron entry only)."""
    root = roots.add("fresh", logs=["app.log", "gone.log", "*.out"], absent=("gone.log",))
    archive = roots.add("archive", rotate_logs_olddir="{{ dihya_backend_root }}/log/old", rotate_logs_size="10M")
    unscheduled = roots.add("none")
    before = tree(roots.base)

    check, data = roots.play("--check")
    assert check.returncode == 0, check.stdout + check.stderr
    seen = data.report("fresh")
    assert seen["check_mode"] is True
    assert seen["folders_created"] == [str(root / "etc"), str(root / "run")]
    assert seen["missing"] == [str(root / "log" / "gone.log"), str(root / "log" / "*.out")]
    assert seen["schedule"] == "cron" and seen["schedule_files"] == [str(roots.cron_dir("fresh") / "dihya-rotate-logs-fresh")]
    assert "gone.log (no file matches)" in data.warnings("fresh")
    assert data.changed("fresh") >= 3
    assert str(archive / "log" / "old") in data.report("archive")["folders_created"]
    assert tree(roots.base) == before
    assert not (archive / "log" / "old").exists()

    apply, data = roots.play()
    assert apply.returncode == 0, apply.stdout + apply.stderr
    assert data.report("fresh")["folders_created"] == [str(root / "etc"), str(root / "run")]
    assert oct((root / "etc").stat().st_mode & 0o777) == "0o755"
    assert oct((root / "run").stat().st_mode & 0o777) == "0o750"
    text = (root / "etc" / "logrotate.conf").read_text()
    assert f'"{root}/log/app.log"' in text and f'"{root}/log/gone.log"' in text and "postrotate" not in text
    entry = roots.cron_dir("fresh") / "dihya-rotate-logs-fresh"
    assert entry.read_text().splitlines()[-1] == (
        f"17 3 * * * root /usr/sbin/logrotate -s {root}/run/logrotate.status {root}/etc/logrotate.conf")
    assert oct((archive / "log" / "old").stat().st_mode & 0o777) == "0o750"
    assert f"olddir {archive}/log/old" in (archive / "etc" / "logrotate.conf").read_text()
    # With a size, the schedule looks at the logs every hour.
    assert cron_command(roots.cron_dir("archive") / "dihya-rotate-logs-archive")
    assert (roots.cron_dir("archive") / "dihya-rotate-logs-archive").read_text().splitlines()[-1].startswith("17 * * * * root ")
    none_entry = roots.cron_dir("none") / "dihya-rotate-logs-none"
    assert none_entry.is_file()

    # The scheduled command works on the fresh root (first run: logrotate records the logs, rotates nothing).
    done = run_as_cron(cron_command(entry))
    assert done.returncode == 0, done.stdout + done.stderr
    assert f'"{root}/log/app.log"' in (root / "run" / "logrotate.status").read_text()

    roots.hosts["none"].update(rotate_logs_schedule="none", rotate_logs_config_path=str(unscheduled / "logrotate.d" / "app"))
    again, data = roots.play()
    assert again.returncode == 0, again.stdout + again.stderr
    assert data.changed("fresh") == 0
    assert data.report("fresh")["folders_created"] == []
    assert not none_entry.exists()
    seen = data.report("none")
    assert seen["schedule"] == "none" and seen["schedule_files"] == []
    assert (unscheduled / "logrotate.d" / "app").is_file()
    shown = [result["msg"] for name, result in data.of("none") if name == "Show what the role did"]
    assert "the host's own logrotate must read" in shown[0]
    # A cron.d file of that name the role did not write is neither refused nor removed.
    none_entry.write_text("0 * * * * root /bin/true\n")
    proc, data = roots.play()
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert none_entry.read_text() == "0 * * * * root /bin/true\n"


def test_a_log_the_app_rotates_itself_is_warned_about_and_left_out(roots):
    numbered = roots.add("numbered", logs=["access.log", "app.log"])
    for index in (1, 2):
        (numbered / "log" / f"app.log.{index}").write_text("an older line\n")
    declared = roots.add("declared", logs=["access.log", "app.log"])
    roots.hosts["declared"]["dihya_backend_self_rotated_logs"] = [str(declared / "log" / "app.log")]
    globbed = roots.add("globbed", logs=["*.log"])
    for name in ("access.log", "app.log", "app.log.1"):
        (globbed / "log" / name).write_text("a line\n")
    kept = roots.add("kept", logs=["access.log", "app.log"], rotate_logs_self_rotated="rotate")
    (kept / "log" / "app.log.1").write_text("an older line\n")
    # With date extensions off, numbered backups of a log logrotate already rotated (its state file says so) are its own.
    ours = roots.add("ours", logs=["access.log"], rotate_logs_dateext=False)
    (ours / "log" / "access.log.1").write_text("rotated by logrotate\n")
    (ours / "run").mkdir()
    (ours / "run" / "logrotate.status").write_text(f'logrotate state -- version 2\n"{ours}/log/access.log" 2024-1-1-3:17:0\n')

    proc, data = roots.play()
    assert proc.returncode == 0, proc.stdout + proc.stderr
    for host, root in (("numbered", numbered), ("declared", declared)):
        seen = data.report(host)
        assert seen["self_rotated"] == seen["excluded"] == [str(root / "log" / "app.log")], seen
        assert seen["rotated"] == [str(root / "log" / "access.log")]
        text = (root / "etc" / "logrotate.conf").read_text()
        assert "app.log" not in text.split(MARKER)[1].split("\n", 1)[1] and f'"{root}/log/access.log"' in text
    assert "numbered backups app.log.1, app.log.2" in data.warnings("numbered")
    assert "declared in dihya_backend_self_rotated_logs" in data.warnings("declared")
    assert "Left out of the configuration" in data.warnings("numbered")

    seen = data.report("globbed")
    assert seen["expanded"] == [{"pattern": str(globbed / "log" / "*.log"), "into": [str(globbed / "log" / "access.log")]}]
    assert seen["rotated"] == [str(globbed / "log" / "access.log")]

    seen = data.report("kept")
    assert seen["self_rotated"] == [str(kept / "log" / "app.log")] and seen["excluded"] == []
    assert f'"{kept}/log/app.log"' in (kept / "etc" / "logrotate.conf").read_text()
    assert "Rotated by logrotate too" in data.warnings("kept")

    assert data.report("ours")["self_rotated"] == []
    assert data.warnings("ours") == ""


def test_refusals_name_the_problem_and_write_nothing(roots):
    roots.add("nologs", logs=[])
    roots.add("dotdot")
    roots.hosts["dotdot"]["dihya_backend_logs"] = [str(roots.root("dotdot") / "log" / ".." / "etc" / "passwd")]
    roots.add("quote")
    roots.hosts["quote"]["dihya_backend_logs"] = [str(roots.root("quote") / "log" / 'a"b.log')]
    roots.add("relative")
    roots.hosts["relative"]["dihya_backend_logs"] = ["log/app.log"]
    roots.add("globdir")
    roots.hosts["globdir"]["dihya_backend_logs"] = [str(roots.root("globdir") / "*" / "app.log")]
    roots.add("signal", rotate_logs_signal="USR1; touch /tmp/owned", rotate_logs_pidfile="/run/x.pid")
    roots.add("missing", logs=["app.log", "gone.log"], absent=("gone.log",), rotate_logs_missing="fail")
    roots.add("nocron")
    roots.cron_dir("nocron").rmdir()
    # What is at a destination and was not written by the role: a link, a foreign file, a FIFO, a file for a folder.
    victim = roots.base / "victim.conf"
    victim.write_text("precious\n")
    root = roots.add("cronlink")
    (roots.cron_dir("cronlink") / "dihya-rotate-logs-cronlink").symlink_to(victim)
    roots.add("cronforeign")
    (roots.cron_dir("cronforeign") / "dihya-rotate-logs-cronforeign").write_text("0 * * * * root /bin/true\n")
    root = roots.add("configlink")
    (root / "etc").mkdir()
    (root / "etc" / "logrotate.conf").symlink_to(victim)
    root = roots.add("configfifo")
    (root / "etc").mkdir()
    os.mkfifo(root / "etc" / "logrotate.conf")
    root = roots.add("etcfile")
    (root / "etc").write_text("not a folder\n")
    root = roots.add("etclink")
    (roots.base / "elsewhere").mkdir()
    (root / "etc").symlink_to(roots.base / "elsewhere")
    roots.add("systemd", rotate_logs_schedule="systemd")
    before = tree(roots.base)

    proc, data = roots.play()
    assert proc.returncode != 0
    expected = {
        "nologs": "list the app's log files", "dotdot": "no '.' or '..' component", "quote": "without double quotes",
        "relative": "Give absolute", "globdir": "in the file name only", "signal": "rotate_logs_signal a signal name",
        "missing": f"Listed logs missing on missing: {roots.root('missing')}/log/gone.log",
        "nocron": "cron is not installed", "cronlink": "is a symbolic link", "cronforeign": "a file this role did not write",
        "configlink": "is a symbolic link", "configfifo": "is a FIFO", "etcfile": "configuration folder",
        "etclink": "is a symbolic link", "systemd": "does not run systemd",
    }
    assert set(data.stats) == set(expected)
    for host, text in expected.items():
        assert data.stats[host]["failed"] >= 1, host
        message = data.failure(host)
        assert text in message and "Nothing was written" in message, (host, message)
    assert tree(roots.base) == before
    assert victim.read_text() == "precious\n"


@pytest.mark.skipif(shutil.which("systemd-analyze") is None or shutil.which("unshare") is None,
                    reason="needs systemd-analyze and unshare")
def test_on_a_systemd_host_the_timer_units_are_written_and_valid(roots, tmp_path):
    """The test hosts do not run systemd: the role sees /run/systemd/system in a mount namespace, writes its units,
    then cannot enable them (no systemd to talk to); the units are checked with systemd-analyze verify."""
    units = tmp_path / "units"
    units.mkdir()
    roots.add("sd", rotate_logs_systemd_dir=str(units))
    inventory = roots.base / "inventory.yml"
    inventory.write_text(yaml.safe_dump({"dihya_backend": {"hosts": roots.hosts}}))
    script = ("mount -t tmpfs tmpfs /run/systemd && mkdir /run/systemd/system && "
              f"exec {BIN / 'ansible-playbook'} -v -i {inventory} {PLAYBOOK}")
    proc = run(["unshare", "--mount", "--propagation", "private", "/bin/sh", "-c", script], env=PLAY_ENV, timeout=300)
    data = Results(proc.stdout)
    assert "Enable and start the timer" in [name for name, result in data.of("sd") if result.get("failed")], proc.stdout
    service, timer = units / "dihya-rotate-logs-sd.service", units / "dihya-rotate-logs-sd.timer"
    root = roots.root("sd")
    assert f"ExecStart=/usr/sbin/logrotate -s {root}/run/logrotate.status {root}/etc/logrotate.conf" in service.read_text()
    assert "OnCalendar=*-*-* 03:17:00" in timer.read_text()
    assert not (roots.cron_dir("sd") / "dihya-rotate-logs-sd").exists()
    verified = subprocess.run(["systemd-analyze", "verify", str(timer), str(service)],
                              capture_output=True, text=True, timeout=60, check=False)
    assert verified.returncode == 0, verified.stdout + verified.stderr
