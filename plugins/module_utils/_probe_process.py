# Copyright (c) Dihya ops maintainers
# GNU General Public License v3.0+ (see LICENSES/GPL-3.0-or-later.txt or https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later

# This module utility is PRIVATE to the collection. It can change at any time.

"""The ``process`` check: a process that must be running, found by pidfile, by process name or as a supervisor program.

Names are validated before anything runs. A supervisor program's state is read over supervisord's XML-RPC
interface when the configuration file names its server URL (:mod:`._supervisor_rpc`), else through
supervisorctl, which gets an argument list, never a shell.
Reads that a dead network file system can hang (a pidfile, ``/proc``) run in a bounded call.
"""

from __future__ import annotations

import dataclasses
import os
import shutil
import typing as t

from ansible_collections.dihya.ops.plugins.module_utils._probe_common import Budget, CheckConfigError, Options, Outcome, bounded_call, option
from ansible_collections.dihya.ops.plugins.module_utils._process import pid_alive
from ansible_collections.dihya.ops.plugins.module_utils._supervisor import NAME_PATTERN, ProgramStatus, SupervisorError, Supervisorctl, subprocess_runner
from ansible_collections.dihya.ops.plugins.module_utils import _supervisor_rpc

PROCESS_OPTIONS = frozenset(('pidfile', 'process_name', 'supervisor_program', 'supervisorctl', 'supervisor_config'))


def validate_name(value: str, what: str) -> str:
    """Check a process or supervisor program name against :data:`NAME_PATTERN`."""
    if not isinstance(value, str) or not NAME_PATTERN.fullmatch(value):
        raise CheckConfigError(f'invalid {what} {value!r}: use 1 to 128 letters, digits and the characters _ . : @ - (not starting with -)')
    return value


@dataclasses.dataclass(frozen=True)
class ProcessConfig:
    pidfile: str | None = None
    process_name: str | None = None
    supervisor_program: str | None = None
    supervisorctl: str | None = None
    supervisor_config: str | None = None


def parse_process(options: Options) -> ProcessConfig:
    """Validate the options of a ``process`` check: exactly one of pidfile, process_name, supervisor_program."""
    given = [key for key in ('pidfile', 'process_name', 'supervisor_program') if options.get(key) is not None]
    if len(given) != 1:
        raise CheckConfigError(f"a process check needs exactly one of pidfile, process_name, supervisor_program (got {', '.join(given) or 'none'})")
    if given[0] != 'supervisor_program':
        for key in ('supervisorctl', 'supervisor_config'):
            if options.get(key) is not None:
                raise CheckConfigError(f'{key} is only valid together with supervisor_program')
    if given[0] == 'pidfile':
        return ProcessConfig(pidfile=str(options['pidfile']))
    if given[0] == 'process_name':
        return ProcessConfig(process_name=validate_name(options['process_name'], 'process name'))

    program = validate_name(options['supervisor_program'], 'supervisor program name')
    wanted = str(option(options, 'supervisorctl', 'supervisorctl'))
    executable = shutil.which(wanted)
    if executable is None:
        raise CheckConfigError(f'supervisorctl executable not found: {wanted}')
    config = options.get('supervisor_config')
    if config is not None and not os.path.isfile(config):
        raise CheckConfigError(f'supervisor_config {config} does not exist')
    return ProcessConfig(supervisor_program=program, supervisorctl=executable, supervisor_config=config)


def probe_process(config: ProcessConfig, timeout: float) -> Outcome:
    """Dispatch to the pidfile, process name or supervisor probe."""
    budget = Budget(timeout)
    if config.pidfile is not None:
        pidfile = config.pidfile
        return bounded_call(lambda: _probe_pidfile(pidfile), budget, f'while reading {pidfile}')
    if config.process_name is not None:
        name = config.process_name
        return bounded_call(lambda: _probe_process_name(name), budget, 'while listing the processes')
    return _probe_supervisor(config, timeout)


def _probe_pidfile(pidfile: str) -> Outcome:
    details: dict[str, t.Any] = {'pidfile': pidfile}
    try:
        content = _read_text(pidfile, 64).strip()
    except FileNotFoundError:
        return Outcome(False, f'pidfile {pidfile} not found', details)
    if not content.isdigit() or int(content) <= 0:
        return Outcome(False, f'pidfile {pidfile} does not contain a PID', details)
    pid = details['pid'] = int(content)
    if not pid_alive(pid):
        return Outcome(False, f'process {pid} from {pidfile} is not running', details)
    return Outcome(True, f'process {pid} is running', details)


def _probe_process_name(name: str) -> Outcome:
    if not os.path.isdir('/proc'):  # pragma: no cover - every supported platform has /proc
        raise CheckConfigError('process_name checks need /proc')
    own = os.getpid()
    pids = []
    for entry in os.listdir('/proc'):
        if not entry.isdigit() or int(entry) == own:
            continue
        try:
            comm = _read_text(f'/proc/{entry}/comm').strip()
            argv0 = _read_text(f'/proc/{entry}/cmdline').split('\0', 1)[0]
        except OSError:
            continue  # The process went away while we were looking.
        if (comm == name or os.path.basename(argv0) == name) and pid_alive(int(entry)):
            pids.append(int(entry))
    pids.sort()
    details = {'process_name': name, 'count': len(pids), 'pids': pids[:20]}
    if not pids:
        return Outcome(False, f'no process named {name} is running', details)
    return Outcome(True, f'{len(pids)} process(es) named {name} running', details)


def _probe_supervisor(config: ProcessConfig, timeout: float) -> Outcome:
    program = t.cast(str, config.supervisor_program)
    details: dict[str, t.Any] = {'supervisor_program': program}
    server = _supervisor_rpc.server_url(config.supervisor_config) if config.supervisor_config is not None else None
    try:
        if server is not None:
            status: ProgramStatus = bounded_call(lambda: _supervisor_rpc.status(server, program, timeout), Budget(timeout),
                                                 f'while asking supervisord at {server.url}')
        else:
            status = Supervisorctl(subprocess_runner(timeout), t.cast(str, config.supervisorctl), config.supervisor_config).status(program)
    except SupervisorError as exc:
        return Outcome(False, str(exc), details)
    details['supervisor_state'] = status.state
    if status.pid is not None:
        details['pid'] = status.pid
        details['uptime'] = status.uptime
    message = f'supervisor program {program} is {status.state}' + (f' ({status.description})' if status.description else '')
    return Outcome(status.running, message, details)


def _read_text(path: str, limit: int = 4096) -> str:
    """The start of a small file (a pidfile, a /proc entry), decoded leniently."""
    with open(path, 'rb') as handle:
        return handle.read(limit).decode('utf-8', errors='replace')
