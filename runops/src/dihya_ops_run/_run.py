# Copyright (c) Dihya ops maintainers
# GNU General Public License v3.0+ (see LICENSES/GPL-3.0-or-later.txt or https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later

"""``run_ops``: one operation of the collection run through ``ansible_runner.run``.

Everything the caller gives is validated before anything runs. The context reaches the playbook as data Ansible
never templates: every string is written ``!unsafe`` into a variables file of the private data directory, given as
``-e @file``; the audit event goes through the audit playbook's ``audit_context_file``. The Vault password is only
ever a password file named on the command line (its path, never its content, is in ``artifacts/*/command``); runner
writes no ``env/`` files (``suppress_env_files``), and the environment it records in ``artifacts/*/command`` keeps the
values of the variables of :data:`RECORDED_ENV` only.
"""

from __future__ import annotations

import json
import os
import pathlib
import re
import secrets
import shlex
import shutil
import sys
import tempfile
import typing as t

import yaml

from . import _operations as ops
from ._results import EventLog, RunResult, now

#: Artifact directories kept in a private data directory (runner's ``rotate_artifacts``).
DEFAULT_ROTATE_ARTIFACTS = 5
#: Environment variables whose values are kept in ``artifacts/<ident>/command``; the others' are withheld.
RECORDED_ENV = ('PATH', 'HOME', 'LANG', 'LC_ALL', 'PWD', 'SHELL', 'TERM', 'USER', 'LOGNAME', 'DIHYA_OPS_USER', 'DIHYA_TRACE_ID',
                'ANSIBLE_COLLECTIONS_PATH', 'ANSIBLE_NOCOLOR', 'ANSIBLE_FORCE_COLOR', 'ANSIBLE_STDOUT_CALLBACK', 'PYTHONPATH')
WITHHELD = '(withheld)'
LIMIT = re.compile(r'[A-Za-z0-9_.:*!&,\[\]@-]{1,1024}')
VAULT_HEADER = b'$ANSIBLE_VAULT;'


class _Unsafe(str):
    """A string written with YAML's ``!unsafe`` tag: Ansible reads it as data, never as a template."""


# A dumper of its own: the representer of _Unsafe is not added to PyYAML's SafeDumper, which others use.
_Dumper: t.Any = type('_Dumper', (yaml.SafeDumper,), {})
_Dumper.add_representer(_Unsafe, lambda dumper, value: dumper.represent_scalar('!unsafe', str(value)))


def _literal(value: t.Any) -> t.Any:
    if isinstance(value, str):
        return _Unsafe(value)
    if isinstance(value, dict):
        return {k: _literal(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_literal(v) for v in value]
    return value


def _has_vault(inventory: pathlib.Path) -> bool:
    """Whether the inventory (a file or a folder, with its group_vars and host_vars) holds Vault-encrypted content."""
    files = [inventory] if inventory.is_file() else [p for p in inventory.rglob('*') if p.is_file()]
    if inventory.is_file():
        for sub in ('group_vars', 'host_vars'):
            folder = inventory.parent / sub
            if folder.is_dir():
                files += [p for p in folder.rglob('*') if p.is_file()]
    for path in files[:2000]:
        try:
            with path.open('rb') as handle:
                head = handle.read(4096)
        except OSError:
            continue
        if VAULT_HEADER in head:
            return True
    return False


def _check_file(value: object, what: str) -> pathlib.Path:
    if not isinstance(value, (str, os.PathLike)):
        raise ops.BadInput(f'{what} must be a path, got {type(value).__name__}')
    path = pathlib.Path(value)
    if ops.CONTROL.search(str(path)):
        raise ops.BadInput(f'{what} holds control characters')
    return path.absolute()


def _validate(inventory: object, limit: object, extra_vars: object, vault_password_file: object, timeout: object,
              verbosity: object) -> tuple[pathlib.Path, pathlib.Path | None]:
    inv = _check_file(inventory, 'inventory')
    if not inv.exists():
        raise ops.BadInput(f'inventory {str(inv)!r} does not exist')
    if limit is not None and (not isinstance(limit, str) or not LIMIT.fullmatch(limit)):
        raise ops.BadInput('limit must be a host pattern (letters, digits and _ . : * ! & , [ ] @ -)')
    if extra_vars is not None:
        if not isinstance(extra_vars, dict):
            raise ops.BadInput(f'extra_vars must be a dictionary, got {type(extra_vars).__name__}')
        ops._check_data(extra_vars, 'extra_vars')
    password: pathlib.Path | None = None
    if vault_password_file is not None:
        password = _check_file(vault_password_file, 'vault_password_file')
        if not password.is_file() or not os.access(password, os.R_OK):
            raise ops.BadInput(f'the Vault password file {str(password)!r} is not a readable file')
    elif _has_vault(inv):
        raise ops.BadInput('the inventory holds Vault-encrypted values and no Vault password file was given (vault_password_file, --vault-password-file)')
    if timeout is not None and (isinstance(timeout, bool) or not isinstance(timeout, int) or timeout <= 0):
        raise ops.BadInput('timeout must be a positive number of seconds')
    if isinstance(verbosity, bool) or not isinstance(verbosity, int) or not 0 <= verbosity <= 5:
        raise ops.BadInput('verbosity must be 0 to 5')
    return inv, password


def _collections_path(root: pathlib.Path | None) -> str | None:
    """The checkout's ``.cache/collections`` (where bootstrap exposes it as dihya.ops), else what the caller set."""
    if root is not None and (root / '.cache' / 'collections' / 'ansible_collections' / 'dihya' / 'ops').exists():
        return str(root / '.cache' / 'collections')
    if root is not None and root.parent.name == 'dihya' and root.parent.parent.name == 'ansible_collections':
        return str(root.parent.parent.parent)
    return os.environ.get('ANSIBLE_COLLECTIONS_PATH')


def _scrub_command(artifact_dir: str | None) -> None:
    """Keep only the values of :data:`RECORDED_ENV` in the environment runner records in ``artifacts/<ident>/command``."""
    if not artifact_dir:
        return
    path = pathlib.Path(artifact_dir) / 'command'
    try:
        data = json.loads(path.read_text(encoding='utf-8'))
    except (OSError, ValueError):
        return
    env = data.get('env')
    if isinstance(env, dict):
        data['env'] = {k: (v if k in RECORDED_ENV or k.startswith('RUNNER_') else WITHHELD) for k, v in env.items()}
        tmp = path.with_suffix('.tmp')
        tmp.write_text(json.dumps(data), encoding='utf-8')
        os.chmod(tmp, 0o600)
        tmp.replace(path)


def _bad(operation: object, message: str, start: t.Any, check: bool, trace_id: str) -> RunResult:
    end = now()
    return RunResult(operation=str(operation)[:64], playbook=None, status='bad_input', rc=None, trace_id=trace_id, check=check,
                     start=start.isoformat(), end=end.isoformat(), duration=(end - start).total_seconds(), message=message)


def run_ops(operation: str, context: dict[str, t.Any] | None = None, *, inventory: str | os.PathLike[str], check: bool = False,
            limit: str | None = None, extra_vars: dict[str, t.Any] | None = None,
            vault_password_file: str | os.PathLike[str] | None = None, private_data_dir: str | os.PathLike[str] | None = None,
            keep_private_data_dir: bool | None = None, timeout: int | None = None,
            cancel_callback: t.Callable[[], bool] | None = None, verbosity: int = 0,
            progress: t.Callable[[EventLog], None] | None = None,
            rotate_artifacts: int = DEFAULT_ROTATE_ARTIFACTS, trace_id: str | None = None) -> RunResult:
    """Run one operation of the collection through ansible-runner and say how it went (see docs/run-ops.md).

    Bad input gives a result of status ``bad_input`` and runs nothing. ``private_data_dir`` is kept; without one, a
    fresh temporary folder is used and removed after the run unless ``keep_private_data_dir`` is true.
    """
    start = now()
    trace = trace_id if isinstance(trace_id, str) and re.fullmatch(r'[0-9a-f]{32}', trace_id) and set(trace_id) != {'0'} else secrets.token_hex(16)
    try:
        if trace_id is not None and trace != trace_id:
            raise ops.BadInput('trace_id must be 32 lowercase hexadecimal digits, not all zeros')
        root = ops.collection_dir()
        op = ops.resolve(operation, root)
        ctx = ops.validate_context(context)
        inv, password = _validate(inventory, limit, extra_vars, vault_password_file, timeout, verbosity)
        variables = ops.playbook_vars(op, ctx, root)
        if not isinstance(check, bool):
            raise ops.BadInput('check must be true or false')
        if isinstance(rotate_artifacts, bool) or not isinstance(rotate_artifacts, int) or rotate_artifacts < 0:
            raise ops.BadInput('rotate_artifacts must be 0 (keep every artifact directory) or more')
    except ops.BadInput as exc:
        return _bad(operation, str(exc), start, bool(check), trace)

    keep = private_data_dir is not None if keep_private_data_dir is None else keep_private_data_dir
    if private_data_dir is None:
        pdd = pathlib.Path(tempfile.mkdtemp(prefix='dihya-ops-run-'))
    else:
        pdd = pathlib.Path(private_data_dir).absolute()
        pdd.mkdir(mode=0o700, parents=True, exist_ok=True)
    own = pdd / 'dihya-ops'
    own.mkdir(mode=0o700, exist_ok=True)
    all_vars = dict(extra_vars or {})
    all_vars.update(variables)
    all_vars['dihya_trace_id'] = trace
    if op.playbook == 'audit':
        event_file = own / f'audit-event-{trace}.json'
        event_file.write_text(json.dumps(ops.audit_event(ctx)), encoding='utf-8')
        os.chmod(event_file, 0o600)
        all_vars['audit_context_file'] = str(event_file)
    vars_file = own / f'vars-{trace}.yml'
    vars_file.write_text(yaml.dump(_literal(all_vars), Dumper=_Dumper, allow_unicode=True), encoding='utf-8')
    os.chmod(vars_file, 0o600)

    cmdline = ['-e', f'@{vars_file}']
    if check:
        cmdline.append('--check')
    if password is not None:
        cmdline += ['--vault-password-file', str(password)]
    envvars = {'DIHYA_TRACE_ID': trace, 'ANSIBLE_NOCOLOR': '1', 'ANSIBLE_FORCE_COLOR': '0',
               'PATH': os.pathsep.join([str(pathlib.Path(sys.executable).parent), os.environ.get('PATH', os.defpath)])}
    if ctx.user is not None:
        envvars['DIHYA_OPS_USER'] = ctx.user
    collections = _collections_path(root)
    if collections:
        envvars['ANSIBLE_COLLECTIONS_PATH'] = collections

    events = EventLog(check, progress)
    state = {'canceled': False}

    def cancel() -> bool:
        if cancel_callback is not None and cancel_callback():
            state['canceled'] = True
        return state['canceled']

    import ansible_runner  # late: importing it is slow, and bad input never needs it

    try:
        runner = ansible_runner.run(
            private_data_dir=str(pdd), playbook=op.fqcn, inventory=str(inv), limit=limit, cmdline=shlex.join(cmdline),
            envvars=envvars, verbosity=verbosity or None, quiet=True, suppress_env_files=True, rotate_artifacts=rotate_artifacts,
            timeout=timeout, cancel_callback=cancel, event_handler=events, ident=trace)
        status = str(runner.status)
        rc = runner.rc
        stats = runner.stats or {}
        artifact_dir = str(runner.config.artifact_dir)
    except Exception as exc:  # a runner that cannot start is a failed run, not a traceback
        status, rc, stats, artifact_dir = 'failed', None, {}, None
        events.errors.append(f'ansible-runner could not run the playbook: {type(exc).__name__}: {exc}')
    _scrub_command(artifact_dir)

    if status == 'failed' and events.denied():
        status = 'denied'
    elif status not in ('successful', 'failed', 'timeout', 'canceled'):
        status = 'failed'
    hosts: dict[str, dict[str, int]] = {}
    for key, per_host in stats.items():
        if isinstance(per_host, dict):
            for host, count in per_host.items():
                hosts.setdefault(host, {})[key] = int(count)
    for host in hosts:
        for key in ('ok', 'changed', 'failures', 'dark', 'skipped', 'rescued', 'ignored'):
            hosts[host].setdefault(key, 0)
    failures = [events.failures[h] for h in events.hosts if h in events.failures]
    message = {'successful': 'the run succeeded', 'timeout': f'the run exceeded its timeout of {timeout} s and was stopped',
               'canceled': 'the run was canceled'}.get(status, '')
    if status in ('failed', 'denied'):
        message = '; '.join(f'{f.host}: {f.task}: {f.message}' for f in failures) or '; '.join(events.errors) or f'ansible-playbook ended with rc {rc}'
    end = now()
    result = RunResult(operation=op.name, playbook=op.fqcn, status=status, rc=rc, trace_id=trace, check=check,
                       start=start.isoformat(), end=end.isoformat(), duration=round((end - start).total_seconds(), 3),
                       message=message, hosts=hosts, failures=failures, paths=events.produced(),
                       artifact_dir=artifact_dir if keep else None, private_data_dir=str(pdd) if keep else None)
    if not keep:
        shutil.rmtree(pdd, ignore_errors=True)
    return result
