# Copyright (c) Dihya ops maintainers
# GNU General Public License v3.0+ (see LICENSES/GPL-3.0-or-later.txt or https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later

# This plugin utility is PRIVATE to the collection. It can change at any time.

"""The authorisation policy: who may run which operation, for which tenant, in which environment (docs/policy.md).

:func:`load` reads and validates a policy file (YAML, ``version: 1``); :func:`evaluate` decides one
:class:`Request` against it, purely (no state: quotas, lock-outs and approvals are the governance store's).

Why a small evaluator rather than pycasbin: a Casbin model is a string DSL (``r = sub, obj, act`` and matcher
expressions) plus a CSV-like policy, which is neither what operators should have to write nor what they can
review in a merge request; its errors name no line of the file. Here the policy users write is plain YAML,
every error names the file, the line and the key, unknown keys are refused, and evaluation (role x operation x
tenant x environment x check mode, deny by default) is about a hundred lines that read like the documentation.
It also keeps the controller free of one more dependency (pycasbin and its ``simpleeval``) for AWX execution
environments.

Loading is defensive: the file is bounded in size (1 MiB), YAML anchors and aliases are refused before anything
is built (a "billion laughs" is an error, not a hang), only plain scalars, lists and mappings are accepted, and
tenant and environment names follow the run context's rules (:mod:`._run_context`).
"""

from __future__ import annotations

import dataclasses
import datetime
import hashlib
import os
import re
import stat
import typing as t

import yaml

from ansible_collections.dihya.ops.plugins.module_utils._canonical import canonical_bytes
from ansible_collections.dihya.ops.plugins.plugin_utils import _run_context

MAX_POLICY_BYTES = 1024 * 1024
VERSION = 1
#: The operations a policy can name (the RGPD request as ``rgpd.<action>``).
OPERATIONS = ('check_health', 'restart_services', 'purge_temp_files', 'rotate_logs', 'update_dependencies', 'audit',
              'ipfs_export', 'approve')
RGPD_ACTIONS = ('inventory', 'export', 'anonymise', 'erase', 'consent', 'replay')
RGPD_OPERATIONS = tuple(f'rgpd.{action}' for action in RGPD_ACTIONS)
ALL_OPERATIONS = OPERATIONS + RGPD_OPERATIONS
#: Four eyes when the policy has no ``approvals`` key: RGPD erase and anonymise everywhere, dependency updates and
#: restarts in prod.
DEFAULT_APPROVALS = ((('rgpd.erase', 'rgpd.anonymise'), None), (('update_dependencies', 'restart_services'), ('prod',)))
NAME = re.compile(r'[A-Za-z][A-Za-z0-9_.-]{0,63}')
DURATION = re.compile(r'([1-9][0-9]{0,8})([smhd])')
_UNITS = {'s': 1, 'm': 60, 'h': 3600, 'd': 86400}
_CONTROL = re.compile(r'[\x00-\x1f\x7f\u2028\u2029]')
_SCALARS = {'tag:yaml.org,2002:str', 'tag:yaml.org,2002:int', 'tag:yaml.org,2002:bool', 'tag:yaml.org,2002:null'}


class PolicyError(ValueError):
    """A policy that cannot be used; the message names the file, the line and the key."""


@dataclasses.dataclass(frozen=True)
class Role:
    """What a role may do: operations, environments (None: all), dry runs only, and which operations it may approve."""

    name: str
    operations: frozenset[str]
    environments: frozenset[str] | None
    check_only: bool = False
    approve: frozenset[str] = frozenset()


@dataclasses.dataclass(frozen=True)
class Binding:
    """Roles given to users and groups, for tenants (None: all)."""

    users: frozenset[str]
    groups: frozenset[str]
    roles: tuple[str, ...]
    tenants: frozenset[str] | None
    line: int = 0


@dataclasses.dataclass(frozen=True)
class ApprovalRule:
    """Operations that need a second person's approval in some environments (None: all); the longest approval lifetime."""

    operations: frozenset[str]
    environments: frozenset[str] | None
    max_age: datetime.timedelta | None = None


@dataclasses.dataclass(frozen=True)
class QuotaRule:
    """At most ``max_runs`` runs of the operations per ``window`` (sliding), counted ``per`` tenant, environment or user."""

    operations: frozenset[str]
    per: str
    max_runs: int
    window: datetime.timedelta


@dataclasses.dataclass(frozen=True)
class ConcurrencyRule:
    """At most ``max`` runs of the operations at a time ``per`` tenant, environment or globally; locks expire after ``lock_ttl``."""

    operations: frozenset[str]
    per: str
    max: int
    lock_ttl: datetime.timedelta


@dataclasses.dataclass(frozen=True)
class AntiAbuse:
    """After ``max_denials`` denied requests of one user within ``window``, that user is locked out for ``lockout``."""

    max_denials: int
    window: datetime.timedelta
    lockout: datetime.timedelta


@dataclasses.dataclass(frozen=True)
class Policy:
    """A validated policy (see :func:`load`)."""

    source: str
    roles: t.Mapping[str, Role]
    groups: t.Mapping[str, frozenset[str]]
    bindings: tuple[Binding, ...]
    approvals: tuple[ApprovalRule, ...]
    quotas: tuple[QuotaRule, ...] = ()
    concurrency: tuple[ConcurrencyRule, ...] = ()
    anti_abuse: AntiAbuse | None = None

    @property
    def grants_nothing(self) -> bool:
        """True when no bound role may run any operation (every request is denied)."""
        bound = {name for binding in self.bindings for name in binding.roles}
        return not any(self.roles[name].operations for name in bound)


@dataclasses.dataclass(frozen=True)
class Request:
    """Who asks to run which operation, for which tenant (None: the whole host), in which environment, dry run or not."""

    user: str
    operation: str
    tenant: str | None
    environment: str | None
    check_mode: bool


@dataclasses.dataclass(frozen=True)
class Decision:
    """The answer to a :class:`Request`: allowed or not and why, the granting roles, and what else the run needs."""

    allowed: bool
    reason: str
    roles: tuple[str, ...] = ()
    needs_approval: bool = False
    quotas: tuple[QuotaRule, ...] = ()
    concurrency: tuple[ConcurrencyRule, ...] = ()
    #: The reason without the user's name (``reason`` names the user in clear, for the person who runs).
    impersonal: str = ''

    def summary(self) -> dict[str, t.Any]:
        """A JSON-friendly form, without the user's name."""
        return {'allowed': self.allowed, 'reason': self.impersonal or self.reason, 'roles': list(self.roles),
                'needs_approval': self.needs_approval, 'quotas': len(self.quotas), 'concurrency': len(self.concurrency)}


# Loading ------------------------------------------------------------------------------------------------------------


class _Ctx:
    """Where a value is: the file and the key path, for error messages."""

    def __init__(self, source: str) -> None:
        self.source = source

    def error(self, node: yaml.Node, key: str, message: str) -> PolicyError:
        return PolicyError(f'{self.source}, line {node.start_mark.line + 1}, {key}: {message}')


def _refuse_anchors(text: str, ctx: _Ctx) -> None:
    """Refuse anchors and aliases (and explicit tags) before composing: expansion never starts."""
    for event in yaml.parse(text, Loader=yaml.SafeLoader):
        if isinstance(event, yaml.AliasEvent) or getattr(event, 'anchor', None) is not None:
            raise PolicyError(f'{ctx.source}, line {event.start_mark.line + 1}: YAML anchors and aliases (&name, *name) '
                              'are not allowed in a policy; write each value out')
        tag = getattr(event, 'tag', None)
        if tag is not None and tag not in ('!', '?') and not (isinstance(event, yaml.ScalarEvent) and tag in _SCALARS):
            raise PolicyError(f'{ctx.source}, line {event.start_mark.line + 1}: explicit YAML tags ({tag}) are not allowed in a policy')


def _scalar(node: yaml.Node, key: str, ctx: _Ctx) -> t.Any:
    if not isinstance(node, yaml.ScalarNode):
        raise ctx.error(node, key, 'expected a single value, not a list or mapping')
    if node.tag not in _SCALARS:
        raise ctx.error(node, key, f'{node.value!r} is not a string, number or boolean')
    return yaml.SafeLoader(node.value).construct_object(node) if node.tag != 'tag:yaml.org,2002:str' else node.value


def _text(node: yaml.Node, key: str, ctx: _Ctx, pattern: re.Pattern[str] | None = None, what: str = 'a name') -> str:
    value = _scalar(node, key, ctx)
    if not isinstance(value, str) or not value.strip():
        raise ctx.error(node, key, f'expected {what} (text), not {value!r}')
    if len(value) > 256 or _CONTROL.search(value):
        raise ctx.error(node, key, f'{what} is one line of at most 256 characters')
    if pattern is not None and pattern.fullmatch(value) is None:
        raise ctx.error(node, key, f'{_shown(value)} is not {what}')
    return value


def _shown(value: str) -> str:
    return repr(value if len(value) <= 40 else value[:40] + '...')


def _mapping(node: yaml.Node, key: str, ctx: _Ctx, allowed: t.Collection[str], required: t.Collection[str] = ()) -> dict[str, yaml.Node]:
    if not isinstance(node, yaml.MappingNode):
        raise ctx.error(node, key, 'expected a mapping (key: value)')
    found: dict[str, yaml.Node] = {}
    for knode, vnode in node.value:
        name = _scalar(knode, key, ctx)
        if not isinstance(name, str):
            raise ctx.error(knode, key, f'keys are names, not {name!r}')
        where = f'{key}.{name}' if key else name
        if name not in allowed:
            raise ctx.error(knode, where, f'unknown key {_shown(name)}; expected one of {", ".join(sorted(allowed))}')
        if name in found:
            raise ctx.error(knode, where, 'the key is given twice')
        found[name] = vnode
    for name in required:
        if name not in found:
            raise ctx.error(node, key or 'the policy', f'the key {name} is required')
    return found


def _items(node: yaml.Node, key: str, ctx: _Ctx) -> list[yaml.Node]:
    if not isinstance(node, yaml.SequenceNode):
        raise ctx.error(node, key, 'expected a list')
    return list(node.value)


def _names(node: yaml.Node, key: str, ctx: _Ctx, pattern: re.Pattern[str] | None = NAME, what: str = 'a name') -> frozenset[str]:
    return frozenset(_text(item, key, ctx, pattern, what) for item in _items(node, key, ctx))


def _operations(node: yaml.Node, key: str, ctx: _Ctx) -> frozenset[str]:
    names: set[str] = set()
    for item in _items(node, key, ctx):
        name = _text(item, key, ctx, what='an operation')
        if name == '*':
            names.update(ALL_OPERATIONS)
        elif name == 'rgpd.*':
            names.update(RGPD_OPERATIONS)
        elif name in ALL_OPERATIONS:
            names.add(name)
        else:
            raise ctx.error(item, key, f'unknown operation {_shown(name)}; expected "*", "rgpd.*" or one of {", ".join(ALL_OPERATIONS)}')
    return frozenset(names)


def _all_or(node: yaml.Node, key: str, ctx: _Ctx, check: t.Callable[[str, str], str | None], what: str) -> frozenset[str] | None:
    if isinstance(node, yaml.ScalarNode):
        if _scalar(node, key, ctx) == 'all':
            return None
        raise ctx.error(node, key, f'expected "all" or a list of {what} names')
    names: set[str] = set()
    for item in _items(node, key, ctx):
        value = _scalar(item, key, ctx)
        if not isinstance(value, str):
            raise ctx.error(item, key, f'expected {what} names (text), not {value!r}')
        try:
            name = check(value, 'value')
        except _run_context.ContextError as exc:
            raise ctx.error(item, key, str(exc)) from None
        if name is None:
            raise ctx.error(item, key, f'an empty {what} name')
        names.add(name)
    return frozenset(names)


def _bool(node: yaml.Node, key: str, ctx: _Ctx) -> bool:
    value = _scalar(node, key, ctx)
    if not isinstance(value, bool):
        raise ctx.error(node, key, f'expected true or false, not {value!r}')
    return value


def _count(node: yaml.Node, key: str, ctx: _Ctx) -> int:
    value = _scalar(node, key, ctx)
    if isinstance(value, bool) or not isinstance(value, int) or not 1 <= value <= 1_000_000:
        raise ctx.error(node, key, f'expected a whole number from 1 to 1000000, not {value!r}')
    return value


def _duration(node: yaml.Node, key: str, ctx: _Ctx) -> datetime.timedelta:
    value = _scalar(node, key, ctx)
    match = DURATION.fullmatch(value) if isinstance(value, str) else None
    if match is None:
        raise ctx.error(node, key, f'expected a duration such as 30s, 15m, 2h or 7d, not {value!r}')
    seconds = int(match.group(1)) * _UNITS[match.group(2)]
    if seconds > 366 * 86400:
        raise ctx.error(node, key, 'a duration is at most a year')
    return datetime.timedelta(seconds=seconds)


def _choice(node: yaml.Node, key: str, ctx: _Ctx, choices: tuple[str, ...]) -> str:
    value = _scalar(node, key, ctx)
    if value not in choices:
        raise ctx.error(node, key, f'expected one of {", ".join(choices)}, not {value!r}')
    return str(value)


def _role(name: str, node: yaml.Node, ctx: _Ctx) -> Role:
    key = f'roles.{name}'
    found = _mapping(node, key, ctx, ('operations', 'environments', 'check_only', 'approve'), ('operations',))
    environments = _all_or(found['environments'], f'{key}.environments', ctx, _run_context.check_environment, 'environment') \
        if 'environments' in found else None
    return Role(name=name, operations=_operations(found['operations'], f'{key}.operations', ctx), environments=environments,
                check_only=_bool(found['check_only'], f'{key}.check_only', ctx) if 'check_only' in found else False,
                approve=_operations(found['approve'], f'{key}.approve', ctx) if 'approve' in found else frozenset())


def _binding(index: int, node: yaml.Node, ctx: _Ctx, roles: t.Mapping[str, Role], groups: t.Mapping[str, frozenset[str]]) -> Binding:
    key = f'bindings[{index}]'
    found = _mapping(node, key, ctx, ('users', 'groups', 'roles', 'tenants'), ('roles', 'tenants'))
    if 'users' not in found and 'groups' not in found:
        raise ctx.error(node, key, 'a binding names users, groups or both')
    users = _names(found['users'], f'{key}.users', ctx, None, 'a user name') if 'users' in found else frozenset()
    bound_groups = _names(found['groups'], f'{key}.groups', ctx) if 'groups' in found else frozenset()
    for group in sorted(bound_groups - set(groups)):
        raise ctx.error(found['groups'], f'{key}.groups', f'the group {group} is not defined under groups')
    role_names = tuple(sorted(_names(found['roles'], f'{key}.roles', ctx)))
    for role in role_names:
        if role not in roles:
            raise ctx.error(found['roles'], f'{key}.roles', f'the role {role} is not defined under roles')
    tenants = _all_or(found['tenants'], f'{key}.tenants', ctx, _run_context.check_tenant, 'tenant')
    return Binding(users=users, groups=bound_groups, roles=role_names, tenants=tenants, line=node.start_mark.line + 1)


def parse(text: str, source: str = '<policy>') -> Policy:
    """Validate the text of a policy (see the module's documentation); raise :class:`PolicyError`."""
    ctx = _Ctx(source)
    if len(text.encode('utf-8', 'surrogatepass')) > MAX_POLICY_BYTES:
        raise PolicyError(f'{source}: a policy is at most {MAX_POLICY_BYTES} bytes')
    try:
        _refuse_anchors(text, ctx)
        root = yaml.compose(text, Loader=yaml.SafeLoader)
    except yaml.YAMLError as exc:
        mark = getattr(exc, 'problem_mark', None)
        where = f', line {mark.line + 1}' if mark is not None else ''
        raise PolicyError(f'{source}{where}: not valid YAML: {getattr(exc, "problem", None) or exc}') from None
    if root is None:
        raise PolicyError(f'{source}: the policy is empty; it needs at least "version: 1" (see docs/policy.md)')
    top = _mapping(root, '', ctx, ('version', 'roles', 'groups', 'bindings', 'approvals', 'quotas', 'concurrency', 'anti_abuse'),
                   ('version',))
    if _scalar(top['version'], 'version', ctx) != VERSION:
        raise ctx.error(top['version'], 'version', f'this collection reads policies of version {VERSION}')
    roles: dict[str, Role] = {}
    if 'roles' in top:
        roles_node = top['roles']
        for name, node in _mapping(roles_node, 'roles', ctx, _AnyKey(roles_node, 'roles', ctx)).items():
            roles[name] = _role(name, node, ctx)
    groups: dict[str, frozenset[str]] = {}
    if 'groups' in top:
        for name, node in _mapping(top['groups'], 'groups', ctx, _AnyKey(top['groups'], 'groups', ctx)).items():
            groups[name] = _names(node, f'groups.{name}', ctx, None, 'a user name')
    bindings = tuple(_binding(index, node, ctx, roles, groups)
                     for index, node in enumerate(_items(top['bindings'], 'bindings', ctx))) if 'bindings' in top else ()
    if 'approvals' in top:
        approvals = []
        for index, node in enumerate(_items(top['approvals'], 'approvals', ctx)):
            key = f'approvals[{index}]'
            found = _mapping(node, key, ctx, ('operations', 'environments', 'max_age'), ('operations',))
            approvals.append(ApprovalRule(
                operations=_operations(found['operations'], f'{key}.operations', ctx),
                environments=_all_or(found['environments'], f'{key}.environments', ctx, _run_context.check_environment,
                                     'environment') if 'environments' in found else None,
                max_age=_duration(found['max_age'], f'{key}.max_age', ctx) if 'max_age' in found else None))
        approval_rules = tuple(approvals)
    else:
        approval_rules = tuple(ApprovalRule(frozenset(ops), None if envs is None else frozenset(envs)) for ops, envs in DEFAULT_APPROVALS)
    quotas = []
    for index, node in enumerate(_items(top['quotas'], 'quotas', ctx) if 'quotas' in top else []):
        key = f'quotas[{index}]'
        found = _mapping(node, key, ctx, ('operations', 'per', 'max_runs', 'window'), ('operations', 'per', 'max_runs', 'window'))
        quotas.append(QuotaRule(operations=_operations(found['operations'], f'{key}.operations', ctx),
                                per=_choice(found['per'], f'{key}.per', ctx, ('tenant', 'environment', 'user')),
                                max_runs=_count(found['max_runs'], f'{key}.max_runs', ctx), window=_duration(found['window'], f'{key}.window', ctx)))
    concurrency = []
    for index, node in enumerate(_items(top['concurrency'], 'concurrency', ctx) if 'concurrency' in top else []):
        key = f'concurrency[{index}]'
        found = _mapping(node, key, ctx, ('operations', 'per', 'max', 'lock_ttl'), ('operations', 'per', 'max', 'lock_ttl'))
        concurrency.append(ConcurrencyRule(operations=_operations(found['operations'], f'{key}.operations', ctx),
                                           per=_choice(found['per'], f'{key}.per', ctx, ('tenant', 'environment', 'global')),
                                           max=_count(found['max'], f'{key}.max', ctx),
                                           lock_ttl=_duration(found['lock_ttl'], f'{key}.lock_ttl', ctx)))
    anti_abuse = None
    if 'anti_abuse' in top:
        found = _mapping(top['anti_abuse'], 'anti_abuse', ctx, ('max_denials', 'window', 'lockout'), ('max_denials', 'window', 'lockout'))
        anti_abuse = AntiAbuse(max_denials=_count(found['max_denials'], 'anti_abuse.max_denials', ctx),
                               window=_duration(found['window'], 'anti_abuse.window', ctx),
                               lockout=_duration(found['lockout'], 'anti_abuse.lockout', ctx))
    return Policy(source=source, roles=roles, groups=groups, bindings=bindings, approvals=approval_rules, quotas=tuple(quotas),
                  concurrency=tuple(concurrency), anti_abuse=anti_abuse)


class _AnyKey:
    """The allowed keys of a mapping of names (roles, groups): any name that matches :data:`NAME`, checked as it is read."""

    def __init__(self, node: yaml.Node, key: str, ctx: _Ctx) -> None:
        self.node, self.key, self.ctx = node, key, ctx

    def __contains__(self, name: object) -> bool:
        if not isinstance(name, str) or NAME.fullmatch(name) is None:
            raise self.ctx.error(self.node, self.key, f'{_shown(str(name))} is not a name: a letter, then up to 63 letters, '
                                 'digits, "_", "." or "-"')
        return True

    def __iter__(self) -> t.Iterator[str]:
        return iter(())

    def __len__(self) -> int:
        return 0


def load(path: str) -> Policy:
    """Read and validate the policy file ``path`` (a regular file of at most 1 MiB, not reached through a link at its name)."""
    if not isinstance(path, str) or not path or '\x00' in path:
        raise PolicyError('the policy file name is empty or holds a NUL byte')
    if not os.path.isabs(path):
        raise PolicyError(f'the policy file {path} is not an absolute path')
    try:
        fd = os.open(path, os.O_RDONLY | os.O_NOFOLLOW | os.O_NONBLOCK | getattr(os, 'O_CLOEXEC', 0))
    except OSError as exc:
        raise PolicyError(f'cannot read the policy file {path}: {exc.strerror or exc}') from None
    try:
        if not stat.S_ISREG(os.fstat(fd).st_mode):
            raise PolicyError(f'the policy file {path} is not a regular file')
        data = os.read(fd, MAX_POLICY_BYTES + 1)
    finally:
        os.close(fd)
    if len(data) > MAX_POLICY_BYTES:
        raise PolicyError(f'{path}: a policy is at most {MAX_POLICY_BYTES} bytes')
    try:
        text = data.decode('utf-8')
    except UnicodeDecodeError:
        raise PolicyError(f'{path}: the policy is not UTF-8 text') from None
    return parse(text, path)


# Evaluation ---------------------------------------------------------------------------------------------------------


def _listed(names: t.Iterable[str]) -> str:
    return ', '.join(sorted(names))


def _roles_of(names: t.Collection[str]) -> str:
    if not names:
        return 'no role'
    return ('role ' if len(names) == 1 else 'roles ') + _listed(names)


def evaluate(policy: Policy, request: Request) -> Decision:
    """Decide ``request``: deny by default; the first reason that applies, in the order of docs/policy.md."""
    tenant = f'tenant {request.tenant}' if request.tenant else 'every tenant (no tenant named)'
    env = f'in {request.environment}' if request.environment else 'in an unnamed environment (no dihya_environment)'
    action = f'{"dry-run" if request.check_mode else "run"} {request.operation} for {tenant} {env}'

    def deny(roles: t.Collection[str], why: str) -> Decision:
        tail = f'({_roles_of(roles)}) may not {action}: {why}'
        return Decision(allowed=False, reason=f'access denied: {request.user} {tail}', roles=tuple(sorted(roles)),
                        impersonal=f'access denied: the user {tail}')

    if request.operation not in ALL_OPERATIONS:
        return deny((), f'{request.operation!r} is not an operation the policy knows')
    if policy.grants_nothing:
        return deny((), 'the policy grants no role any operation')
    mine = [binding for binding in policy.bindings
            if request.user in binding.users or any(request.user in policy.groups.get(group, ()) for group in binding.groups)]
    held = {name for binding in mine for name in binding.roles}
    if not mine:
        return deny((), 'no binding of the policy gives this user a role')
    for_tenant = [binding for binding in mine
                  if binding.tenants is None or (request.tenant is not None and request.tenant in binding.tenants)]
    if not for_tenant:
        bound = {name for binding in mine for name in (binding.tenants or ())}
        return deny(held, f'the user\'s roles are bound to tenants {_listed(bound)} only' if request.tenant
                    else f'a run for every tenant needs a binding with "tenants: all"; the user\'s are for {_listed(bound)}')
    roles = [policy.roles[name] for name in sorted({name for binding in for_tenant for name in binding.roles})]
    names = [role.name for role in roles]
    with_operation = [role for role in roles if request.operation in role.operations]
    if not with_operation:
        return deny(names, f'no role of the user for this tenant has the operation {request.operation}')
    in_env = [role for role in with_operation
              if role.environments is None or (request.environment is not None and request.environment in role.environments)]
    if not in_env:
        granted = {name for role in with_operation for name in (role.environments or ())}
        return deny([role.name for role in with_operation], f'{request.operation} is granted in {_listed(granted)} only')
    granting = in_env if request.check_mode else [role for role in in_env if not role.check_only]
    if not granting:
        return deny([role.name for role in in_env], 'only dry runs (--check) are allowed to these roles')
    granted_names = tuple(role.name for role in granting)
    needs_approval = any(request.operation in rule.operations and
                         (rule.environments is None or (request.environment is not None and request.environment in rule.environments))
                         for rule in policy.approvals)
    quotas = tuple(rule for rule in policy.quotas if request.operation in rule.operations)
    concurrency = tuple(rule for rule in policy.concurrency if request.operation in rule.operations)
    tail = f'({_roles_of(granted_names)}) may {action}'
    return Decision(allowed=True, reason=f'access granted: {request.user} {tail}', roles=granted_names, needs_approval=needs_approval,
                    quotas=quotas, concurrency=concurrency, impersonal=f'access granted: the user {tail}')


def approvers(policy: Policy, user: str, operation: str, tenant: str | None) -> tuple[str, ...]:
    """The roles through which ``user`` may approve ``operation`` for ``tenant`` (the four-eyes check of an approver)."""
    found: set[str] = set()
    for binding in policy.bindings:
        if user not in binding.users and not any(user in policy.groups.get(group, ()) for group in binding.groups):
            continue
        if binding.tenants is not None and (tenant is None or tenant not in binding.tenants):
            continue
        found.update(name for name in binding.roles if operation in policy.roles[name].approve)
    return tuple(sorted(found))


def params_hash(params: t.Mapping[str, t.Any]) -> str:
    """The SHA-256 of the canonical JSON (module_utils/_canonical) of the parameters that matter to a request.

    An approval is bound to it. A parameter that is not JSON (a date, a set, NaN) is an error rather than a text of
    its own making, so that the approver and the run cannot hash one value two ways.
    """
    try:
        return hashlib.sha256(canonical_bytes(dict(params))).hexdigest()
    except (TypeError, ValueError) as exc:
        raise PolicyError(f'the parameters of the request are not plain JSON data (text, numbers, booleans, lists, mappings): {exc}') from None
