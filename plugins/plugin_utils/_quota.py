# Copyright (c) Dihya ops maintainers
# GNU General Public License v3.0+ (see LICENSES/GPL-3.0-or-later.txt or https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later

"""Quotas (sliding windows), concurrency locks with a TTL, and the anti-abuse lock-out, through the governance store.

Every check and its write happen in one store transaction, so concurrent runs cannot both take the last run of a
window. A run is known by its trace id: asking again (serial batches, several plays of one run) is counted once.
Check mode checks and says what would happen, and writes nothing.
"""

from __future__ import annotations

import dataclasses
import datetime
import typing as t

from ansible_collections.dihya.ops.plugins.plugin_utils._governance_store import Store, Transaction
from ansible_collections.dihya.ops.plugins.plugin_utils._policy import AntiAbuse, ConcurrencyRule, QuotaRule, Request

MAX_TEXT = 256


class QuotaError(ValueError):
    """A request or a rule the quota engine cannot use (wrong type, too long)."""


@dataclasses.dataclass(frozen=True)
class QuotaResult:
    allowed: bool
    reason: str
    retry_after: datetime.datetime | None = None
    lock_holder: str | None = None


def _text(value: t.Any, what: str) -> str:
    if not isinstance(value, str) or not value or len(value) > MAX_TEXT or '\0' in value:
        raise QuotaError(f'{what} must be a non-empty string of at most {MAX_TEXT} characters')
    return value


def _epoch(now: datetime.datetime) -> float:
    if not isinstance(now, datetime.datetime) or now.tzinfo is None:
        raise QuotaError('the time of a governance check must be an aware datetime')
    return now.timestamp()


def _utc(epoch: float) -> datetime.datetime:
    return datetime.datetime.fromtimestamp(epoch, datetime.UTC)


def _shown(epoch: float) -> str:
    return _utc(epoch).strftime('%Y-%m-%dT%H:%M:%SZ')


def _per(per: str, request: Request) -> str:
    value = {'tenant': request.tenant, 'environment': request.environment, 'user': request.user, 'global': None}.get(per)
    return f'{per}={value if value is not None else "*"}'


def _scope(kind: str, operation: str, per: str, request: Request) -> str:
    return f'{kind}|{operation}|{_per(per, request)}'


def _described(per: str, request: Request) -> str:
    value = {'tenant': request.tenant, 'environment': request.environment, 'user': request.user}.get(per)
    if per == 'global':
        return 'in total'
    return f'per {per} ({value if value is not None else "none named"})'


def enforce(store: Store, quotas: t.Sequence[QuotaRule], concurrency: t.Sequence[ConcurrencyRule], request: Request,
            trace_id: str, now: datetime.datetime) -> QuotaResult:
    """Take one run of every quota and a concurrency slot for ``request``, or none of them and say why and when to retry."""
    _text(trace_id, 'the trace id')
    _text(request.user, 'the user')
    _text(request.operation, 'the operation')
    at = _epoch(now)
    with store.transaction() as tx:
        refusal, runs = _check_quotas(tx, quotas, request, trace_id, at)
        if refusal is not None:
            return refusal
        refusal, locks = _check_locks(tx, concurrency, request, trace_id, at)
        if refusal is not None:
            return refusal
        if request.check_mode:
            return QuotaResult(True, 'within the quotas and concurrency limits (check mode: nothing is counted)')
        for scope in runs:
            tx.execute('INSERT INTO governance_runs (scope, trace_id, at) VALUES (?, ?, ?)', (scope, trace_id, at))
        for scope, ttl in locks:
            tx.execute('INSERT INTO governance_locks (scope, trace_id, user_name, since, expires) VALUES (?, ?, ?, ?, ?)',
                       (scope, trace_id, request.user, at, at + ttl))
    return QuotaResult(True, 'within the quotas and concurrency limits')


def _check_quotas(tx: Transaction, quotas: t.Sequence[QuotaRule], request: Request, trace_id: str,
                  at: float) -> tuple[QuotaResult | None, list[str]]:
    runs: list[str] = []
    for rule in quotas:
        if request.operation not in rule.operations:
            continue
        scope = _scope('quota', request.operation, rule.per, request)
        window = rule.window.total_seconds()
        tx.execute('DELETE FROM governance_runs WHERE scope = ? AND at <= ?', (scope, at - window))
        if tx.execute('SELECT 1 FROM governance_runs WHERE scope = ? AND trace_id = ?', (scope, trace_id)):
            continue
        times = [row[0] for row in tx.execute('SELECT at FROM governance_runs WHERE scope = ? ORDER BY at', (scope,))]
        if len(times) >= rule.max_runs:
            retry = times[len(times) - rule.max_runs] + window
            seconds = max(1, int(retry - at + 0.999))
            return QuotaResult(False, f'the quota of {request.operation} is used: {rule.max_runs} runs per {_window(rule.window)} '
                                      f'{_described(rule.per, request)}; retry after {_shown(retry)} (in {seconds} s)',
                               retry_after=_utc(retry)), []
        runs.append(scope)
    return None, runs


def _check_locks(tx: Transaction, concurrency: t.Sequence[ConcurrencyRule], request: Request, trace_id: str,
                 at: float) -> tuple[QuotaResult | None, list[tuple[str, float]]]:
    locks: list[tuple[str, float]] = []
    for rule in concurrency:
        if request.operation not in rule.operations:
            continue
        scope = _scope('lock', request.operation, rule.per, request)
        tx.execute('DELETE FROM governance_locks WHERE scope = ? AND expires <= ?', (scope, at))
        if tx.execute('SELECT 1 FROM governance_locks WHERE scope = ? AND trace_id = ?', (scope, trace_id)):
            continue
        holders = tx.execute('SELECT user_name, trace_id, since, expires FROM governance_locks WHERE scope = ? ORDER BY since', (scope,))
        if len(holders) >= rule.max:
            user, holder_trace, since, expires = holders[0]
            holder = f'{user} (run {holder_trace})'
            return QuotaResult(False, f'{request.operation} already runs {rule.max} time(s) {_described(rule.per, request)}: held by '
                                      f'{holder} since {_shown(since)}; the lock expires at {_shown(expires)} at the latest',
                               retry_after=_utc(expires), lock_holder=holder), []
        locks.append((scope, rule.lock_ttl.total_seconds()))
    return None, locks


def _window(window: datetime.timedelta) -> str:
    seconds = int(window.total_seconds())
    for unit, size in (('d', 86400), ('h', 3600), ('m', 60)):
        if seconds % size == 0:
            return f'{seconds // size}{unit}'
    return f'{seconds}s'


def release(store: Store, request: Request, trace_id: str) -> None:
    """Release the concurrency locks of the run ``trace_id`` (the end of the run)."""
    _text(trace_id, 'the trace id')
    if request.check_mode:
        return
    with store.transaction() as tx:
        tx.execute('DELETE FROM governance_locks WHERE trace_id = ? AND scope LIKE ?', (trace_id, f'lock|{request.operation}|%'))


def locked_out(store: Store, rule: AntiAbuse, user: str, now: datetime.datetime) -> str | None:
    """The reason ``user`` is locked out, with the end of the lock-out, or None."""
    _text(user, 'the user')
    at = _epoch(now)
    with store.transaction() as tx:
        rows = tx.execute('SELECT until FROM governance_lockouts WHERE user_name = ? AND until > ?', (user, at))
    if not rows:
        return None
    until = float(rows[0][0])
    return (f'{user} is locked out after {rule.max_denials} denied requests within {_window(rule.window)}, until {_shown(until)} '
            f'(in {max(1, int(until - at + 0.999))} s)')


def record_denial(store: Store, rule: AntiAbuse, user: str, trace_id: str, now: datetime.datetime) -> str | None:
    """Count a denial of ``user`` (once per run); the lock-out reason, with its end, when this denial locks the user out."""
    _text(user, 'the user')
    _text(trace_id, 'the trace id')
    at = _epoch(now)
    window = rule.window.total_seconds()
    with store.transaction() as tx:
        tx.execute('DELETE FROM governance_denials WHERE at <= ?', (at - window,))
        tx.execute('DELETE FROM governance_lockouts WHERE until <= ?', (at,))
        if not tx.execute('SELECT 1 FROM governance_denials WHERE user_name = ? AND trace_id = ?', (user, trace_id)):
            tx.execute('INSERT INTO governance_denials (user_name, trace_id, at) VALUES (?, ?, ?)', (user, trace_id, at))
        count = tx.execute('SELECT COUNT(*) FROM governance_denials WHERE user_name = ?', (user,))[0][0]
        if int(count) < rule.max_denials or tx.execute('SELECT 1 FROM governance_lockouts WHERE user_name = ?', (user,)):
            return None
        until = at + rule.lockout.total_seconds()
        tx.execute('INSERT INTO governance_lockouts (user_name, since, until) VALUES (?, ?, ?)', (user, at, until))
        tx.execute('DELETE FROM governance_denials WHERE user_name = ?', (user,))
    return (f'{user} is now locked out after {rule.max_denials} denied requests within {_window(rule.window)}, until {_shown(until)} '
            f'(in {int(rule.lockout.total_seconds())} s)')
