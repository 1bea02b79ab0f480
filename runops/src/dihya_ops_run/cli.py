# Copyright (c) Dihya ops maintainers
# GNU General Public License v3.0+ (see LICENSES/GPL-3.0-or-later.txt or https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later

"""The ``dihya-ops`` command line: ``dihya-ops run OPERATION ...`` and ``dihya-ops list`` (docs/run-ops.md)."""

from __future__ import annotations

import json
import pathlib
import signal
import sys
import threading
import typing as t

import click
import yaml
from rich.console import Console
from rich.live import Live
from rich.table import Table
from rich.text import Text

from . import _operations as ops
from ._results import EXIT_CODES, EventLog, RunResult, now
from ._run import DEFAULT_ROTATE_ARTIFACTS, run_ops
from .junit import write_junit

EPILOG = ('Exit codes: ' + ', '.join(f'{code} {status}' for status, code in EXIT_CODES.items())
          + '. See docs/run-ops.md.')


def _data_pair(text: str) -> tuple[str, t.Any]:
    key, sep, value = text.partition('=')
    if not sep or not ops.VARIABLE.fullmatch(key):
        raise click.BadParameter(f'{text!r}: expected KEY=VALUE with a lowercase identifier as KEY', param_hint='--data')
    # A value is JSON when it parses as JSON (numbers, booleans, lists, objects), else the string itself.
    try:
        parsed: t.Any = json.loads(value)
    except ValueError:
        parsed = value
    return key, parsed


def _load_data_file(path: str) -> dict[str, t.Any]:
    try:
        text = pathlib.Path(path).read_text(encoding='utf-8')
        data = yaml.safe_load(text) if not path.endswith('.json') else json.loads(text)
    except (OSError, UnicodeDecodeError, ValueError, yaml.YAMLError) as exc:
        raise click.BadParameter(f'cannot read {path!r}: {type(exc).__name__}', param_hint='--data-file') from None
    if not isinstance(data, dict):
        raise click.BadParameter(f'{path!r} must hold a dictionary', param_hint='--data-file')
    return data


class Progress:
    """The live display of a run: hosts done out of the hosts seen for the current task, the task, elapsed time."""

    def __init__(self, console: Console, operation: str) -> None:
        self.console = console
        self.operation = operation
        self.started = now()
        self.live: Live | None = None
        self.lock = threading.Lock()
        self.line = Text(f'{operation}: starting')

    def __call__(self, events: EventLog) -> None:
        elapsed = (now() - self.started).total_seconds()
        with events.lock:
            done, seen, task, failed = len(events.task_done), len(events.hosts), events.task, len(events.failures)
        text = Text.assemble((f'{self.operation} ', 'bold'), f'[{elapsed:5.1f}s] ', f'hosts {done}/{seen} ',
                             (f'failed {failed} ' if failed else '', 'red'), ('task: ', 'dim'), task[:80])
        with self.lock:
            if self.live is not None:
                self.live.update(text)


def summary(console: Console, result: RunResult) -> None:
    style = {'successful': 'green', 'failed': 'red', 'denied': 'red', 'bad_input': 'yellow'}.get(result.status, 'yellow')
    console.print(Text.assemble((f'{result.operation}', 'bold'), ' ', (result.status, f'bold {style}'),
                                f'{" (check mode)" if result.check else ""} in {result.duration:.1f}s, trace id {result.trace_id}'))
    if result.hosts:
        table = Table('host', 'ok', 'changed', 'failed', 'unreachable', 'skipped', 'failing task: message')
        for host, stats in sorted(result.hosts.items()):
            failure = result.failure(host)
            table.add_row(host, str(stats['ok']), str(stats['changed']), str(stats['failures']), str(stats['dark']),
                          str(stats['skipped']), f'{failure.task}: {failure.message}' if failure else '')
        console.print(table)
    if result.message and result.status != 'successful':
        console.print(Text(result.message))
    for kind, paths in sorted(result.paths.items()):
        console.print(Text(f'{kind}: ' + ', '.join(paths)))
    if result.artifact_dir:
        console.print(Text(f'runner artifacts: {result.artifact_dir}'))


@click.group(epilog=EPILOG)
@click.version_option(package_name='dihya-ops-run')
def main() -> None:
    """Run the operations of the dihya.ops collection, from a terminal or a CI pipeline, through ansible-runner."""


@main.command('list')
@click.option('--json', 'as_json', is_flag=True, help='One JSON document instead of a table.')
def list_operations(as_json: bool) -> None:
    """List the operations, the playbook each runs, and what it needs."""
    known = ops.operations()
    if as_json:
        click.echo(json.dumps({name: {'playbook': f'{ops.COLLECTION}.{o.playbook}' if o.playbook else None, 'needs': o.needs}
                               for name, o in sorted(known.items())}, indent=2))
        return
    table = Table('operation', 'playbook', 'needs')
    for name, op in sorted(known.items()):
        table.add_row(name, f'{ops.COLLECTION}.{op.playbook}' if op.playbook else 'not available yet', op.needs)
    Console().print(table)


@main.command('run', epilog=EPILOG)
@click.argument('operation')
@click.option('-i', '--inventory', required=True, type=click.Path(), help='Inventory file or folder.')
@click.option('--tenant', help='The tenant the run is for (context.tenant).')
@click.option('--user', help='Who the run is for, recorded in the audit trail (context.user; DIHYA_OPS_USER of the run).')
@click.option('--route', help='The route of the request (context.route, audit).')
@click.option('--action', help='The action (context.action: the audit event, or the RGPD request: export, erase, ...).')
@click.option('--subject', help='The data subject id of an RGPD request (context.subject).')
@click.option('--data', 'data_pairs', multiple=True, metavar='KEY=VALUE', help='context.data entry (VALUE read as JSON when it is JSON); repeatable.')
@click.option('--data-file', type=click.Path(dir_okay=False), help='YAML or JSON file of context.data entries (--data wins).')
@click.option('--check', is_flag=True, help='Dry run: Ansible check mode, nothing changes.')
@click.option('--limit', help='Host pattern to limit the run to.')
@click.option('--vault-password-file', type=click.Path(dir_okay=False), help='File holding the Vault password.')
@click.option('--json', 'as_json', is_flag=True, help='Print one JSON document (the RunResult) and nothing else.')
@click.option('--junit', 'junit_file', type=click.Path(dir_okay=False, writable=True), help='Write a JUnit XML report there.')
@click.option('--timeout', type=click.IntRange(min=1), help='Stop the run after this many seconds (status timeout).')
@click.option('--private-data-dir', type=click.Path(file_okay=False), help="ansible-runner's private data folder, kept after the run.")
@click.option('--rotate-artifacts', type=click.IntRange(min=0), default=DEFAULT_ROTATE_ARTIFACTS, show_default=True,
              help='Artifact folders kept in the private data folder (0: all).')
@click.option('-v', '--verbose', count=True, help='Ansible verbosity (-v to -vvvvv), for the runner artifacts.')
def run(operation: str, inventory: str, tenant: str | None, user: str | None, route: str | None, action: str | None,
        subject: str | None, data_pairs: tuple[str, ...], data_file: str | None, check: bool, limit: str | None,
        vault_password_file: str | None, as_json: bool, junit_file: str | None, timeout: int | None,
        private_data_dir: str | None, rotate_artifacts: int, verbose: int) -> None:
    """Run OPERATION (see `dihya-ops list`) on the inventory's backend hosts."""
    data = _load_data_file(data_file) if data_file else {}
    data.update(_data_pair(pair) for pair in data_pairs)
    context: dict[str, t.Any] = {k: v for k, v in {'tenant': tenant, 'user': user, 'route': route, 'action': action,
                                                   'subject': subject}.items() if v is not None}
    if data:
        context['data'] = data
    console = Console(stderr=True)
    interactive = not as_json and console.is_terminal
    display = Progress(console, operation) if interactive else None
    canceled = threading.Event()
    kwargs: dict[str, t.Any] = dict(inventory=inventory, check=check, limit=limit, vault_password_file=vault_password_file,
                                    private_data_dir=private_data_dir, timeout=timeout, verbosity=min(verbose, 5),
                                    rotate_artifacts=rotate_artifacts, progress=display, cancel_callback=canceled.is_set)
    # Ctrl-C or SIGTERM (a CI job canceled) stops the run through runner's cancel callback: status canceled.
    previous = {sig: signal.signal(sig, lambda *_: canceled.set()) for sig in (signal.SIGINT, signal.SIGTERM)}
    try:
        if display is not None:
            with Live(display.line, console=console, refresh_per_second=4, transient=True) as live:
                display.live = live
                result = run_ops(operation, context, **kwargs)
        else:
            result = run_ops(operation, context, **kwargs)
    finally:
        for sig, handler in previous.items():
            signal.signal(sig, handler)
    if junit_file:
        write_junit(result, junit_file)
    if as_json:
        click.echo(json.dumps(result.as_dict(), indent=2, sort_keys=True))
    else:
        # A pipeline's log is not a terminal: its lines are left whole (rich would cut them at 80 columns).
        out = Console()
        out.soft_wrap = not out.is_terminal
        summary(out, result)
    sys.exit(result.exit_code)
