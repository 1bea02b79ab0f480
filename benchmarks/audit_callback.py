"""Benchmark: the cost of the ``dihya.ops.audit`` callback on a playbook of many small tasks.

Generates a playbook of ``--tasks`` ``ansible.builtin.debug`` / ``ansible.builtin.set_fact`` tasks (no module is
copied to a host, so the run is dominated by Ansible's own per-task work, the worst case for a callback), played on
``--hosts`` local hosts, and runs it with and without the callback, interleaved, ``--repeat`` times each after one
unrecorded warm-up run of each. Prints the medians of the wall-clock times and of the CPU times (user + system of
``ansible-playbook`` and its workers) and the overhead of the callback in per cent. The runs with the callback use
dihya.ops.audit through a small generated subclass that times its handlers and writes from inside
``ansible-playbook``: that time depends little on other work on the machine, unlike the difference of two wall-clock
times.

Run it from the checkout with the collection's virtual environment::

    .venv/bin/python benchmarks/audit_callback.py [--tasks 300] [--hosts 1] [--repeat 3] [--fsync batch] [--flush-interval 1]

It is not a test: it exits 0 whatever the figures are, and 1 only when a run fails or when the audit log of a run
with the callback does not hold exactly the expected records or does not verify, so that a broken run is never
reported as a timing.
"""

from __future__ import annotations

import argparse
import ast
import json
import os
import platform
import resource
import secrets
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
import typing as t
from pathlib import Path

import yaml

ROOT = Path(__file__).resolve().parent.parent
VENV_BIN = ROOT / '.venv' / 'bin'
ANSIBLE_PLAYBOOK = VENV_BIN / 'ansible-playbook'
ANSIBLE_CONFIG = ROOT / 'ansible.cfg'
COLLECTIONS = ROOT / '.cache' / 'collections'
PLAYBOOK_TIMEOUT = 900
GOAL_PERCENT = 10.0

sys.path.insert(0, str(COLLECTIONS))

from ansible_collections.dihya.ops.plugins.module_utils import _audit  # noqa: E402  pylint: disable=wrong-import-position


TIMED_NAME = 'dihya_audit_timed'
TIMES_ENV = 'DIHYA_BENCH_CALLBACK_TIMES'

# dihya.ops.audit itself, with a stopwatch around each of its handlers (and around the writes of its timer thread):
# the time the callback adds to the run, measured inside the run, so that other work on the machine hardly affects it.
TIMED_CALLBACK = '''\
from __future__ import annotations

import json
import os
import threading
import time

from ansible_collections.dihya.ops.plugins.callback import audit

DOCUMENTATION = %s


class CallbackModule(audit.CallbackModule):
    CALLBACK_NAME = "%s"

    def __init__(self, *args, **kwargs):
        self._bench = {"seconds": 0.0, "cpu_seconds": 0.0, "calls": 0, "writes": 0}
        self._bench_local = threading.local()
        self._bench_lock = threading.Lock()
        super().__init__(*args, **kwargs)

    def _timed(self, function, *args, **kwargs):
        depth = getattr(self._bench_local, "depth", 0)
        self._bench_local.depth = depth + 1
        started, cpu = time.perf_counter(), time.thread_time()
        try:
            return function(*args, **kwargs)
        finally:
            self._bench_local.depth = depth
            if depth == 0:
                with self._bench_lock:
                    self._bench["seconds"] += time.perf_counter() - started
                    self._bench["cpu_seconds"] += time.thread_time() - cpu
                    self._bench["calls"] += 1

    def _flush(self):
        if self._buffer:
            self._bench["writes"] += 1
        return self._timed(super()._flush)

    def v2_playbook_on_stats(self, stats):
        self._timed(super().v2_playbook_on_stats, stats)
        with open(os.environ["%s"], "w", encoding="utf-8") as handle:
            json.dump(self._bench, handle)


def _wrap(name):
    def handler(self, *args, **kwargs):
        return self._timed(getattr(audit.CallbackModule, name), self, *args, **kwargs)
    handler.__name__ = name
    return handler


for _name in ("v2_playbook_on_start", "v2_playbook_on_play_start", "v2_playbook_on_task_start", "v2_playbook_on_handler_task_start",
              "v2_runner_on_start", "v2_runner_on_ok", "v2_runner_on_failed", "v2_runner_on_skipped", "v2_runner_on_unreachable"):
    setattr(CallbackModule, _name, _wrap(_name))
'''


def write_timed_callback(directory: Path) -> Path:
    """The stopwatch plugin, with the documentation (hence the options) of dihya.ops.audit under its own name."""
    source = (ROOT / 'plugins' / 'callback' / 'audit.py').read_text(encoding='utf-8')
    documentation = next(node.value.value for node in ast.parse(source).body
                         if isinstance(node, ast.Assign) and getattr(node.targets[0], 'id', None) == 'DOCUMENTATION'
                         and isinstance(node.value, ast.Constant) and isinstance(node.value.value, str))
    documentation = documentation.replace('\nname: audit\n', f'\nname: {TIMED_NAME}\n', 1)
    plugins = directory / 'callback_plugins'
    plugins.mkdir()
    (plugins / f'{TIMED_NAME}.py').write_text(TIMED_CALLBACK % (repr(documentation), TIMED_NAME, TIMES_ENV), encoding='utf-8')
    return plugins


class RunTimes(t.NamedTuple):
    """One run: wall-clock and CPU seconds, and with the callback what the stopwatch plugin measured inside it."""

    wall: float
    cpu: float
    inside: dict[str, float]


class BenchmarkError(Exception):
    """A run failed or its audit log is wrong: its time must not be reported."""


def write_playbook(directory: Path, tasks: int) -> Path:
    """``tasks`` tasks alternating debug and set_fact, named uniquely."""
    body = []
    for index in range(tasks):
        if index % 2:
            body.append({'name': f'Set fact {index}', 'ansible.builtin.set_fact': {'bench_value': index}})
        else:
            body.append({'name': f'Debug {index}', 'ansible.builtin.debug': {'msg': f'task {index}'}})
    playbook = [{'name': 'Audit callback benchmark', 'hosts': 'all', 'gather_facts': False, 'tasks': body}]
    path = directory / 'playbook.yml'
    path.write_text(yaml.safe_dump(playbook, sort_keys=False), encoding='utf-8')
    return path


def write_inventory(directory: Path, hosts: int) -> Path:
    lines = [f'bench-{index} ansible_connection=local ansible_python_interpreter={sys.executable}' for index in range(1, hosts + 1)]
    path = directory / 'hosts.ini'
    path.write_text('\n'.join(lines) + '\n', encoding='utf-8')
    return path


class Runner:
    """Runs the playbook from the checkout with its ``ansible.cfg`` and a clean environment."""

    def __init__(self, workdir: Path, playbook: Path, inventory: Path, fsync: str, flush_interval: float) -> None:
        self.workdir = workdir
        self.playbook = playbook
        self.inventory = inventory
        self.key = secrets.token_hex(32)
        self.runs = 0
        home = workdir / 'home'
        home.mkdir()
        self.env = {
            'PATH': os.pathsep.join([str(VENV_BIN), '/usr/local/bin', '/usr/bin', '/bin']),
            'HOME': str(home),
            'LANG': 'C.UTF-8',
            'LC_ALL': 'C.UTF-8',
            'ANSIBLE_CONFIG': str(ANSIBLE_CONFIG),
            'ANSIBLE_COLLECTIONS_PATH': str(COLLECTIONS),
            'ANSIBLE_NOCOLOR': '1',
            'ANSIBLE_FORCE_COLOR': '0',
        }
        self.audit_env = {
            'ANSIBLE_CALLBACK_PLUGINS': str(write_timed_callback(workdir)),
            'ANSIBLE_CALLBACKS_ENABLED': TIMED_NAME,
            'DIHYA_AUDIT_KEY': self.key,
            'DIHYA_AUDIT_FSYNC': fsync,
            'DIHYA_AUDIT_FLUSH_INTERVAL': str(flush_interval),
        }

    def run(self, audited: bool, expected_records: int) -> RunTimes:
        """Wall-clock and CPU (user + system, all processes of the run) times of one run, and with the callback the time
        spent in it (from the stopwatch plugin), after checking its audit log."""
        self.runs += 1
        env = dict(self.env)
        log = self.workdir / f'audit-{self.runs}.log'
        times = self.workdir / f'callback-{self.runs}.json'
        if audited:
            env.update(self.audit_env, DIHYA_AUDIT_LOG_PATH=str(log), **{TIMES_ENV: str(times)})
        command = [str(ANSIBLE_PLAYBOOK), '-i', str(self.inventory), str(self.playbook)]
        before = resource.getrusage(resource.RUSAGE_CHILDREN)
        started = time.perf_counter()
        completed = subprocess.run(command, cwd=ROOT, env=env, capture_output=True, text=True, timeout=PLAYBOOK_TIMEOUT, check=False)
        wall = time.perf_counter() - started
        after = resource.getrusage(resource.RUSAGE_CHILDREN)
        cpu = (after.ru_utime - before.ru_utime) + (after.ru_stime - before.ru_stime)
        if completed.returncode != 0:
            raise BenchmarkError(f'ansible-playbook exited with {completed.returncode}\n{tail(completed.stdout)}\n{tail(completed.stderr)}')
        inside: dict[str, float] = {}
        if audited:
            report = _audit.verify(str(log), self.key.encode())
            if not report.ok or report.records != expected_records:
                raise BenchmarkError(f'audit log {log}: ok={report.ok}, {report.records} records instead of {expected_records}, error {report.error}')
            if not times.exists():
                raise BenchmarkError(f'the stopwatch plugin wrote no times\n{tail(completed.stdout)}\n{tail(completed.stderr)}')
            inside = json.loads(times.read_text(encoding='utf-8'))
        return RunTimes(wall, cpu, inside)


def tail(text: str, lines: int = 30) -> str:
    return '\n'.join(text.splitlines()[-lines:])


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split('\n\n', maxsplit=1)[0])
    parser.add_argument('--tasks', type=int, default=300, help='tasks in the playbook (default 300)')
    parser.add_argument('--hosts', type=int, default=1, help='local hosts the play runs on (default 1)')
    parser.add_argument('--repeat', type=int, default=3, help='recorded runs of each variant (default 3)')
    parser.add_argument('--fsync', choices=['batch', 'always'], default='batch', help='fsync option of the callback (default batch)')
    parser.add_argument('--flush-interval', type=float, default=1.0,
                        help='flush_interval option of the callback in seconds, 0 for one write per task (default 1)')
    parser.add_argument('--keep', action='store_true', help='keep the generated files and audit logs, and print where they are')
    args = parser.parse_args(argv)
    if args.tasks < 1 or args.hosts < 1 or args.repeat < 1:
        parser.error('--tasks, --hosts and --repeat must be at least 1')

    workdir = Path(tempfile.mkdtemp(prefix='dihya-bench-audit-'))
    try:
        runner = Runner(workdir, write_playbook(workdir, args.tasks), write_inventory(workdir, args.hosts), args.fsync,
                        args.flush_interval)
        expected = args.tasks * args.hosts + 2
        print(f'{args.tasks} tasks x {args.hosts} host(s), {args.repeat} runs each, fsync={args.fsync}, flush_interval={args.flush_interval:g} s, '
              f'{os.cpu_count()} CPUs, Python {platform.python_version()}, load average {os.getloadavg()[0]:.2f}')
        runner.run(False, expected)
        runner.run(True, expected)
        plain: list[RunTimes] = []
        audited: list[RunTimes] = []
        for dummy in range(args.repeat):
            plain.append(runner.run(False, expected))
            audited.append(runner.run(True, expected))
    except BenchmarkError as exc:
        print(f'FAILED: {exc}', file=sys.stderr)
        return 1
    finally:
        if args.keep:
            print(f'files kept in {workdir}')
        else:
            shutil.rmtree(workdir, ignore_errors=True)

    for label, without, with_callback in (('wall-clock', [run.wall for run in plain], [run.wall for run in audited]),
                                          ('CPU time', [run.cpu for run in plain], [run.cpu for run in audited])):
        base, audit_median = statistics.median(without), statistics.median(with_callback)
        overhead = (audit_median - base) / base * 100
        best = (min(with_callback) - min(without)) / min(without) * 100
        print(f'{label}:')
        print(f'  without the callback: median {base:.2f} s  (runs: {", ".join(f"{value:.2f}" for value in without)})')
        print(f'  with the callback:    median {audit_median:.2f} s  (runs: {", ".join(f"{value:.2f}" for value in with_callback)})')
        print(f'  per record:           {(audit_median - base) / expected * 1000:+.2f} ms for {expected} records')
        verdict = f', goal <= {GOAL_PERCENT:.0f} %: {"met" if overhead <= GOAL_PERCENT else "NOT met"}' if label == 'wall-clock' else ''
        print(f'  overhead:             {overhead:+.1f} % of the medians (best runs: {best:+.1f} %){verdict}')
    inside = [run.inside for run in audited]
    spent = statistics.median(item['seconds'] for item in inside)
    spent_cpu = statistics.median(item['cpu_seconds'] for item in inside)
    base = statistics.median(run.wall for run in plain)
    print('inside the runs with the callback (its handlers and its writes, timed in ansible-playbook):')
    runs = ', '.join(f"{item['seconds']:.3f}" for item in inside)
    print(f'  time:                 median {spent:.3f} s  (runs: {runs}), '
          f'{spent / expected * 1000:.2f} ms per record, {spent / base * 100:.1f} % of the median run without the callback')
    print(f'  CPU time:             median {spent_cpu:.3f} s, {spent_cpu / expected * 1000:.2f} ms per record')
    print(f'  writes:               {", ".join(str(item["writes"]) for item in inside)} (one lock and one fsync each with fsync=batch)')
    print(f'load average at the end {os.getloadavg()[0]:.2f}')
    return 0


if __name__ == '__main__':
    sys.exit(main())
