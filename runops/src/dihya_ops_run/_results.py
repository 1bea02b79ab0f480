# Copyright (c) Dihya ops maintainers
# GNU General Public License v3.0+ (see LICENSES/GPL-3.0-or-later.txt or https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later

"""What a run gives back (:class:`RunResult`), and what is read from ansible-runner's events while it runs (:class:`EventLog`)."""

from __future__ import annotations

import dataclasses
import datetime
import threading
import typing as t

#: The statuses of a run, and the exit code of ``dihya-ops run`` for each.
EXIT_CODES: dict[str, int] = {
    'successful': 0,
    'failed': 1,
    'bad_input': 2,
    'denied': 3,
    'timeout': 4,
    'canceled': 5,
}
STATUSES = tuple(EXIT_CODES)

#: The message an authorisation refusal of ``dihya.ops.authorise`` starts with.
DENIED_PREFIX = 'access denied:'
AUTHORISE_ACTIONS = ('dihya.ops.authorise', 'authorise')

MAX_MESSAGE = 2000
# Keys of module results that name a file the run produced, and the kind each path is filed under.
_PATH_KEYS = ('path', 'dest', 'file', 'archive', 'metrics', 'report', 'log', 'export', 'car')
_NOT_PRODUCERS = ('file', 'stat', 'find', 'assert', 'debug', 'set_fact')
# A role names what it produced outright with a fact ``<role>_produced: {kind: [paths]}`` (set_fact); for those kinds
# the paths read from module results (a file fetched under a temporary name first, say) give way to what it names.
_PRODUCED_SUFFIX = '_produced'


@dataclasses.dataclass(frozen=True)
class HostFailure:
    """Why a host failed: the task, its module, and the message (no_log results stay censored)."""

    host: str
    task: str
    action: str
    message: str
    unreachable: bool = False


@dataclasses.dataclass
class RunResult:
    """The outcome of one :func:`dihya_ops_run.run_ops` call."""

    operation: str
    playbook: str | None
    status: str
    rc: int | None
    trace_id: str
    check: bool
    start: str
    end: str
    duration: float
    message: str = ''
    hosts: dict[str, dict[str, int]] = dataclasses.field(default_factory=dict)
    failures: list[HostFailure] = dataclasses.field(default_factory=list)
    paths: dict[str, list[str]] = dataclasses.field(default_factory=dict)
    artifact_dir: str | None = None
    private_data_dir: str | None = None

    @property
    def ok(self) -> bool:
        return self.status == 'successful'

    @property
    def exit_code(self) -> int:
        return EXIT_CODES[self.status]

    def failure(self, host: str) -> HostFailure | None:
        return next((f for f in self.failures if f.host == host), None)

    def as_dict(self) -> dict[str, t.Any]:
        data = dataclasses.asdict(self)
        data['exit_code'] = self.exit_code
        return data


def now() -> datetime.datetime:
    return datetime.datetime.now(datetime.UTC)


def _short(text: str) -> str:
    text = ' '.join(text.split())
    return text if len(text) <= MAX_MESSAGE else text[:MAX_MESSAGE - 3] + '...'


def failure_message(res: dict[str, t.Any]) -> str:
    """The message of a failed result: its ``msg``, else the first failed loop item's, else a short description."""
    if res.get('censored'):
        return str(res['censored'])
    msg = res.get('msg')
    items = res.get('results')
    if isinstance(items, list):
        for item in items:
            if isinstance(item, dict) and item.get('failed'):
                inner = failure_message(item)
                if inner:
                    return _short(f'{msg}: {inner}' if msg and msg != inner else inner)
    if msg:
        return _short(str(msg))
    for key in ('stderr', 'reason', 'exception'):
        if res.get(key):
            return _short(str(res[key]).strip().splitlines()[-1])
    return 'failed'


def _kind(key: str, path: str, action: str) -> str | None:
    low = path.lower()
    if low.endswith('.prom') or 'metrics' in key:
        return 'metrics'
    if 'audit' in action or 'audit' in key or low.endswith('audit.log') or '/audit/' in low:
        return 'audit_logs'
    if action.endswith(('rgpd', 'ipfs_export', 'fetch')) or low.endswith(('.zip', '.car', '.enc')) or 'export' in key:
        return 'exports'
    if 'report' in key or 'report' in low:
        return 'reports'
    return None


class EventLog:
    """Reads ansible-runner's events: failures per host, the files module results name, the progress of the run."""

    def __init__(self, check: bool, progress: t.Callable[[EventLog], None] | None = None) -> None:
        self.check = check
        self.progress = progress
        self.lock = threading.Lock()
        self.failures: dict[str, HostFailure] = {}
        self.paths: dict[str, list[str]] = {}
        self.declared: dict[str, list[str]] = {}
        self.hosts: list[str] = []
        self.task = ''
        self.task_done: set[str] = set()
        self.started = now()
        self.errors: list[str] = []

    def __call__(self, event: dict[str, t.Any]) -> bool:
        with self.lock:
            self._read(event)
        if self.progress is not None:
            self.progress(self)
        return True

    def _read(self, event: dict[str, t.Any]) -> None:
        kind = str(event.get('event', ''))
        data = event.get('event_data') or {}
        host = data.get('host')
        if isinstance(host, str) and host not in self.hosts:
            self.hosts.append(host)
        if kind == 'playbook_on_task_start':
            self.task = str(data.get('task', ''))
            self.task_done = set()
        elif kind in ('runner_on_ok', 'runner_on_failed', 'runner_on_skipped', 'runner_on_unreachable') and isinstance(host, str):
            self.task_done.add(host)
        raw = data.get('res')
        res: dict[str, t.Any] = raw if isinstance(raw, dict) else {}
        action = str(data.get('task_action', ''))
        if kind == 'runner_on_failed' and not data.get('ignore_errors') and isinstance(host, str):
            self.failures[host] = HostFailure(host, str(data.get('task', '')), action, failure_message(res))
        elif kind == 'runner_on_unreachable' and isinstance(host, str):
            self.failures[host] = HostFailure(host, str(data.get('task', '')), action, failure_message(res), unreachable=True)
        elif kind == 'runner_on_ok' and not self.check and res:
            self._paths(res, action)
        elif kind == 'verbose' and 'ERROR!' in str(event.get('stdout', '')):
            self.errors.append(_short(str(event['stdout']).split('ERROR!', 1)[1]))

    def _paths(self, res: dict[str, t.Any], action: str) -> None:
        # The files a result names at its top level (nested values are the module's input and its records: a route
        # is not a file); folders made or looked at (file, stat) are not something the run produced.
        if action.rsplit('.', 1)[-1] == 'set_fact' and isinstance(res.get('ansible_facts'), dict):
            self._declared(res['ansible_facts'])
        if res.get('censored') or res.get('state') == 'directory' or action.rsplit('.', 1)[-1] in _NOT_PRODUCERS:
            return
        for key, value in res.items():
            if isinstance(value, str) and value.startswith('/') and any(word in key for word in _PATH_KEYS):
                kind = _kind(key, value, action)
                if kind and value not in self.paths.setdefault(kind, []):
                    self.paths[kind].append(value)
        for kind in [k for k, v in self.paths.items() if not v]:
            del self.paths[kind]

    def _declared(self, facts: dict[str, t.Any]) -> None:
        for name, kinds in facts.items():
            if not (isinstance(name, str) and name.endswith(_PRODUCED_SUFFIX) and isinstance(kinds, dict)):
                continue
            for kind, paths in kinds.items():
                for path in [paths] if isinstance(paths, str) else paths if isinstance(paths, list) else []:
                    if isinstance(kind, str) and isinstance(path, str) and path.startswith('/') and path not in self.declared.setdefault(kind, []):
                        self.declared[kind].append(path)

    def produced(self) -> dict[str, list[str]]:
        """The files the run produced, by kind: what the roles named (``<role>_produced``), else what module results name."""
        found = {kind: list(paths) for kind, paths in self.paths.items()}
        found.update({kind: list(paths) for kind, paths in self.declared.items() if paths})
        return found

    def denied(self) -> bool:
        return any(f.action in AUTHORISE_ACTIONS and f.message.lower().startswith(DENIED_PREFIX) for f in self.failures.values())
