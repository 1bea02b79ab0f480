# Copyright (c) Dihya ops maintainers
# GNU General Public License v3.0+ (see LICENSES/GPL-3.0-or-later.txt or https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later

# This plugin utility is PRIVATE to the collection. It can change at any time.

"""The context of one run, resolved once on the controller: who asks, for which tenant, in which environment, under which trace id.

The ``dihya.ops.operation_context`` action plugin (the fact the operations receive) and the ``dihya.ops.audit``
callback (the run's events) both resolve it here, so they always name the same user and the same trace id.

Who asks, first found wins:

1. ``awx_user_name``, then ``tower_user_name``: the extra variables AWX / Automation Controller sets for its job
   (source ``awx``);
2. the caller of ``ansible-playbook`` (ansible-runner, a CI job): the environment variable ``DIHYA_OPS_USER``,
   else the callback's ``user`` option (``DIHYA_AUDIT_USER``, or ``user`` in ``[callback_dihya_audit]``) (source
   ``caller``);
3. the declared variable ``dihya_ops_user``, only when the controller trusts declared users: the environment
   variable ``DIHYA_OPS_TRUST_DECLARED_USER`` is true (source ``declared``). It is read from the environment, not
   from a variable, because whoever can pass ``-e dihya_ops_user=...`` could as well pass the switch;
4. the operating system user of the controller process (``pwd.getpwuid(os.geteuid())``, never ``$USER``; a user id
   without a passwd entry, as in some containers, is ``uid:<number>``) (source ``os``).

The trace id: the variable ``dihya_trace_id``, else the caller's ``DIHYA_TRACE_ID`` or ``DIHYA_AUDIT_TRACE_ID``
(or the callback's ``trace_id`` option), else the run's own id. The run's own id is made when this module is first
imported in the ``ansible-playbook`` process, which is before any worker is forked (the callback imports it when the
run starts, the strategy loads the action plugin before it queues the task): every worker inherits the same id, so
one id covers every host, serial batch and play of the run.

Values are validated (:class:`ContextError` names the variable): a tenant or environment name, a trace id or a
request id that is malformed (``../``, quotes, control characters, too long, not hexadecimal) is refused.
"""

from __future__ import annotations

import dataclasses
import os
import pwd
import re
import typing as t

from ansible_collections.dihya.ops.plugins.module_utils._ids import is_trace_id, new_trace_id

#: The environment variable that names who runs, for a caller such as ansible-runner or a CI job.
CALLER_USER_ENV = 'DIHYA_OPS_USER'
#: The older name of the caller's user: the ``user`` option of the ``dihya.ops.audit`` callback.
CALLBACK_USER_ENV = 'DIHYA_AUDIT_USER'
#: The environment switch that lets the declared ``dihya_ops_user`` name who runs.
TRUST_DECLARED_ENV = 'DIHYA_OPS_TRUST_DECLARED_USER'
#: The caller's trace id, in the environment.
TRACE_ID_ENVS = ('DIHYA_TRACE_ID', 'DIHYA_AUDIT_TRACE_ID')

USER_SOURCES = ('awx', 'caller', 'declared', 'os')
MAX_USER = 256
TENANT = re.compile(r'[A-Za-z0-9](?:[A-Za-z0-9._-]{0,62})')
ENVIRONMENT = re.compile(r'[a-z][a-z0-9_-]{0,31}')
REQUEST_ID = re.compile(r'[A-Za-z0-9][A-Za-z0-9._:/#@+-]{0,127}')
_CONTROL = re.compile(r'[\x00-\x1f\x7f\u2028\u2029]')
_TRUE = ('1', 'true', 'yes', 'on')

# The run's own trace id: made once per ansible-playbook process, inherited by its forked workers.
_RUN: dict[str, str] = {'trace_id': new_trace_id()}


class ContextError(ValueError):
    """A value of the run context is malformed; the message names the variable (``variable``) and says what is expected."""

    def __init__(self, message: str, variable: str) -> None:
        super().__init__(message)
        self.variable = variable


@dataclasses.dataclass(frozen=True)
class RunContext:
    """Who runs, for which tenant, in which environment, under which trace id (see the module's documentation)."""

    user: str
    user_source: str
    tenant: str | None
    environment: str | None
    trace_id: str
    trace_id_source: str
    correlation_id: str | None
    labels: dict[str, str]
    warnings: tuple[str, ...] = ()

    def fact(self, host: str) -> dict[str, t.Any]:
        """The ``dihya_ops_context`` fact for ``host``: the run's context and the host's name in every record."""
        return {
            'user': self.user, 'user_source': self.user_source, 'tenant': self.tenant, 'environment': self.environment,
            'trace_id': self.trace_id, 'trace_id_source': self.trace_id_source, 'correlation_id': self.correlation_id,
            'host': host,
        }


def run_trace_id() -> str:
    """The run's own trace id (the same in the controller process and in every worker forked from it)."""
    return _RUN['trace_id']


def pin_trace_id(trace_id: str) -> None:
    """Make ``trace_id`` the run's own id (the callback's ``trace_id`` option), before any worker is forked."""
    if not is_trace_id(trace_id):
        raise ContextError('the trace id of the run must be 32 hexadecimal digits, not all zeros', 'trace_id')
    _RUN['trace_id'] = trace_id


def pin_caller_user(user: str | None) -> None:
    """Record the callback's ``user`` option as the caller's user, so that the action plugin names the same user."""
    if user is not None and text_of(user) is not None:
        _RUN['caller_user'] = check_user(user, 'the user option of the dihya.ops.audit callback')


def pin_caller_tenant(tenant: str | None) -> None:
    """Record the callback's ``tenant`` option, used when no variable names the tenant."""
    checked = check_tenant(tenant, 'the tenant option of the dihya.ops.audit callback') if text_of(tenant) is not None else None
    if checked is not None:
        _RUN['caller_tenant'] = checked


def os_user() -> str:
    """The operating system user of this process (its effective user id), whatever ``$USER`` says."""
    uid = os.geteuid()
    try:
        return pwd.getpwuid(uid).pw_name
    except KeyError:
        return f'uid:{uid}'


def text_of(value: t.Any) -> str | None:
    """``value`` as text without surrounding white space; None for None or blank text."""
    if value is None:
        return None
    text = str(value).strip()
    return text or None


def _string(value: t.Any, name: str) -> str | None:
    if value is None:
        return None
    if not isinstance(value, str):
        raise ContextError(f'{name} must be a string, not {type(value).__name__}', name)
    return value.strip() or None


def _shown(value: str) -> str:
    """A bounded, printable form of a refused value for the error message."""
    short = value if len(value) <= 40 else value[:40] + '...'
    return repr(short)


def check_user(value: t.Any, name: str) -> str:
    """A user name: text of at most 256 characters, without control characters (newlines, NUL...)."""
    text = _string(value, name)
    if text is None:
        raise ContextError(f'{name} is empty: give the name of who runs the operation', name)
    if len(text) > MAX_USER:
        raise ContextError(f'{name} is {len(text)} characters long; a user name has at most {MAX_USER}', name)
    if _CONTROL.search(text):
        raise ContextError(f'{name} holds a control character (newline, tab, NUL...); a user name is one line of text', name)
    return text


def check_tenant(value: t.Any, name: str = 'dihya_ops_tenant') -> str | None:
    """A tenant name: 1 to 63 letters, digits, ``.``, ``_`` or ``-``, starting with a letter or digit, without ``..``."""
    text = _string(value, name)
    if text is None:
        return None
    if TENANT.fullmatch(text) is None or '..' in text:
        raise ContextError(f'{name}={_shown(text)} is not a tenant name: 1 to 63 letters, digits, ".", "_" or "-", '
                           'starting with a letter or digit, without ".."', name)
    return text


def check_environment(value: t.Any, name: str = 'dihya_environment') -> str | None:
    """An environment name (``dev``, ``staging``, ``prod``...): a lowercase letter, then up to 31 of ``a-z0-9_-``."""
    text = _string(value, name)
    if text is None:
        return None
    if ENVIRONMENT.fullmatch(text) is None:
        raise ContextError(f'{name}={_shown(text)} is not an environment name such as dev, staging or prod: a lowercase '
                           'letter, then up to 31 lowercase letters, digits, "_" or "-"', name)
    return text


def check_trace_id(value: t.Any, name: str) -> str | None:
    """A W3C trace id (32 hexadecimal digits, not all zeros, any case), lowercased."""
    text = _string(value, name)
    if text is None:
        return None
    if not is_trace_id(text.lower()):
        raise ContextError(f'{name}={_shown(text)} is not a trace id: 32 hexadecimal digits (W3C trace context), not all zeros', name)
    return text.lower()


def check_request_id(value: t.Any, name: str = 'dihya_ops_request_id') -> str | None:
    """A request or change id (``CHG-1234``): up to 128 letters, digits and ``. _ : / # @ + -``, starting with a letter or digit."""
    text = _string(value, name)
    if text is None:
        return None
    if REQUEST_ID.fullmatch(text) is None or '..' in text:
        raise ContextError(f'{name}={_shown(text)} is not a request id: up to 128 letters, digits and ". _ : / # @ + -", '
                           'starting with a letter or digit, without ".."', name)
    return text


def trusts_declared_user(environ: t.Mapping[str, str]) -> bool:
    """Whether the controller lets ``dihya_ops_user`` name who runs (``DIHYA_OPS_TRUST_DECLARED_USER`` is true)."""
    return (environ.get(TRUST_DECLARED_ENV) or '').strip().lower() in _TRUE


def _user(variables: t.Mapping[str, t.Any], environ: t.Mapping[str, str], caller_user: str | None,
          warnings: list[str], system_user: str | None, pinned: bool) -> tuple[str, str]:
    for name in ('awx_user_name', 'tower_user_name'):
        if text_of(variables.get(name)) is not None:
            return check_user(variables[name], name), 'awx'
    option = 'the user option of the dihya.ops.audit callback'
    callers = ((CALLER_USER_ENV, environ.get(CALLER_USER_ENV)), (option, caller_user), (CALLBACK_USER_ENV, environ.get(CALLBACK_USER_ENV)),
               (option, _RUN.get('caller_user') if pinned else None))
    for name, value in callers:
        if text_of(value) is not None:
            return check_user(value, name), 'caller'
    declared = variables.get('dihya_ops_user')
    if text_of(declared) is not None:
        if trusts_declared_user(environ):
            return check_user(declared, 'dihya_ops_user'), 'declared'
        warnings.append(f'dihya_ops_user is ignored: this controller does not trust declared users (set {TRUST_DECLARED_ENV}=true '
                        'where whoever runs ansible-playbook may name someone else); the run is recorded under the operating '
                        'system user')
    return (system_user or os_user()), 'os'


def _trace(variables: t.Mapping[str, t.Any], environ: t.Mapping[str, str], caller_trace_id: str | None,
           strict: bool, warnings: list[str]) -> tuple[str, str]:
    candidates: list[tuple[str, t.Any, str]] = [('dihya_trace_id', variables.get('dihya_trace_id'), 'extra_vars')]
    if caller_trace_id is not None:
        candidates.append(('the trace_id option', caller_trace_id, 'option'))
    candidates += [(name, environ.get(name), 'caller') for name in TRACE_ID_ENVS]
    for name, value, source in candidates:
        if text_of(value) is None:
            continue
        try:
            found = check_trace_id(value if isinstance(value, str) else str(value), name)
        except ContextError as exc:
            if strict:
                raise
            warnings.append(f'{exc}; it is ignored')
            continue
        if found is not None:
            return found, source
    return run_trace_id(), 'run'


def resolve(variables: t.Mapping[str, t.Any] | None, environ: t.Mapping[str, str] | None = None, *, strict: bool = True,
            caller_user: str | None = None, caller_tenant: str | None = None, caller_trace_id: str | None = None,
            system_user: str | None = None, pinned: bool = True) -> RunContext:
    """The run context from the run's variables (extra variables for the callback, task variables for the action plugin).

    ``environ`` defaults to this process's environment. The ``caller_*`` values are the callback's options. With
    ``strict`` (the action plugin), a malformed trace id is an error; without (the callback, which must not stop a run),
    it is ignored with a warning and the next source is used. Other malformed values are errors either way.
    ``system_user`` stands for the operating system user (tests). With ``pinned`` (the action plugin), the callback's
    options recorded by :func:`pin_caller_user` and :func:`pin_caller_tenant` are the last caller's values.
    """
    found = dict(variables or {})
    env = os.environ if environ is None else environ
    warnings: list[str] = []
    user, user_source = _user(found, env, caller_user, warnings, system_user, pinned)
    tenant = check_tenant(found.get('dihya_ops_tenant'), 'dihya_ops_tenant')
    if tenant is None:
        tenant = check_tenant(found.get('dihya_tenant'), 'dihya_tenant')
    if tenant is None:
        tenant = check_tenant(caller_tenant, 'the tenant option of the dihya.ops.audit callback')
    if tenant is None and pinned:
        tenant = _RUN.get('caller_tenant')
    environment = check_environment(found.get('dihya_environment'))
    trace_id, trace_source = _trace(found, env, caller_trace_id, strict, warnings)
    correlation_id = check_request_id(found.get('dihya_ops_request_id'))
    labels: dict[str, str] = {}
    for label, names in (('awx_job_id', ('awx_job_id', 'tower_job_id')), ('awx_job_template', ('awx_job_template_name', 'tower_job_template_name'))):
        for name in names:
            value = text_of(found.get(name))
            if value is not None:
                labels[label] = value[:256]
                break
    if environment is not None:
        labels['environment'] = environment
    return RunContext(user=user, user_source=user_source, tenant=tenant, environment=environment, trace_id=trace_id,
                      trace_id_source=trace_source, correlation_id=correlation_id, labels=labels, warnings=tuple(warnings))
