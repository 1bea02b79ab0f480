# Copyright (c) Dihya ops maintainers
# GNU General Public License v3.0+ (see LICENSES/GPL-3.0-or-later.txt or https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later

"""Quotas, concurrency locks and lock-outs on both stores, with concurrent processes and a SIGKILLed lock holder."""

from __future__ import annotations

import datetime
import json
import os
import signal
import subprocess
import sys
import typing as t

import pytest

from ansible_collections.dihya.ops.plugins.plugin_utils import _quota, _run_context
from ansible_collections.dihya.ops.plugins.plugin_utils._governance_store import open_store
from ansible_collections.dihya.ops.plugins.plugin_utils._policy import AntiAbuse, ConcurrencyRule, QuotaRule, Request
from ansible_collections.dihya.ops.tests.unit.plugins.action import test_authorise

NOW = datetime.datetime(2026, 12, 3, 10, 0, tzinfo=datetime.UTC)
HOUR = datetime.timedelta(hours=1)
EXPORT = QuotaRule(operations=frozenset({'rgpd.export'}), per='tenant', max_runs=5, window=HOUR)
ONE_AT_A_TIME = ConcurrencyRule(operations=frozenset({'update_dependencies'}), per='environment', max=1, lock_ttl=datetime.timedelta(seconds=30))
ABUSE = AntiAbuse(max_denials=3, window=datetime.timedelta(minutes=15), lockout=datetime.timedelta(minutes=30))


def request_for(operation='rgpd.export', user='bob', tenant='acme', environment='prod', check_mode=False):
    return Request(user=user, operation=operation, tenant=tenant, environment=environment, check_mode=check_mode)


CHILD = '''
import datetime, json, sys, time
from ansible_collections.dihya.ops.plugins.plugin_utils import _quota
from ansible_collections.dihya.ops.plugins.plugin_utils._governance_store import open_store
from ansible_collections.dihya.ops.plugins.plugin_utils._policy import ConcurrencyRule, QuotaRule, Request
config, trace, mode = json.loads(sys.argv[1]), sys.argv[2], sys.argv[3]
store = open_store(config)
now = datetime.datetime.now(datetime.UTC)
if mode == 'quota':
    rule = QuotaRule(operations=frozenset({'rgpd.export'}), per='tenant', max_runs=5, window=datetime.timedelta(hours=1))
    answer = _quota.enforce(store, (rule,), (), Request('bob', 'rgpd.export', 'acme', 'prod', False), trace, now)
else:
    rule = ConcurrencyRule(operations=frozenset({'update_dependencies'}), per='environment', max=1, lock_ttl=datetime.timedelta(seconds=2))
    answer = _quota.enforce(store, (), (rule,), Request('carol', 'update_dependencies', None, 'prod', False), trace, now)
print(json.dumps({'allowed': answer.allowed, 'reason': answer.reason, 'retry': answer.retry_after is not None}), flush=True)
if mode == 'hold':
    time.sleep(60)
'''


def child(config, trace, mode):
    env = dict(os.environ, PYTHONPATH=os.pathsep.join(p for p in sys.path if p))
    return subprocess.Popen([sys.executable, '-c', CHILD, json.dumps(config), trace, mode], stdout=subprocess.PIPE, text=True, env=env)


def test_sixteen_concurrent_runs_against_five(store_config):
    open_store(store_config).close()
    runs = [child(store_config, f'trace-{index:02d}', 'quota') for index in range(16)]
    answers = []
    for run in runs:
        out, dummy = run.communicate(timeout=120)
        assert run.returncode == 0
        answers.append(json.loads(out))
    allowed = [answer for answer in answers if answer['allowed']]
    denied = [answer for answer in answers if not answer['allowed']]
    assert len(allowed) == 5 and len(denied) == 11
    assert all(answer['retry'] and 'retry after' in answer['reason'] for answer in denied)
    store = open_store(store_config)
    with store.transaction() as tx:
        assert tx.execute('SELECT COUNT(*) FROM governance_runs') == [(5,)]
    store.close()


def test_a_killed_holder_lock_expires(store_config):
    holder = child(store_config, 'trace-holder', 'hold')
    try:
        assert json.loads(holder.stdout.readline())['allowed']  # type: ignore[union-attr]
        os.kill(holder.pid, signal.SIGKILL)
        holder.wait(timeout=30)
    finally:
        if holder.poll() is None:
            holder.kill()
            holder.wait(timeout=30)
        holder.stdout.close()  # type: ignore[union-attr]
    store = open_store(store_config)
    now = datetime.datetime.now(datetime.UTC)
    rule = ConcurrencyRule(operations=frozenset({'update_dependencies'}), per='environment', max=1, lock_ttl=datetime.timedelta(seconds=2))
    refused = _quota.enforce(store, (), (rule,), request_for('update_dependencies', user='dave'), 'trace-next', now)
    assert not refused.allowed and refused.lock_holder == 'carol (run trace-holder)' and 'since' in refused.reason
    later = _quota.enforce(store, (), (rule,), request_for('update_dependencies', user='dave'), 'trace-next', now + datetime.timedelta(seconds=3))
    assert later.allowed
    store.close()


def test_window_slides_and_retry_time(store_config):
    store = open_store(store_config)
    for index in range(5):
        assert _quota.enforce(store, (EXPORT,), (), request_for(), f't{index}', NOW + datetime.timedelta(minutes=index)).allowed
    refused = _quota.enforce(store, (EXPORT,), (), request_for(), 't5', NOW + datetime.timedelta(minutes=10))
    assert not refused.allowed and refused.retry_after == NOW + HOUR
    assert 'retry after 2026-12-03T11:00:00Z (in 3000 s)' in refused.reason
    assert _quota.enforce(store, (EXPORT,), (), request_for(tenant='other'), 't5', NOW + datetime.timedelta(minutes=10)).allowed
    assert _quota.enforce(store, (EXPORT,), (), request_for(), 't5', NOW + HOUR).allowed
    store.close()


def test_same_run_counts_once_and_check_mode_counts_nothing(store_config):
    store = open_store(store_config)
    for dummy in range(10):
        assert _quota.enforce(store, (EXPORT,), (), request_for(), 'one-run', NOW).allowed
    for index in range(10):
        answer = _quota.enforce(store, (EXPORT,), (), request_for(check_mode=True), f'dry-{index}', NOW)
        assert answer.allowed and 'check mode' in answer.reason
    with store.transaction() as tx:
        assert tx.execute('SELECT COUNT(*) FROM governance_runs') == [(1,)]
    store.close()


def test_concurrency_lock_release_and_idempotence(store_config):
    store = open_store(store_config)
    first = request_for('update_dependencies', user='alice')
    assert _quota.enforce(store, (), (ONE_AT_A_TIME,), first, 'run-a', NOW).allowed
    assert _quota.enforce(store, (), (ONE_AT_A_TIME,), first, 'run-a', NOW).allowed
    other = request_for('update_dependencies', user='bob')
    dry = _quota.enforce(store, (), (ONE_AT_A_TIME,), request_for('update_dependencies', user='bob', check_mode=True), 'run-b', NOW)
    assert not dry.allowed and 'alice (run run-a)' in dry.reason
    assert _quota.enforce(store, (), (ONE_AT_A_TIME,), request_for('update_dependencies', environment='dev'), 'run-c', NOW).allowed
    _quota.release(store, first, 'run-a')
    assert _quota.enforce(store, (), (ONE_AT_A_TIME,), other, 'run-b', NOW).allowed
    store.close()


def test_a_refusal_takes_nothing(store_config):
    store = open_store(store_config)
    both = request_for('rgpd.export')
    lock = ConcurrencyRule(operations=frozenset({'rgpd.export'}), per='global', max=1, lock_ttl=HOUR)
    assert _quota.enforce(store, (EXPORT,), (lock,), both, 'holder', NOW).allowed
    assert not _quota.enforce(store, (EXPORT,), (lock,), both, 'second', NOW).allowed
    with store.transaction() as tx:
        assert tx.execute('SELECT COUNT(*) FROM governance_runs') == [(1,)]
    store.close()


def test_lock_out_after_denials(store_config):
    store = open_store(store_config)
    assert _quota.locked_out(store, ABUSE, 'mallory', NOW) is None
    assert _quota.record_denial(store, ABUSE, 'mallory', 'd1', NOW) is None
    assert _quota.record_denial(store, ABUSE, 'mallory', 'd1', NOW) is None  # the same run counts once
    assert _quota.record_denial(store, ABUSE, 'mallory', 'd2', NOW) is None
    locked = _quota.record_denial(store, ABUSE, 'mallory', 'd3', NOW)
    assert locked is not None and 'until 2026-12-03T10:30:00Z' in locked
    reason = _quota.locked_out(store, ABUSE, 'mallory', NOW + datetime.timedelta(minutes=10))
    assert reason is not None and 'in 1200 s' in reason
    assert _quota.locked_out(store, ABUSE, 'bob', NOW) is None
    assert _quota.locked_out(store, ABUSE, 'mallory', NOW + datetime.timedelta(minutes=30)) is None
    store.close()


def test_old_denials_do_not_count(store_config):
    store = open_store(store_config)
    _quota.record_denial(store, ABUSE, 'eve', 'a', NOW)
    _quota.record_denial(store, ABUSE, 'eve', 'b', NOW)
    assert _quota.record_denial(store, ABUSE, 'eve', 'c', NOW + datetime.timedelta(minutes=20)) is None
    store.close()


@pytest.mark.parametrize('bad', [None, '', 'x' * 5000, 42, 'a\0b'])
def test_hostile_input_is_a_clear_error(tmp_path, bad):
    store = open_store({'path': str(tmp_path / 's.sqlite3')})
    with pytest.raises(_quota.QuotaError):
        _quota.enforce(store, (EXPORT,), (), request_for(), bad, NOW)
    with pytest.raises(_quota.QuotaError):
        _quota.locked_out(store, ABUSE, bad, NOW)
    with pytest.raises(_quota.QuotaError):
        _quota.record_denial(store, ABUSE, 'u', bad, NOW)
    with pytest.raises(_quota.QuotaError, match='aware datetime'):
        _quota.enforce(store, (EXPORT,), (), request_for(), 't', NOW.replace(tzinfo=None))
    store.close()


def test_quotes_and_dots_are_data(tmp_path):
    store = open_store({'path': str(tmp_path / 's.sqlite3')})
    odd = request_for(user="o'brien\"; DROP TABLE governance_runs; --", tenant='../../etc')
    assert _quota.enforce(store, (EXPORT,), (), odd, "t'1", NOW).allowed
    with store.transaction() as tx:
        assert tx.execute('SELECT COUNT(*) FROM governance_runs') == [(1,)]
    store.close()


RELEASE_POLICY = '''\
version: 1
roles:
  operator: {operations: [restart_services], environments: all}
bindings:
  - {users: [bob, carol], roles: [operator], tenants: all}
approvals: []
concurrency:
  - {operations: [restart_services], per: global, max: 1, lock_ttl: 1h}
'''


@pytest.mark.usefixtures('plugin_loader')
def test_the_end_of_the_run_releases_its_locks(tmp_path, monkeypatch, controller_policy):
    """dihya.ops.authorise with release: the next run need not wait for the lock's TTL; a dry run releases nothing."""
    controller_policy(RELEASE_POLICY)
    variables = {'dihya_ops_governance_store': {'path': str(tmp_path / 'store.sqlite3')}}
    hosts = {'web-1': {'dihya_environment': 'prod'}, 'web-2': {'dihya_environment': 'prod'}}
    args = {'operation': 'restart_services'}

    def as_run(user: str, trace: str, **extra: t.Any) -> dict[str, t.Any]:
        monkeypatch.setenv('DIHYA_OPS_USER', user)
        monkeypatch.setattr(_run_context, '_RUN', {'trace_id': trace * 32})
        return test_authorise.run_action(hosts, dict(args, **extra), variables=variables)

    first = as_run('bob', '1')
    assert not first.get('failed'), first['msg']
    held = as_run('carol', '2')
    assert held['failed'] and 'bob' not in held['msg'].split('held by')[0]
    assert as_run('carol', '2', release=True)['released'] == ['restart_services']  # carol holds nothing: bob's lock stays
    assert as_run('carol', '2')['failed']
    assert as_run('bob', '1', release=True)['released'] == ['restart_services']
    assert not as_run('carol', '2').get('failed')
    broken = dict(variables, dihya_ops_governance_store={'kind': 'mysql'})
    monkeypatch.setenv('DIHYA_OPS_USER', 'carol')
    gone = test_authorise.run_action(hosts, dict(args, release=True), variables=broken)
    assert not gone.get('failed') and 'expire with their lock_ttl' in ' '.join(gone['warnings'])
