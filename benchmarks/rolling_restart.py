"""Benchmark: a rolling restart of the 3-instance demo fleet through HAProxy, under a steady request loop, per method.

Deploys the demo fleet (tests/demo_backend/deploy.yml: three instances behind HAProxy on loopback) into a sandbox
of its own, then, for each method of ``dihya.ops.restart_services`` (``restart``, ``reload``, ``upgrade``), runs the
``restart_services`` playbook while one GET ``/healthz`` every 20 ms goes through HAProxy, and reports:

* the failed requests (goal 0);
* the p99 latency during the rollout against the p99 of a steady-state window before it (goal at most 2x);
* the rollout's wall time against the ``restart`` method (the stop/start one; goal at most 1.5x).

    .venv/bin/python benchmarks/rolling_restart.py [--runs 1] [--base-port 23200] [--steady 10]

It is not a test: it exits 0 whatever the figures are, and 1 only when a rollout fails, so that a broken run is
never reported as a timing.
"""

from __future__ import annotations

import argparse
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT / '.cache' / 'collections'))
from ansible_collections.dihya.ops.benchmarks._demo_fleet import BIN, environment, link_collection, run  # noqa: E402  pylint: disable=wrong-import-position
from ansible_collections.dihya.ops.tests.support.request_loop import RequestLoop, percentile  # noqa: E402  pylint: disable=wrong-import-position

RUN_TIMEOUT = 900
METHODS = ('restart', 'reload', 'upgrade')


def playbook(env: dict[str, str], *args: str) -> tuple[float, subprocess.CompletedProcess[str]]:
    return run([str(BIN / 'ansible-playbook'), *args], env, RUN_TIMEOUT)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument('--runs', type=int, default=1, help='rollouts per method (best wall time kept)')
    parser.add_argument('--base-port', type=int, default=23200, help='HAProxy port; instances on +1..+3')
    parser.add_argument('--steady', type=float, default=10.0, help='seconds of steady-state load before each rollout')
    args = parser.parse_args()
    with tempfile.TemporaryDirectory(prefix='dihya-bench-rolling-') as tmp:
        work = Path(tmp)
        sandbox = work / 'sandbox'
        env = environment(sandbox, args.base_port, link_collection(work))
        url = f'http://127.0.0.1:{args.base_port}/healthz'
        status = 0
        try:
            took, proc = playbook(env, 'tests/demo_backend/deploy.yml')
            if proc.returncode != 0:
                print(proc.stdout[-4000:] + proc.stderr[-2000:])
                return 1
            print(f'deployed 3 instances behind HAProxy in {took:.0f} s; load {os.getloadavg()[0]:.2f}')
            figures: dict[str, dict[str, float]] = {}
            for method in METHODS:
                for dummy in range(args.runs):
                    with RequestLoop(url, interval=0.02, max_seconds=RUN_TIMEOUT) as loop:
                        time.sleep(args.steady)
                        rollout_start = time.monotonic()
                        took, proc = playbook(env, 'playbooks/restart_services.yml', '-e', f'restart_services_method={method}')
                        rollout_end = time.monotonic()
                    if proc.returncode != 0:
                        print(f'{method}: the rollout failed\n' + proc.stdout[-4000:] + proc.stderr[-2000:])
                        status = 1
                        continue
                    samples = loop.tally.samples
                    steady = [elapsed for started, elapsed, ok in samples if started < rollout_start]
                    during = [elapsed for started, elapsed, ok in samples if rollout_start <= started <= rollout_end]
                    best = figures.get(method)
                    if best is None or took < best['wall']:
                        figures[method] = {
                            'wall': took, 'sent': loop.tally.sent, 'failed': loop.tally.failed,
                            'p99_steady': percentile(steady, 0.99) * 1000, 'p99_during': percentile(during, 0.99) * 1000,
                        }
            base = figures.get('restart', {}).get('wall')
            print(f"{'method':8} {'requests':>8} {'failed':>6} {'p99 steady':>11} {'p99 rollout':>12} {'ratio':>6} {'wall':>7} {'vs restart':>10}")
            for method, row in figures.items():
                ratio = row['p99_during'] / row['p99_steady'] if row['p99_steady'] else 0.0
                wall_ratio = row['wall'] / base if base else 0.0
                print(f"{method:8} {row['sent']:8d} {row['failed']:6d} {row['p99_steady']:9.1f}ms {row['p99_during']:10.1f}ms "
                      f"{ratio:5.2f}x {row['wall']:6.1f}s {wall_ratio:9.2f}x")
            print('goals: 0 failed, p99 during the rollout <= 2x steady state, wall time <= 1.5x the restart method; '
                  f'load {os.getloadavg()[0]:.2f}')
        finally:
            playbook(env, 'tests/demo_backend/teardown.yml', '-e', 'demo_backend_purge=true')
        return status


if __name__ == '__main__':
    sys.exit(main())
