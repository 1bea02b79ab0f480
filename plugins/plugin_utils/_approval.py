# Copyright (c) Dihya ops maintainers
# GNU General Public License v3.0+ (see LICENSES/GPL-3.0-or-later.txt or https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later

"""Four-eyes approvals: a record bound to one exact request, signed with an HMAC key from Vault, with an expiry, consumed once.

An approver (a role with ``approve:`` for the tenant, see docs/policy.md) who is not the requester writes the record
with :func:`grant` (the ``dihya.ops.approve`` action). The run that needs it calls :func:`require`: the record must
exist, carry a valid signature, match the operation, tenant, environment, requester and the SHA-256 of the parameters,
not be expired, and not be used by another run. Consumption is one conditional update in a store transaction, so of
two runs racing for one approval exactly one wins; the same run asking again (its trace id) is allowed again.
"""

from __future__ import annotations

import dataclasses
import datetime
import hashlib
import hmac
import json
import re
import secrets
import typing as t

from ansible_collections.dihya.ops.plugins.module_utils._canonical import canonical, canonical_bytes
from ansible_collections.dihya.ops.plugins.plugin_utils import _policy
from ansible_collections.dihya.ops.plugins.plugin_utils._governance_store import Store

MIN_KEY_BYTES = 16
DEFAULT_LIFETIME = datetime.timedelta(hours=24)
MAX_LIFETIME = datetime.timedelta(days=30)
APPROVAL_ID = re.compile(r'^apr-[0-9a-f]{32}$')
HASH = re.compile(r'^[0-9a-f]{64}$')
MAX_TEXT = 256


class ApprovalError(ValueError):
    """An approval cannot be granted (not an approver, self-approval, bad input); nothing was written."""


@dataclasses.dataclass(frozen=True)
class ApprovalResult:
    allowed: bool
    reason: str
    approval_id: str | None = None
    approver: str | None = None


@dataclasses.dataclass(frozen=True)
class Approval:
    approval_id: str
    operation: str
    tenant: str | None
    environment: str | None
    requester: str
    params_hash: str
    approver: str
    created: str
    expires: str


def _text(value: t.Any, what: str, optional: bool = False) -> t.Any:
    if value is None and optional:
        return None
    if not isinstance(value, str) or not value.strip() or len(value) > MAX_TEXT or any(ord(c) < 32 or 0xD800 <= ord(c) <= 0xDFFF for c in value):
        raise ApprovalError(f'{what} must be a non-empty string of at most {MAX_TEXT} printable characters')
    return value


def sign(key: bytes, record: t.Mapping[str, t.Any]) -> str:
    return hmac.new(key, canonical_bytes(dict(record)), hashlib.sha256).hexdigest()


def _check_key(key: t.Any) -> bytes:
    if not isinstance(key, bytes) or len(key) < MIN_KEY_BYTES:
        raise ApprovalError(f'the approval key (dihya_ops_approval_key, from Vault) must be set and at least {MIN_KEY_BYTES} bytes long')
    return key


def _iso(moment: datetime.datetime) -> str:
    return moment.astimezone(datetime.UTC).strftime('%Y-%m-%dT%H:%M:%SZ')


def grant(store: Store, key: bytes, policy: _policy.Policy, approver: str, request: _policy.Request, params_hash: str,
          now: datetime.datetime, lifetime: datetime.timedelta = DEFAULT_LIFETIME, write: bool = True) -> Approval:
    """Write an approval by ``approver`` of ``request`` (its requester, operation, tenant, environment, parameters).

    With ``write`` false (check mode) everything is checked and the record that would be written is returned.
    """
    key = _check_key(key)
    approver = _text(approver, 'the approver')
    requester = _text(request.user, 'the requester')
    operation = _text(request.operation, 'the operation')
    tenant = _text(request.tenant, 'the tenant', optional=True)
    environment = _text(request.environment, 'the environment', optional=True)
    if not isinstance(params_hash, str) or not HASH.match(params_hash):
        raise ApprovalError('the parameters hash must be the 64 hexadecimal digits of a SHA-256')
    if operation not in _policy.ALL_OPERATIONS:
        raise ApprovalError(f'{operation[:60]!r} is not an operation the policy knows')
    if approver == requester:
        raise ApprovalError('four eyes: the approver must not be the requester')
    if not _policy.approvers(policy, approver, operation, tenant):
        raise ApprovalError(f'{approver} holds no role that may approve {operation} for '
                            f'{f"tenant {tenant}" if tenant else "every tenant"} (approve: in the policy)')
    if not isinstance(lifetime, datetime.timedelta) or lifetime <= datetime.timedelta(0) or lifetime > MAX_LIFETIME:
        raise ApprovalError(f'the lifetime of an approval must be positive and at most {MAX_LIFETIME.days} days')
    for rule in policy.approvals:
        applies = operation in rule.operations and (rule.environments is None or environment in rule.environments)
        if applies and rule.max_age is not None and lifetime > rule.max_age:
            raise ApprovalError(f'the policy allows approvals of {operation} for at most {int(rule.max_age.total_seconds())} s')
    record = Approval(approval_id=f'apr-{secrets.token_hex(16)}', operation=operation, tenant=tenant, environment=environment,
                      requester=requester, params_hash=params_hash, approver=approver, created=_iso(now), expires=_iso(now + lifetime))
    if not write:
        return record
    fields = dataclasses.asdict(record)
    with store.transaction() as tx:
        tx.execute('INSERT INTO governance_approvals (approval_id, record, signature, expires) VALUES (?, ?, ?, ?)',
                   (record.approval_id, canonical(fields), sign(key, fields), (now + lifetime).timestamp()))
    return record


def require(store: Store, key: bytes, request: _policy.Request, approval_id: str | None, params_hash: str, trace_id: str,
            now: datetime.datetime) -> ApprovalResult:
    """Allow ``request`` with the approval ``approval_id`` (consumed once by the run ``trace_id``), or say why not."""
    needed = f'{request.operation} needs a four-eyes approval'
    if not approval_id:
        return ApprovalResult(False, f'{needed}: an approver (not the requester) runs the playbook dihya.ops.approve for this '
                                     'request, and the run gives its approval id (approval_id, docs/approvals.md)')
    if not isinstance(approval_id, str) or not APPROVAL_ID.match(approval_id):
        return ApprovalResult(False, f'{needed}: the approval id is not one dihya.ops.approve writes (apr- and 32 hexadecimal digits)')
    try:
        key = _check_key(key)
    except ApprovalError as exc:
        return ApprovalResult(False, f'{needed}: {exc}')
    with store.transaction() as tx:
        rows = tx.execute('SELECT record, signature, consumed_by, consumed_at FROM governance_approvals WHERE approval_id = ?', (approval_id,))
        if not rows:
            return ApprovalResult(False, f'{needed}: there is no approval {approval_id}', approval_id)
        text, signature, consumed_by, consumed_at = rows[0]
        try:
            fields = json.loads(text)
        except ValueError:
            fields = None
        if not isinstance(fields, dict) or not hmac.compare_digest(sign(key, fields), str(signature)):
            return ApprovalResult(False, f'{needed}: the approval {approval_id} has no valid signature (altered, or signed with another key)',
                                  approval_id)
        approver = str(fields.get('approver'))
        wanted = {'operation': request.operation, 'tenant': request.tenant, 'environment': request.environment,
                  'requester': request.user, 'params_hash': params_hash}
        for name, value in wanted.items():
            if fields.get(name) != value:
                what = 'parameters' if name == 'params_hash' else name
                return ApprovalResult(False, f'{needed}: the approval {approval_id} was given for another {what}', approval_id, approver)
        if approver == request.user:
            return ApprovalResult(False, f'{needed}: the approval {approval_id} is the requester\'s own', approval_id, approver)
        if now >= datetime.datetime.strptime(str(fields.get('expires')), '%Y-%m-%dT%H:%M:%SZ').replace(tzinfo=datetime.UTC):
            return ApprovalResult(False, f'{needed}: the approval {approval_id} expired at {fields.get("expires")}', approval_id, approver)
        if consumed_by is not None:
            if consumed_by == trace_id:
                return ApprovalResult(True, f'approved by {approver} ({approval_id}, this run)', approval_id, approver)
            when = datetime.datetime.fromtimestamp(float(consumed_at), datetime.UTC)
            return ApprovalResult(False, f'{needed}: the approval {approval_id} was already used by the run {consumed_by} at {_iso(when)}',
                                  approval_id, approver)
        if request.check_mode:
            return ApprovalResult(True, f'approved by {approver} ({approval_id}; check mode: not consumed)', approval_id, approver)
        if tx.changed('UPDATE governance_approvals SET consumed_by = ?, consumed_at = ? WHERE approval_id = ? AND consumed_by IS NULL',
                      (trace_id, now.timestamp(), approval_id)) != 1:
            return ApprovalResult(False, f'{needed}: the approval {approval_id} was used by another run', approval_id, approver)
    return ApprovalResult(True, f'approved by {approver} ({approval_id}, consumed by this run)', approval_id, approver)
