# Copyright (c) Dihya ops maintainers
# GNU General Public License v3.0+ (see LICENSES/GPL-3.0-or-later.txt or https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later

"""Four-eyes approvals on both stores: every refusal, consumption once, two concurrent consumers, check mode."""

from __future__ import annotations

import dataclasses
import datetime
import json
import os
import subprocess
import sys

import pytest

from ansible_collections.dihya.ops.plugins.action import approve
from ansible_collections.dihya.ops.plugins.plugin_utils import _approval, _policy, _run_context
from ansible_collections.dihya.ops.plugins.plugin_utils._approval import ApprovalError, grant, require
from ansible_collections.dihya.ops.plugins.plugin_utils._governance_store import open_store
from ansible_collections.dihya.ops.tests.unit.plugins.action import test_authorise

pytestmark = pytest.mark.usefixtures("plugin_loader")

NOW = datetime.datetime(2026, 12, 3, 10, 0, tzinfo=datetime.UTC)
KEY = b'k' * 32
POLICY = _policy.parse('''version: 1
roles:
  support: {operations: ["rgpd.*"], environments: all}
  dpo: {operations: ["rgpd.*"], environments: all, approve: [rgpd.erase, rgpd.anonymise]}
  dpo_fast: {operations: [audit], environments: all, approve: [update_dependencies]}
bindings:
  - {users: [bob], roles: [support], tenants: [acme]}
  - {users: [dana], roles: [dpo], tenants: [acme]}
  - {users: [bob], roles: [dpo], tenants: [globex]}
  - {users: [dana], roles: [dpo_fast], tenants: all}
approvals:
  - {operations: [rgpd.erase], environments: all}
  - {operations: [update_dependencies], environments: [prod], max_age: 1h}
''')
ERASE = _policy.Request(user='bob', operation='rgpd.erase', tenant='acme', environment='prod', check_mode=False)
PARAMS = _policy.params_hash({'subject': 'user-42'})


@pytest.fixture(name='store')
def fixture_store(store_config):
    store = open_store(store_config)
    yield store
    store.close()


def granted(store, request=ERASE, approver='dana', params=PARAMS, lifetime=datetime.timedelta(hours=2)):
    return grant(store, KEY, POLICY, approver, request, params, NOW, lifetime)


def test_approved_once_then_refused(store):
    record = granted(store)
    assert record.approval_id.startswith('apr-') and record.approver == 'dana' and record.expires == '2026-12-03T12:00:00Z'
    first = require(store, KEY, ERASE, record.approval_id, PARAMS, 'run-1', NOW)
    assert first.allowed and first.approver == 'dana'
    assert require(store, KEY, ERASE, record.approval_id, PARAMS, 'run-1', NOW).allowed  # the same run again
    again = require(store, KEY, ERASE, record.approval_id, PARAMS, 'run-2', NOW)
    assert not again.allowed and 'already used by the run run-1' in again.reason


def test_check_mode_does_not_consume(store):
    record = granted(store)
    dry = require(store, KEY, dataclasses.replace(ERASE, check_mode=True), record.approval_id, PARAMS, 'dry', NOW)
    assert dry.allowed and 'not consumed' in dry.reason
    assert require(store, KEY, ERASE, record.approval_id, PARAMS, 'real', NOW).allowed


@pytest.mark.parametrize(('change', 'message'), [
    ({'tenant': 'globex'}, 'another tenant'),
    ({'operation': 'rgpd.anonymise'}, 'another operation'),
    ({'environment': 'dev'}, 'another environment'),
    ({'user': 'carol'}, 'another requester'),
])
def test_bound_to_the_request(store, change, message):
    record = granted(store)
    answer = require(store, KEY, dataclasses.replace(ERASE, **change), record.approval_id, PARAMS, 'run', NOW)
    assert not answer.allowed and message in answer.reason


def test_changed_parameters_missing_expired_forged(store):
    record = granted(store)
    changed = require(store, KEY, ERASE, record.approval_id, _policy.params_hash({'subject': 'user-43'}), 'run', NOW)
    assert not changed.allowed and 'another parameters' in changed.reason
    missing = require(store, KEY, ERASE, None, PARAMS, 'run', NOW)
    assert not missing.allowed and 'dihya.ops.approve' in missing.reason
    unknown = require(store, KEY, ERASE, 'apr-' + '0' * 32, PARAMS, 'run', NOW)
    assert not unknown.allowed and 'there is no approval' in unknown.reason
    for hostile in ('../etc/passwd', "apr-'; DROP TABLE x; --", 'x' * 10000):
        assert 'not one dihya.ops.approve writes' in require(store, KEY, ERASE, hostile, PARAMS, 'run', NOW).reason
    expired = require(store, KEY, ERASE, record.approval_id, PARAMS, 'run', NOW + datetime.timedelta(hours=2))
    assert not expired.allowed and 'expired at 2026-12-03T12:00:00Z' in expired.reason
    forged = require(store, b'another key of 32 bytes.........', ERASE, record.approval_id, PARAMS, 'run', NOW)
    assert not forged.allowed and 'no valid signature' in forged.reason
    with store.transaction() as tx:
        text = tx.execute('SELECT record FROM governance_approvals WHERE approval_id = ?', (record.approval_id,))[0][0]
        tx.execute('UPDATE governance_approvals SET record = ? WHERE approval_id = ?',
                   (text.replace('"tenant":"acme"', '"tenant":"globex"'), record.approval_id))
    tampered = require(store, KEY, dataclasses.replace(ERASE, tenant='globex'), record.approval_id, PARAMS, 'run', NOW)
    assert not tampered.allowed and 'no valid signature' in tampered.reason
    nokey = require(store, b'', ERASE, record.approval_id, PARAMS, 'run', NOW)
    assert not nokey.allowed and 'dihya_ops_approval_key' in nokey.reason


@pytest.mark.parametrize(('approver', 'request_', 'lifetime', 'message'), [
    ('bob', ERASE, datetime.timedelta(hours=1), 'must not be the requester'),
    ('carol', ERASE, datetime.timedelta(hours=1), 'holds no role that may approve'),
    ('bob', dataclasses.replace(ERASE, user='eve'), datetime.timedelta(hours=1), 'holds no role that may approve rgpd.erase for tenant acme'),
    ('dana', dataclasses.replace(ERASE, tenant='globex'), datetime.timedelta(hours=1), 'holds no role'),
    ('dana', ERASE, datetime.timedelta(days=90), 'at most 30 days'),
    ('dana', ERASE, datetime.timedelta(0), 'must be positive'),
    ('dana', _policy.Request('bob', 'update_dependencies', 'acme', 'prod', False), datetime.timedelta(hours=2), 'at most 3600 s'),
    ('dana', dataclasses.replace(ERASE, operation='rm -rf'), datetime.timedelta(hours=1), 'not an operation'),
    ('dana', dataclasses.replace(ERASE, tenant='x' * 5000), datetime.timedelta(hours=1), 'the tenant must be'),
    ('dana', dataclasses.replace(ERASE, user=42), datetime.timedelta(hours=1), 'the requester must be'),
    (['dana'], ERASE, datetime.timedelta(hours=1), 'the approver must be'),
])
def test_refused_grants_write_nothing(store, approver, request_, lifetime, message):
    with pytest.raises(ApprovalError, match=message):
        grant(store, KEY, POLICY, approver, request_, PARAMS, NOW, lifetime)
    with store.transaction() as tx:
        assert tx.execute('SELECT COUNT(*) FROM governance_approvals') == [(0,)]


def test_grant_needs_a_key_and_a_hash(store):
    with pytest.raises(ApprovalError, match='at least 16 bytes'):
        grant(store, b'short', POLICY, 'dana', ERASE, PARAMS, NOW)
    with pytest.raises(ApprovalError, match='SHA-256'):
        grant(store, KEY, POLICY, 'dana', ERASE, '../' * 30, NOW)


CONSUMER = '''
import datetime, json, sys
from ansible_collections.dihya.ops.plugins.action import approve
from ansible_collections.dihya.ops.plugins.plugin_utils import _approval, _policy, _run_context
from ansible_collections.dihya.ops.plugins.plugin_utils._governance_store import open_store
config, approval_id, trace, params = json.loads(sys.argv[1]), sys.argv[2], sys.argv[3], sys.argv[4]
store = open_store(config)
request = _policy.Request('bob', 'rgpd.erase', 'acme', 'prod', False)
now = datetime.datetime(2026, 12, 3, 10, 0, tzinfo=datetime.UTC)
print(json.dumps(_approval.require(store, b'k' * 32, request, approval_id, params, trace, now).allowed))
'''


def test_concurrent_consumers_exactly_one_wins(store, store_config):
    record = granted(store)
    env = dict(os.environ, PYTHONPATH=os.pathsep.join(p for p in sys.path if p))
    runs = [subprocess.Popen([sys.executable, '-c', CONSUMER, json.dumps(store_config), record.approval_id, f'race-{index}', PARAMS],
                             stdout=subprocess.PIPE, text=True, env=env) for index in range(6)]
    answers = [json.loads(run.communicate(timeout=120)[0]) for run in runs]
    assert sorted(answers) == [False] * 5 + [True]
    assert _approval.APPROVAL_ID.match(record.approval_id)


# --- the dihya.ops.approve and dihya.ops.authorise actions together, on a SQLite store --------------------------------

ACTION_POLICY = '''version: 1
roles:
  support: {operations: ["rgpd.*"], environments: all}
  dpo: {operations: [audit], environments: all, approve: [rgpd.erase]}
bindings:
  - {users: [bob], roles: [support], tenants: [acme]}
  - {users: [dana], roles: [dpo], tenants: [acme]}
anti_abuse: {max_denials: 50, window: 15m, lockout: 30m}
'''


def run_approve(args, variables, check_mode=False):
    from ansible.parsing.dataloader import DataLoader  # pylint: disable=import-outside-toplevel
    from ansible.playbook.play_context import PlayContext  # pylint: disable=import-outside-toplevel
    from ansible.playbook.task import Task  # pylint: disable=import-outside-toplevel
    from ansible.plugins.loader import connection_loader  # pylint: disable=import-outside-toplevel
    from ansible.template import Templar  # pylint: disable=import-outside-toplevel

    loader = DataLoader()
    task = Task.load({'action': 'dihya.ops.approve', 'args': args}, loader=loader)
    task_vars = dict(variables, inventory_hostname='localhost')
    play_context = PlayContext()
    play_context.check_mode = check_mode
    action = approve.ActionModule(task, connection_loader.get('ansible.builtin.local', play_context), play_context, loader,
                                  Templar(loader=loader, variables=task_vars), None)
    return action.run(task_vars=task_vars)


def test_approve_then_erase_once(tmp_path, monkeypatch, controller_policy):
    controller_policy(ACTION_POLICY)
    variables = {'dihya_ops_governance_store': {'path': str(tmp_path / 'store.sqlite3')}, 'dihya_ops_approval_key': 'v' * 32}
    args = {'operation': 'rgpd', 'params': {'subject': 'user-42'}}
    hosts = {'web-1': {'dihya_ops_tenant': 'acme', 'dihya_environment': 'prod', 'rgpd_operation': 'erase'}}

    monkeypatch.setattr(_run_context, '_RUN', {'trace_id': '1' * 32})
    monkeypatch.setenv('DIHYA_OPS_USER', 'bob')
    denied = test_authorise.run_action(hosts, args, variables=variables)
    assert denied['failed'] and 'needs a four-eyes approval' in denied['msg']
    mine = run_approve({'requester': 'bob', 'operation': 'rgpd.erase', 'tenant': 'acme', 'environment': 'prod',
                        'params': {'subject': 'user-42'}}, variables)
    assert mine['failed'] and 'must not be the requester' in mine['msg']

    monkeypatch.setenv('DIHYA_OPS_USER', 'dana')
    request = {'requester': 'bob', 'operation': 'rgpd.erase', 'tenant': 'acme', 'environment': 'prod', 'params': {'subject': 'user-42'},
               'lifetime': '1h'}
    dry = run_approve(request, variables, check_mode=True)
    assert not dry.get('failed') and dry['approval_id'] is None and not dry['changed']
    given = run_approve(request, variables)
    assert given['changed'] and given['approver'] == 'dana' and 'v' * 32 not in str(given)
    assert run_approve(dict(request, lifetime='soon'), variables)['failed']

    monkeypatch.setenv('DIHYA_OPS_USER', 'bob')
    approved = dict(args, approval_id=given['approval_id'])
    changed = test_authorise.run_action(hosts, dict(approved, params={'subject': 'user-43'}), variables=variables)
    assert changed['failed'] and 'another parameters' in changed['msg']
    assert not test_authorise.run_action(hosts, approved, variables=variables).get('failed')
    monkeypatch.setattr(_run_context, '_RUN', {'trace_id': '2' * 32})
    again = test_authorise.run_action(hosts, approved, variables=variables)
    assert again['failed'] and 'already used by the run' in again['msg']
    broken = test_authorise.run_action(hosts, approved, variables=dict(variables, dihya_ops_governance_store={'kind': 'mysql'}))
    assert broken['failed'] and 'the governance store cannot decide' in broken['msg']


def test_an_rgpd_request_is_bound_to_its_hosts_subject(tmp_path, monkeypatch, controller_policy):
    """Without params, the approval of an RGPD request is bound to rgpd_subject_id, as approve_params names it."""
    controller_policy(ACTION_POLICY)
    variables = {'dihya_ops_governance_store': {'path': str(tmp_path / 'store.sqlite3')}, 'dihya_ops_approval_key': 'v' * 32}
    host = {'dihya_ops_tenant': 'acme', 'dihya_environment': 'prod', 'rgpd_operation': 'erase', 'rgpd_subject_id': 'user-42'}
    monkeypatch.setattr(_run_context, '_RUN', {'trace_id': '3' * 32})
    monkeypatch.setenv('DIHYA_OPS_USER', 'dana')
    given = run_approve({'requester': 'bob', 'operation': 'rgpd.erase', 'tenant': 'acme', 'environment': 'prod',
                         'params': {'subject': 'user-42'}}, variables)
    assert given['changed'], given
    monkeypatch.setenv('DIHYA_OPS_USER', 'bob')
    approval = {'operation': 'rgpd', 'approval_id': given['approval_id']}
    other = test_authorise.run_action({'web-1': dict(host, rgpd_subject_id='user-43')}, approval, variables=variables)
    assert other['failed'] and 'another parameters' in other['msg']
    split = test_authorise.run_action({'web-1': host, 'web-2': dict(host, rgpd_subject_id="user-43'; --")}, approval, variables=variables)
    assert split['failed'] and 'name different subjects' in split['msg'] and 'user-4' not in split['msg']
    assert not test_authorise.run_action({'web-1': host, 'web-2': dict(host)}, approval, variables=variables).get('failed')
