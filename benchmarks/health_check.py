"""Benchmark: one ``dihya.ops.health_check`` task against the usual loop of ``uri`` / ``wait_for`` tasks.

Starts loopback endpoints in this process (an HTTP server with a fast ``/ok`` path and a ``/slow`` path
delayed by ``--delay-ms``, and a few TCP listeners), generates playbooks checking them, runs each one with
``ansible-playbook`` several times and prints the medians:

* the time of a single ``dihya.ops.health_check`` task running all checks;
* the time of the same checks as ``ansible.builtin.uri`` and ``ansible.builtin.wait_for`` tasks with ``loop:``;
* the limit a single task can reach: the slowest check, measured directly from Python, plus one module start-up.

Run it from anywhere with the collection's virtual environment::

    .venv/bin/python benchmarks/health_check.py [--checks 100] [--delayed 20] [--delay-ms 200]

It is not a test: it exits 0 whatever the figures are, and 1 only when a playbook fails or a check is unhealthy,
so that a failing run is never reported as a timing.
"""

from __future__ import annotations

import argparse
import contextlib
import dataclasses
import http.server
import json
import os
import platform
import socket
import statistics
import subprocess
import sys
import tempfile
import threading
import time
import typing as t
import urllib.parse
import urllib.request
from pathlib import Path

import yaml

ROOT = Path(__file__).resolve().parent.parent
VENV_BIN = ROOT / '.venv' / 'bin'
VENV_PYTHON = VENV_BIN / 'python'
ANSIBLE_PLAYBOOK = VENV_BIN / 'ansible-playbook'
ANSIBLE_CONFIG = ROOT / 'ansible.cfg'

HOST = '127.0.0.1'
CHECK_TIMEOUT = 5
HTTP_QUEUE_SIZE = 512
TCP_BACKLOG = 1024
PLAYBOOK_TIMEOUT = 600
SLOW_SAMPLES = 9
RATIO_GOAL = 25.0
LIMIT_GOAL = 1.5
MIN_DENOMINATOR = 0.05

HEALTH_CHECK = 'dihya.ops.health_check'
URI = 'ansible.builtin.uri'
WAIT_FOR = 'ansible.builtin.wait_for'
PING = 'ansible.builtin.ping'
META = 'ansible.builtin.meta'

TIMER_NAME = 'dihya_bench_timer'
TIMINGS_ENV = 'DIHYA_BENCH_TIMINGS'

# A callback plugin in the spirit of ansible.posix.profile_tasks: for every task, the time from the moment the
# play starts it to the moment its last result reaches the controller (module start-up and, for a loop, every
# item included), and a digest of its results, written as JSON when the playbook ends.
TIMER_CALLBACK = '''\
from __future__ import annotations

import json
import os
import time

from ansible.plugins.callback import CallbackBase

DOCUMENTATION = """
name: dihya_bench_timer
type: aggregate
short_description: Record task durations and result digests for the dihya.ops benchmarks
description:
  - Writes one entry per task to the JSON file named by the DIHYA_BENCH_TIMINGS environment variable.
"""


def digest(status, result):
    items = result.get('results') or []
    checks = result.get('checks') or []
    return {
        'status': status,
        'healthy': result.get('healthy'),
        'duration_seconds': result.get('duration_seconds'),
        'checks': len(checks),
        'checks_healthy': sum(1 for check in checks if check.get('healthy') is True),
        'items': len(items),
        'items_failed': sum(1 for item in items if item.get('failed')),
        'msg': str(result.get('msg') or result.get('summary') or '')[:500],
    }


class CallbackModule(CallbackBase):
    CALLBACK_VERSION = 2.0
    CALLBACK_TYPE = 'aggregate'
    CALLBACK_NAME = 'dihya_bench_timer'
    CALLBACK_NEEDS_ENABLED = True

    def __init__(self, *args, **kwargs):
        super().__init__(*args, **kwargs)
        self._tasks = []

    def v2_playbook_on_task_start(self, task, is_conditional):
        self._tasks.append({'name': task.get_name(), 'action': task.action, 'start': time.monotonic(), 'end': None, 'results': []})

    def _record(self, status, result):
        if self._tasks:
            self._tasks[-1]['end'] = time.monotonic()
            self._tasks[-1]['results'].append(digest(status, result.result))

    def v2_runner_on_ok(self, result):
        self._record('ok', result)

    def v2_runner_on_failed(self, result, ignore_errors=False):
        self._record('failed', result)

    def v2_runner_on_unreachable(self, result):
        self._record('unreachable', result)

    def v2_runner_on_skipped(self, result):
        self._record('skipped', result)

    def v2_playbook_on_stats(self, stats):
        with open(os.environ['DIHYA_BENCH_TIMINGS'], 'w', encoding='utf-8') as handle:
            json.dump(self._tasks, handle)
'''


class BenchmarkError(Exception):
    """A playbook failed or reported an unhealthy check: its time must not be reported."""


# ---------------------------------------------------------------------------
# Loopback endpoints
# ---------------------------------------------------------------------------

class EndpointHandler(http.server.BaseHTTPRequestHandler):
    """``/ok`` answers at once, ``/slow`` after the server's delay; anything else is a 404."""

    server: EndpointServer

    def do_GET(self) -> None:  # pylint: disable=invalid-name
        """Answer a health check."""
        path = urllib.parse.urlsplit(self.path).path
        if path == '/slow':
            time.sleep(self.server.delay)
        elif path != '/ok':
            self.send_error(404)
            return
        body = b'ok\n'
        self.send_response(200)
        self.send_header('Content-Type', 'text/plain')
        self.send_header('Content-Length', str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, format: str, *args: t.Any) -> None:  # pylint: disable=redefined-builtin
        """Keep the benchmark's output readable."""


class EndpointServer(http.server.ThreadingHTTPServer):
    """A threaded HTTP server on a free loopback port."""

    daemon_threads = True
    request_queue_size = HTTP_QUEUE_SIZE

    def __init__(self, delay: float) -> None:
        super().__init__((HOST, 0), EndpointHandler)
        self.delay = delay
        self._thread = threading.Thread(target=self.serve_forever, name='bench-http', daemon=True)

    @property
    def port(self) -> int:
        """The port the server listens on."""
        return int(self.server_address[1])

    def start(self) -> None:
        """Serve requests in a background thread."""
        self._thread.start()

    def stop(self) -> None:
        """Stop serving and close the listening socket."""
        self.shutdown()
        self.server_close()
        self._thread.join()


class TcpListener:
    """A listening socket on a free loopback port that accepts connections and closes them."""

    def __init__(self) -> None:
        self._sock = socket.create_server((HOST, 0), backlog=TCP_BACKLOG)
        self._sock.settimeout(0.1)
        self._stopping = threading.Event()
        self._thread = threading.Thread(target=self._accept, name='bench-tcp', daemon=True)

    @property
    def port(self) -> int:
        """The port the listener is bound to."""
        return int(self._sock.getsockname()[1])

    def start(self) -> None:
        """Accept connections in a background thread."""
        self._thread.start()

    def stop(self) -> None:
        """Stop accepting and close the listening socket."""
        self._stopping.set()
        self._thread.join()
        self._sock.close()

    def _accept(self) -> None:
        while not self._stopping.is_set():
            try:
                connection, _address = self._sock.accept()
            except TimeoutError:
                continue
            except OSError:
                return
            connection.close()


@dataclasses.dataclass(frozen=True)
class Endpoints:
    """Where the loopback endpoints listen."""

    http_port: int
    tcp_ports: tuple[int, ...]

    def url(self, path: str, index: int) -> str:
        """A URL of the HTTP server, distinct for every check."""
        return f'http://{HOST}:{self.http_port}/{path}?check={index}'


def start_endpoints(stack: contextlib.ExitStack, delay: float, listeners: int) -> Endpoints:
    """Start the HTTP server and the TCP listeners; closing ``stack`` stops them."""
    server = EndpointServer(delay)
    server.start()
    stack.callback(server.stop)
    ports = []
    for _index in range(listeners):
        listener = TcpListener()
        listener.start()
        stack.callback(listener.stop)
        ports.append(listener.port)
    return Endpoints(http_port=server.port, tcp_ports=tuple(ports))


# ---------------------------------------------------------------------------
# Checks and playbooks
# ---------------------------------------------------------------------------

@dataclasses.dataclass(frozen=True)
class Layout:
    """How many checks of each kind the benchmark runs."""

    fast: int
    delayed: int
    tcp: int

    @property
    def total(self) -> int:
        """Number of checks."""
        return self.fast + self.delayed + self.tcp

    @property
    def http(self) -> int:
        """Number of HTTP checks."""
        return self.fast + self.delayed


@dataclasses.dataclass(frozen=True)
class CheckSet:
    """The same checks, as ``dihya.ops.health_check`` checks and as ``uri`` / ``wait_for`` loop items."""

    checks: list[dict[str, t.Any]]
    urls: list[str]
    tcp_ports: list[int]


def build_check_set(layout: Layout, endpoints: Endpoints) -> CheckSet:
    """The checks: fast HTTP, delayed HTTP, then TCP spread over the listeners."""
    urls = [endpoints.url('ok', index) for index in range(layout.fast)]
    urls += [endpoints.url('slow', index) for index in range(layout.delayed)]
    ports = [endpoints.tcp_ports[index % len(endpoints.tcp_ports)] for index in range(layout.tcp)]
    checks = [http_check(f'http-{index:03d}', url) for index, url in enumerate(urls)]
    checks += [tcp_check(f'tcp-{index:03d}', port) for index, port in enumerate(ports)]
    return CheckSet(checks=checks, urls=urls, tcp_ports=ports)


def http_check(name: str, url: str) -> dict[str, t.Any]:
    """A ``health_check`` HTTP check, equivalent to a ``uri`` task."""
    return {'name': name, 'type': 'http', 'url': url, 'status_codes': [200], 'timeout': CHECK_TIMEOUT}


def tcp_check(name: str, port: int) -> dict[str, t.Any]:
    """A ``health_check`` TCP check, equivalent to a ``wait_for`` task."""
    return {'name': name, 'type': 'tcp', 'host': HOST, 'port': port, 'timeout': CHECK_TIMEOUT}


def play(name: str, tasks: list[dict[str, t.Any]]) -> list[dict[str, t.Any]]:
    """A playbook of one play on localhost."""
    return [{
        'name': name,
        'hosts': 'localhost',
        'gather_facts': False,
        'vars': {'ansible_python_interpreter': str(VENV_PYTHON)},
        'tasks': tasks,
    }]


def health_check_playbook(checks: list[dict[str, t.Any]]) -> list[dict[str, t.Any]]:
    """One ``dihya.ops.health_check`` task running every check."""
    task = {'name': f'Run {len(checks)} checks in one task', HEALTH_CHECK: {'checks': checks, 'timeout': CHECK_TIMEOUT}}
    return play('Health checks in one task', [task])


def loop_playbook(check_set: CheckSet) -> list[dict[str, t.Any]]:
    """The usual way: a ``uri`` task looping over the URLs and a ``wait_for`` task looping over the ports."""
    tasks: list[dict[str, t.Any]] = [
        {'name': 'Check the HTTP endpoints', URI: {'url': '{{ item }}', 'status_code': 200, 'timeout': CHECK_TIMEOUT}, 'loop': check_set.urls},
        {'name': 'Check the TCP ports', WAIT_FOR: {'host': HOST, 'port': '{{ item }}', 'timeout': CHECK_TIMEOUT}, 'loop': check_set.tcp_ports},
    ]
    return play('Health checks as loops of uri and wait_for', [task for task in tasks if task['loop']])


def noop_playbook() -> list[dict[str, t.Any]]:
    """The baseline of the wall-clock times: a task that runs no module."""
    return play('No-op', [{'name': 'Do nothing', META: 'noop'}])


def ping_playbook() -> list[dict[str, t.Any]]:
    """The smallest module there is: one ``ping`` task."""
    return play('Ping', [{'name': 'Ping', PING: {}}])


def write_playbook(directory: Path, name: str, playbook: list[dict[str, t.Any]]) -> Path:
    """Write ``playbook`` as ``<name>.yml`` in ``directory``."""
    path = directory / f'{name}.yml'
    path.write_text(yaml.safe_dump(playbook, sort_keys=False, width=1000), encoding='utf-8')
    return path


# ---------------------------------------------------------------------------
# Running playbooks
# ---------------------------------------------------------------------------

@dataclasses.dataclass(frozen=True)
class TaskRecord:
    """What the timer callback recorded for a task."""

    action: str
    duration: float
    results: list[dict[str, t.Any]]


@dataclasses.dataclass(frozen=True)
class PlaybookRun:
    """One ``ansible-playbook`` run: its wall-clock time and its tasks."""

    wall: float
    tasks: list[TaskRecord]

    def task_time(self, *actions: str) -> float:
        """Total time of the tasks running one of ``actions``."""
        return sum(task.duration for task in self.tasks if task.action in actions)

    def results(self, action: str) -> list[dict[str, t.Any]]:
        """Result digests of the tasks running ``action``."""
        return [result for task in self.tasks if task.action == action for result in task.results]


@dataclasses.dataclass(frozen=True)
class Scenario:
    """A playbook to time, the actions its task time covers and how to tell that it worked."""

    label: str
    playbook: Path
    actions: tuple[str, ...]
    verify: t.Callable[[PlaybookRun], None]


class Runner:
    """Runs playbooks from the checkout with its ``ansible.cfg``, a clean environment and the timer callback."""

    def __init__(self, workdir: Path) -> None:
        self._workdir = workdir
        self._runs = 0
        plugins = workdir / 'callback_plugins'
        plugins.mkdir()
        (plugins / f'{TIMER_NAME}.py').write_text(TIMER_CALLBACK, encoding='utf-8')
        home = workdir / 'home'
        home.mkdir()
        self._env = {
            'PATH': os.pathsep.join([str(VENV_BIN), '/usr/local/bin', '/usr/bin', '/bin']),
            'HOME': str(home),
            'LANG': 'C.UTF-8',
            'LC_ALL': 'C.UTF-8',
            'ANSIBLE_CONFIG': str(ANSIBLE_CONFIG),
            'ANSIBLE_CALLBACK_PLUGINS': str(plugins),
            'ANSIBLE_CALLBACKS_ENABLED': TIMER_NAME,
            'ANSIBLE_NOCOLOR': '1',
            'ANSIBLE_FORCE_COLOR': '0',
        }

    def run(self, scenario: Scenario) -> PlaybookRun:
        """Run the scenario's playbook once, check that it worked and return its times."""
        self._runs += 1
        timings = self._workdir / f'timings-{self._runs}.json'
        command = [str(ANSIBLE_PLAYBOOK), '-i', 'localhost,', '-c', 'local', str(scenario.playbook)]
        started = time.perf_counter()
        completed = subprocess.run(command, cwd=ROOT, env={**self._env, TIMINGS_ENV: str(timings)},
                                   capture_output=True, text=True, timeout=PLAYBOOK_TIMEOUT, check=False)
        wall = time.perf_counter() - started
        if completed.returncode != 0 or not timings.exists():
            raise BenchmarkError(f'{scenario.label}: ansible-playbook exited with {completed.returncode}\n'
                                 f'{tail(completed.stdout)}\n{tail(completed.stderr)}')
        run = PlaybookRun(wall=wall, tasks=load_tasks(timings))
        scenario.verify(run)
        return run


def load_tasks(path: Path) -> list[TaskRecord]:
    """Read what the timer callback wrote."""
    records = []
    for entry in json.loads(path.read_text(encoding='utf-8')):
        if entry['end'] is not None:
            records.append(TaskRecord(action=str(entry['action']), duration=entry['end'] - entry['start'], results=entry['results']))
    return records


def tail(text: str, lines: int = 40) -> str:
    """The last ``lines`` lines of ``text``."""
    return '\n'.join(text.splitlines()[-lines:])


def expect_healthy(checks: int) -> t.Callable[[PlaybookRun], None]:
    """Verifier: one ``health_check`` result, healthy, with ``checks`` healthy checks."""
    def verify(run: PlaybookRun) -> None:
        results = run.results(HEALTH_CHECK)
        if len(results) != 1:
            raise BenchmarkError(f'expected one {HEALTH_CHECK} result, got {len(results)}')
        result = results[0]
        if result['status'] != 'ok' or result['healthy'] is not True or result['checks'] != checks or result['checks_healthy'] != checks:
            raise BenchmarkError(f'{HEALTH_CHECK} did not report {checks} healthy checks: {result}')
    return verify


def expect_items(expected: dict[str, int]) -> t.Callable[[PlaybookRun], None]:
    """Verifier: every looped task ran its items and none of them failed."""
    def verify(run: PlaybookRun) -> None:
        for action, items in expected.items():
            if not items:
                continue
            results = run.results(action)
            if len(results) != 1 or results[0]['status'] != 'ok' or results[0]['items'] != items or results[0]['items_failed']:
                raise BenchmarkError(f'{action} loop did not pass {items} items: {results}')
    return verify


def expect_success(run: PlaybookRun) -> None:  # pylint: disable=unused-argument
    """Verifier: ``ansible-playbook`` exiting with 0 is all there is to check."""


def expect_ok(action: str) -> t.Callable[[PlaybookRun], None]:
    """Verifier: the task running ``action`` succeeded."""
    def verify(run: PlaybookRun) -> None:
        results = run.results(action)
        if len(results) != 1 or results[0]['status'] != 'ok':
            raise BenchmarkError(f'{action} did not succeed: {results}')
    return verify


def slow_check_time(endpoints: Endpoints, samples: int) -> list[float]:
    """Times of direct requests to ``/slow`` from Python (urllib, no proxy): the slowest check on its own."""
    opener = urllib.request.build_opener(urllib.request.ProxyHandler({}))
    times = []
    for index in range(samples + 1):
        started = time.perf_counter()
        with opener.open(endpoints.url('slow', index), timeout=CHECK_TIMEOUT) as response:
            response.read()
            if response.status != 200:
                raise BenchmarkError(f'/slow answered {response.status}')
        times.append(time.perf_counter() - started)
    return times[1:]  # the first request warms up the opener and the server


# ---------------------------------------------------------------------------
# Report
# ---------------------------------------------------------------------------

@dataclasses.dataclass
class Series:
    """Repeated measurements of one scenario."""

    scenario: Scenario
    task: list[float] = dataclasses.field(default_factory=list)
    wall: list[float] = dataclasses.field(default_factory=list)
    inside: list[float] = dataclasses.field(default_factory=list)

    def add(self, run: PlaybookRun) -> None:
        """Record a run."""
        self.task.append(run.task_time(*self.scenario.actions))
        self.wall.append(run.wall)
        self.inside.extend(float(result['duration_seconds']) for result in run.results(HEALTH_CHECK) if result['duration_seconds'] is not None)

    @property
    def task_median(self) -> float:
        """Median task time."""
        return statistics.median(self.task)

    @property
    def task_best(self) -> float:
        """Shortest task time: the least disturbed by other load on the machine."""
        return min(self.task)

    @property
    def wall_median(self) -> float:
        """Median wall-clock time of the playbook."""
        return statistics.median(self.wall)


def seconds(value: float) -> str:
    """A duration for the table."""
    return f'{value:.3f} s' if value < 10 else f'{value:.2f} s'


def verdict(met: bool) -> str:
    """Whether a goal is met."""
    return 'met' if met else 'NOT met'


@dataclasses.dataclass(frozen=True)
class Measurements:
    """Everything the report needs."""

    layout: Layout
    delay: float
    load: tuple[float, float]
    slow: list[float]
    noop: Series
    ping: Series
    startup: Series
    single: Series
    loops: Series

    def all(self) -> list[Series]:
        """The series in the order of the table."""
        return [self.noop, self.ping, self.startup, self.single, self.loops]

    @property
    def slowest(self) -> float:
        """Median time of the slowest check on its own."""
        return statistics.median(self.slow)

    def beyond_noop(self, series: Series) -> float:
        """Median wall-clock time of a playbook minus that of the no-op playbook."""
        return series.wall_median - self.noop.wall_median


def print_table(measurements: Measurements) -> None:
    """The measured playbooks: task time, playbook wall-clock time and wall-clock time minus the no-op playbook's."""
    print(f"{'':52} {'task time':>10} {'task time':>10} {'playbook':>10} {'playbook':>10}   task time of each run")
    print(f"{'':52} {'(median)':>10} {'(best)':>10} {'(median)':>10} {'- no-op':>10}")
    for item in measurements.all():
        if item.scenario.actions:
            timed = f'{seconds(item.task_median):>10} {seconds(item.task_best):>10}'
            extra = seconds(measurements.beyond_noop(item))
            runs = ' '.join(f'{value:.3f}' for value in item.task)
        else:
            timed, extra, runs = f"{'-':>10} {'-':>10}", '-', ''
        print(f'{item.scenario.label:52} {timed} {seconds(item.wall_median):>10} {extra:>10}   {runs}'.rstrip())


def ratio(numerator: float, denominator: float) -> str:
    """A ratio for the report, ``n/a`` when the denominator is too small to divide by."""
    return f'{numerator / denominator:.1f}x' if denominator >= MIN_DENOMINATOR else 'n/a'


def print_report(measurements: Measurements) -> None:
    """Print the results."""
    layout, startup, single, loops = measurements.layout, measurements.startup, measurements.single, measurements.loops
    speedup = loops.task_median / single.task_median
    limit = measurements.slowest + startup.task_median
    relative = single.task_median / limit
    print()
    print(f'{HEALTH_CHECK} benchmark: {layout.total} checks ({layout.fast} HTTP fast, {layout.delayed} HTTP delayed '
          f'{measurements.delay * 1000:g} ms, {layout.tcp} TCP) on {HOST}; medians of {len(single.task)} runs')
    print(f'Python {platform.python_version()}, {os.cpu_count()} CPUs, {platform.platform()}, '
          f'load average (1 min) {measurements.load[0]:.2f} at the start, {measurements.load[1]:.2f} at the end')
    print()
    print_table(measurements)
    print()
    print(f"{'loops / single task (median task times)':52} {speedup:>9.1f}x   goal >= {RATIO_GOAL:g}x: {verdict(speedup >= RATIO_GOAL)}")
    print(f"{'loops / single task (best task times)':52} {ratio(loops.task_best, single.task_best):>10}")
    print(f"{'loops / single task (playbook - no-op)':52} "
          f"{ratio(measurements.beyond_noop(loops), measurements.beyond_noop(single)):>10}")
    if single.inside:
        print(f"{'checks inside the single task (duration_seconds)':52} {seconds(statistics.median(single.inside)):>10}   "
              'as reported by the module; the rest of its task time is start-up')
    print(f"{'slowest check alone (GET /slow from Python)':52} {seconds(measurements.slowest):>10}   "
          f"median of {len(measurements.slow)}, {min(measurements.slow):.3f}-{max(measurements.slow):.3f} s")
    print(f"{'module start-up (median task time with 1 check)':52} {seconds(startup.task_median):>10}")
    print(f"{'limit = slowest check + module start-up':52} {seconds(limit):>10}")
    print(f"{'single task / limit (median task times)':52} {relative:>9.2f}x   goal <= {LIMIT_GOAL:g}x: {verdict(relative <= LIMIT_GOAL)}")
    print(f"{'single task / limit (best task times)':52} {single.task_best / (measurements.slowest + startup.task_best):>9.2f}x")


def print_method(layout: Layout) -> None:
    """How the figures are measured."""
    print()
    print('How it is measured:')
    print('- task time: from the moment the play starts the task to the moment its last result reaches the controller,')
    print('  recorded by a callback plugin like ansible.posix.profile_tasks. It includes building, copying and starting the')
    print('  module, once for the single task and once per item for the loops (both loop tasks are summed).')
    print('- best: the shortest of the runs, the one least disturbed by other work on the machine.')
    print('- playbook: wall-clock time of the whole ansible-playbook process.')
    print('- playbook - no-op: wall-clock time minus that of a playbook whose only task is ansible.builtin.meta: noop,')
    print('  which runs no module: a cross-check of the task time that does not rely on the callback.')
    print('- the limit is what a single task cannot beat: one module start-up plus the slowest check on its own.')
    print(f'Every {HEALTH_CHECK} run reported {layout.total}/{layout.total} checks healthy and every uri/wait_for item passed.')


# ---------------------------------------------------------------------------
# Main
# ---------------------------------------------------------------------------

def parse_args(argv: t.Sequence[str] | None = None) -> argparse.Namespace:
    """Command line options."""
    parser = argparse.ArgumentParser(description=__doc__.split('\n\n', maxsplit=1)[0])
    parser.add_argument('--checks', type=int, default=100, help='number of checks (default: %(default)s)')
    parser.add_argument('--delayed', type=int, default=20, help='HTTP checks of the delayed path (default: %(default)s)')
    parser.add_argument('--tcp', type=int, default=20, help='TCP checks (default: %(default)s); the rest are fast HTTP checks')
    parser.add_argument('--delay-ms', type=float, default=200.0, help='delay of the delayed path, in milliseconds (default: %(default)s)')
    parser.add_argument('--listeners', type=int, default=4, help='TCP listeners the TCP checks are spread over (default: %(default)s)')
    parser.add_argument('--repeat', type=int, default=3, help='runs of each playbook; the median is reported (default: %(default)s)')
    parser.add_argument('--keep', action='store_true', help='keep the generated playbooks and print where they are')
    args = parser.parse_args(argv)
    if args.checks < 1 or args.delayed < 0 or args.tcp < 0 or args.delayed + args.tcp > args.checks:
        parser.error('need --checks >= 1 and 0 <= --delayed + --tcp <= --checks')
    if args.delay_ms < 0 or args.listeners < 1 or args.repeat < 1:
        parser.error('need --delay-ms >= 0, --listeners >= 1 and --repeat >= 1')
    return args


@dataclasses.dataclass(frozen=True)
class Scenarios:
    """The playbooks to time."""

    noop: Scenario
    ping: Scenario
    startup: Scenario
    single: Scenario
    loops: Scenario

    def all(self) -> list[Scenario]:
        """Every scenario, the long one last."""
        return [self.noop, self.ping, self.startup, self.single, self.loops]


def build_scenarios(directory: Path, layout: Layout, check_set: CheckSet) -> Scenarios:
    """Write the playbooks: the no-op baseline, the ping task, the start-up task, the single task and the loops."""
    startup = [tcp_check('start-up', check_set.tcp_ports[0])] if check_set.tcp_ports else [check_set.checks[0]]
    return Scenarios(
        noop=Scenario(f'no-op playbook (1 {META}: noop task)', write_playbook(directory, 'noop', noop_playbook()), (), expect_success),
        ping=Scenario(f'{PING} task', write_playbook(directory, 'ping', ping_playbook()), (PING,), expect_ok(PING)),
        startup=Scenario(f'module start-up ({HEALTH_CHECK}, 1 check)', write_playbook(directory, 'startup', health_check_playbook(startup)),
                         (HEALTH_CHECK,), expect_healthy(1)),
        single=Scenario(f'single {HEALTH_CHECK} task, {layout.total} checks',
                        write_playbook(directory, 'single', health_check_playbook(check_set.checks)), (HEALTH_CHECK,), expect_healthy(layout.total)),
        loops=Scenario(f'uri + wait_for loops, {layout.http} + {layout.tcp} items', write_playbook(directory, 'loops', loop_playbook(check_set)),
                       (URI, WAIT_FOR), expect_items({URI: layout.http, WAIT_FOR: layout.tcp})),
    )


def measure(runner: Runner, scenarios: Scenarios, repeat: int) -> dict[str, Series]:
    """Run every scenario ``repeat`` times, interleaved, after one unrecorded warm-up run of the single task."""
    runner.run(scenarios.single)
    series = {scenario.playbook.stem: Series(scenario) for scenario in scenarios.all()}
    for index in range(repeat):
        for scenario in scenarios.all():
            series[scenario.playbook.stem].add(runner.run(scenario))
        summary = ', '.join(f'{name} {item.task[-1]:.3f} s' for name, item in series.items() if item.scenario.actions)
        print(f'run {index + 1}/{repeat}: task times {summary}; no-op playbook {series["noop"].wall[-1]:.3f} s', flush=True)
    return series


def check_environment() -> None:
    """The collection's virtual environment must exist."""
    for path in (VENV_PYTHON, ANSIBLE_PLAYBOOK, ANSIBLE_CONFIG):
        if not path.exists():
            raise BenchmarkError(f'{path} is missing; run scripts/bootstrap.sh first')


def work_directory(stack: contextlib.ExitStack, keep: bool) -> Path:
    """A temporary directory for the playbooks, removed at the end unless ``keep``."""
    if keep:
        return Path(tempfile.mkdtemp(prefix='dihya-bench-health-'))
    return Path(stack.enter_context(tempfile.TemporaryDirectory(prefix='dihya-bench-health-')))


def benchmark(args: argparse.Namespace) -> Measurements:
    """Start the endpoints, time the playbooks and stop the endpoints again."""
    layout = Layout(fast=args.checks - args.delayed - args.tcp, delayed=args.delayed, tcp=args.tcp)
    delay = args.delay_ms / 1000
    load_before = os.getloadavg()[0]
    with contextlib.ExitStack() as stack:
        endpoints = start_endpoints(stack, delay, args.listeners)
        workdir = work_directory(stack, args.keep)
        scenarios = build_scenarios(workdir, layout, build_check_set(layout, endpoints))
        print(f'HTTP server on {HOST}:{endpoints.http_port}, TCP listeners on ports {", ".join(map(str, endpoints.tcp_ports))}', flush=True)
        print(f'playbooks in {workdir}' + ('' if args.keep else ' (removed at the end)'), flush=True)
        slow = slow_check_time(endpoints, SLOW_SAMPLES)
        series = measure(Runner(workdir), scenarios, args.repeat)
    return Measurements(layout=layout, delay=delay, load=(load_before, os.getloadavg()[0]), slow=slow,
                        noop=series['noop'], ping=series['ping'], startup=series['startup'], single=series['single'], loops=series['loops'])


def main(argv: t.Sequence[str] | None = None) -> int:
    """Run the benchmark and print the report; 1 if a playbook failed or a check was unhealthy."""
    args = parse_args(argv)
    try:
        check_environment()
        measurements = benchmark(args)
    except (BenchmarkError, subprocess.TimeoutExpired, OSError) as exc:
        print(f'benchmark failed: {exc}', file=sys.stderr)
        return 1
    print_report(measurements)
    print_method(measurements.layout)
    return 0


if __name__ == '__main__':
    sys.exit(main())
