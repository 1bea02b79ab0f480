# Copyright (c) Dihya ops maintainers
# GNU General Public License v3.0+ (see LICENSES/GPL-3.0-or-later.txt or https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later

"""The dihya.ops.rgpd module with a single-tenant data map: no tenant option needed, another tenant refused, the
database's tenant name in results and audit events; a multi-tenant map still needs its tenant."""

from __future__ import annotations

import json
import os

import yaml

from ansible_collections.dihya.ops.plugins.module_utils import _audit
from ansible_collections.dihya.ops.plugins.modules import rgpd
from ansible_collections.dihya.ops.tests.unit.plugins import rgpd_fixtures
from ansible_collections.dihya.ops.tests.unit.plugins.modules.utils import run_module
from ansible_collections.dihya.ops.tests.unit.plugins.rgpd_fixtures import DEMO_DATA_MAP, SINGLE_ROWS, single_tenant_map

single_backend = rgpd_fixtures.make_single_tenant_fixtures('module', kinds=('sqlite', 'postgresql'))
sqlite_template, pg_template, backend = rgpd_fixtures.make_fixtures('module_single', users_per_tenant=2, kinds=('sqlite',))

PSEUDONYM_KEY = 'module-test-pseudonym-key-0123456789'
AUDIT_KEY = 'module-test-audit-chain-key-0123456789'


def args(backend, operation, **extra):
    base = {'operation': operation, 'data_map': single_tenant_map(), 'subject_id': '1', 'pseudonym_key': PSEUDONYM_KEY}
    base.update(backend.module_args())
    base.update(extra)
    return {key: value for key, value in base.items() if value is not None}


def run(arguments, check_mode=False):
    return run_module(rgpd.main, arguments, check_mode=check_mode)


def test_every_operation_without_a_tenant(single_backend, tmp_path):
    before = single_backend.dump()
    inventory = run(args(single_backend, 'inventory'), check_mode=True)
    assert inventory['tenant'] == 'main' and inventory['tables']['message']['sides'] == {'sender_id': 2, 'recipient_id': 1}
    assert inventory['data_map_warnings'] == []
    dest = str(tmp_path / 'ana.zip')
    exported = run(args(single_backend, 'export', dest=dest))
    assert exported['tenant'] == 'main' and os.path.exists(dest)
    ledger = str(tmp_path / 'state' / 'ledger.jsonl')
    os.mkdir(tmp_path / 'state')
    planned = run(args(single_backend, 'erase', ledger_file=ledger), check_mode=True)
    assert planned['changed'] and single_backend.dump() == before and not os.path.exists(ledger)
    erased = run(args(single_backend, 'erase', ledger_file=ledger))
    assert erased['changed'] and erased['tenant'] == 'main'
    replayed = run(args(single_backend, 'replay', ledger_file=ledger, subject_id=None))
    assert replayed['changed'] is False and [item['status'] for item in replayed['replayed']] == ['absent']
    consent = run(args(single_backend, 'consent', subject_id='2', consent_action='grant', purpose='analytics'))
    assert consent['changed'] and consent['tenant'] == 'main'
    for result in (inventory, exported, planned, erased, replayed, consent):
        text = json.dumps(result)
        assert PSEUDONYM_KEY not in text and SINGLE_ROWS['user'][0][5] not in text


def test_another_tenant_is_refused(single_backend):
    for tenant, message in (('acme', "tenant 'acme' is not the tenant of this database"), ('../etc', 'is not a valid tenant name'),
                            ("x' OR '1'='1", 'is not a valid tenant name'), ('y' * 3000, 'is not a valid tenant name')):
        failed = run(args(single_backend, 'inventory', tenant=tenant))
        assert failed['failed'] is True and message in failed['msg'] and len(failed['msg']) < 400
    assert run(args(single_backend, 'inventory', tenant='main'))['tenant'] == 'main'


def test_the_audit_event_names_the_databases_tenant(single_backend, tmp_path):
    log = str(tmp_path / 'audit.log')
    run(args(single_backend, 'inventory', audit_log=log, audit_key=AUDIT_KEY))
    run(args(single_backend, 'inventory', tenant='acme', audit_log=log, audit_key=AUDIT_KEY))
    with open(log, encoding='utf-8') as handle:
        records = [json.loads(line) for line in handle]
    assert [(record['event']['outcome'], record['organization']['id']) for record in records] == [('success', 'main'), ('failure', 'acme')]
    assert _audit.verify(log, AUDIT_KEY.encode()).ok


def test_a_map_file_that_forgets_its_tenancy(single_backend, tmp_path):
    data = single_tenant_map()
    del data['tenancy'], data['tenant']
    path = tmp_path / 'map.yml'
    path.write_text(yaml.safe_dump(data), encoding='utf-8')
    failed = run({**args(single_backend, 'inventory', data_map=None), 'data_map_file': str(path)})
    assert failed['failed'] is True and 'subject.tenant_column: is required' in failed['msg'] and 'tenancy: single' in failed['msg']
    assert 'None is not a valid SQL identifier' not in failed['msg']


def test_a_multi_tenant_map_still_needs_the_tenant(backend):
    failed = run({**args(backend, 'inventory', data_map=None), 'data_map_file': DEMO_DATA_MAP})
    assert failed['failed'] is True and 'tenant is required: the data map is multi-tenant' in failed['msg']
    assert run({**args(backend, 'inventory', data_map=None), 'data_map_file': DEMO_DATA_MAP, 'tenant': 'acme'})['subject_found'] is True
