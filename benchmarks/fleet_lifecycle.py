"""Benchmark: the ``dihya.ops.check_health`` playbook over a fleet of N hosts against ``ansible -m ansible.builtin.ping``.

Deploys one instance of the demo backend (tests/demo_backend/deploy.yml, host ``dihya-demo-1`` of
inventories/local) into a sandbox of its own, then generates an inventory of N hosts
(``ansible_connection: local``, the virtual environment's Python) that all check that one instance, each
with its own audit log and metrics folder, and runs, with the same forks:

* ``ansible -m ansible.builtin.ping`` over the N hosts: the cost of one module round trip per host;
* the ``dihya.ops.check_health`` playbook over the same N hosts: the operation's whole lifecycle (run
  context, authorisation, the start and end audit events on every host, the health checks).

Each side runs ``--runs`` times (default 2), interleaved, and the best wall time of each is kept (the
machine may be shared); the ratio check_health / ping is printed for every N, with the load average, and
so is the ratio of their CPU time (user and system, the controller's and the modules'), which a busy
machine disturbs less than the wall time.

    .venv/bin/python benchmarks/fleet_lifecycle.py [--hosts 50 200] [--forks 10] [--runs 2]

It is not a test: it exits 0 whatever the figures are, and 1 only when a run fails (a host unhealthy or
unreachable, an audit log without its two events), so that a broken run is never reported as a timing.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import sys
import tempfile
from pathlib import Path

import yaml

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT / '.cache' / 'collections'))

from ansible_collections.dihya.ops.benchmarks._demo_fleet import BIN, environment, link_collection, run  # noqa: E402  pylint: disable=wrong-import-position

RUN_TIMEOUT = 1800
RATIO_GOAL = 1.5
DEMO_HOST = 'dihya-demo-1'


def write_inventory(directory: Path, count: int) -> Path:
    """N hosts checking the demo instance ``dihya-demo-1``, each with its own audit log and metrics folder."""
    directory.mkdir(parents=True, exist_ok=True)
    group_vars = directory / 'group_vars'
    if not group_vars.exists():
        group_vars.symlink_to(ROOT / 'inventories' / 'local' / 'group_vars')
    fleet_root = "{{ dihya_demo_sandbox }}/fleet/{{ inventory_hostname }}"
    # Host variables: they take precedence over the group_vars of inventories/local (the backend model of the demo).
    host_vars = {
        'ansible_connection': 'local', 'ansible_python_interpreter': sys.executable, 'dihya_environment': 'dev',
        'dihya_backend_instance': 1,
        'dihya_backend_root': '{{ dihya_demo_sandbox }}/' + DEMO_HOST,
        'dihya_backend_audit_log': fleet_root + '/audit/audit.log',
        'dihya_backend_metrics_dir': fleet_root + '/metrics',
    }
    inventory = {'dihya_backend': {'hosts': {f'fleet-{index:03d}': dict(host_vars) for index in range(1, count + 1)}}}
    path = directory / 'hosts.yml'
    path.write_text(yaml.safe_dump(inventory, default_flow_style=False), encoding='utf-8')
    return path


def audit_events(sandbox: Path, count: int) -> int:
    """How many hosts have a started and a finished check_health event in their audit log."""
    complete = 0
    for index in range(1, count + 1):
        log = sandbox / 'fleet' / f'fleet-{index:03d}' / 'audit' / 'audit.log'
        try:
            actions = [json.loads(line)['event']['action'] for line in log.read_text(encoding='utf-8').splitlines() if line]
        except (OSError, ValueError, KeyError):
            continue
        if 'check_health.started' in actions and 'check_health.finished' in actions:
            complete += 1
    return complete


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument('--hosts', type=int, nargs='+', default=[50, 200])
    parser.add_argument('--forks', type=int, default=10)
    parser.add_argument('--runs', type=int, default=2)
    parser.add_argument('--base-port', type=int, default=int(os.environ.get('DIHYA_DEMO_BASE_PORT', '23500')))
    args = parser.parse_args(argv)

    with tempfile.TemporaryDirectory(prefix='dihya-fleet-bench-') as scratch:
        work = Path(scratch)
        sandbox = work / 'sandbox'
        env = environment(sandbox, args.base_port, link_collection(work), ANSIBLE_DEPRECATION_WARNINGS='True')
        print(f'{platform.node()}: {os.cpu_count()} CPUs, Python {platform.python_version()}, forks {args.forks}, '
              f'load average {os.getloadavg()[0]:.2f}', flush=True)
        local = str(ROOT / 'inventories' / 'local' / 'hosts.yml')
        seconds, deployed = run([str(BIN / 'ansible-playbook'), '-i', local, '-l', DEMO_HOST, 'tests/demo_backend/deploy.yml'], env, RUN_TIMEOUT)
        if deployed.returncode != 0:
            print(deployed.stdout[-4000:] + deployed.stderr[-4000:], file=sys.stderr)
            return 1
        print(f'demo instance deployed in {seconds:.1f} s', flush=True)
        failed = False
        try:
            for count in args.hosts:
                inventory = write_inventory(work / f'inventory-{count}', count)
                sides = {
                    'ping': [str(BIN / 'ansible'), 'dihya_backend', '-i', str(inventory), '-f', str(args.forks),
                             '-m', 'ansible.builtin.ping'],
                    'check_health': [str(BIN / 'ansible-playbook'), '-i', str(inventory), '-f', str(args.forks),
                                     'dihya.ops.check_health'],
                }
                walls: dict[str, list[float]] = {name: [] for name in sides}
                cpus: dict[str, list[float]] = {name: [] for name in sides}
                for dummy in range(args.runs):
                    for name, command in sides.items():
                        wall, proc = run(command, env, RUN_TIMEOUT, cpus[name])
                        if proc.returncode != 0:
                            print(f'{name} over {count} hosts failed:\n{proc.stdout[-4000:]}{proc.stderr[-4000:]}', file=sys.stderr)
                            return 1
                        walls[name].append(wall)
                complete = audit_events(sandbox, count)
                if complete != count:
                    print(f'only {complete} of {count} hosts have their start and end events', file=sys.stderr)
                    failed = True
                ping, check = min(walls['ping']), min(walls['check_health'])
                ratio = check / ping
                runs = ', '.join(f'{name} ' + ' / '.join(f'{wall:.1f}' for wall in values) for name, values in walls.items())
                cpu_ratio = min(cpus['check_health']) / min(cpus['ping'])
                print(f'N={count}: ping {ping:.1f} s, check_health {check:.1f} s, ratio {ratio:.2f} '
                      f'({"within" if ratio <= RATIO_GOAL else "above"} {RATIO_GOAL}x; runs: {runs}; '
                      f'load average {os.getloadavg()[0]:.2f}); CPU time ping {min(cpus["ping"]):.1f} s, '
                      f'check_health {min(cpus["check_health"]):.1f} s, ratio {cpu_ratio:.2f}', flush=True)
        finally:
            run([str(BIN / 'ansible-playbook'), '-i', local, '-l', DEMO_HOST, 'tests/demo_backend/teardown.yml',
                 '-e', 'demo_backend_purge=true'], env, RUN_TIMEOUT)
    return 1 if failed else 0


if __name__ == '__main__':
    sys.exit(main())
