# Copyright (c) Dihya ops maintainers
# GNU General Public License v3.0+ (see LICENSES/GPL-3.0-or-later.txt or https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later

"""Tests of the dihya.ops.rgpd module, run in-process through the module harness on real databases."""

from __future__ import annotations

import json
import os
import pathlib
import shutil
import socket

import pytest

from ansible_collections.dihya.ops.plugins.module_utils import _audit, _rgpd
from ansible_collections.dihya.ops.plugins.modules import rgpd
from ansible_collections.dihya.ops.tests.unit.plugins import rgpd_fixtures
from ansible_collections.dihya.ops.tests.unit.plugins.modules.utils import run_module
from ansible_collections.dihya.ops.tests.unit.plugins.rgpd_fixtures import DEMO_DATA_MAP, Backend

sqlite_template, pg_template, backend = rgpd_fixtures.make_fixtures('module', kinds=('sqlite', 'postgresql'))

PSEUDONYM_KEY = 'module-test-pseudonym-key-0123456789'
AUDIT_KEY = 'module-test-audit-chain-key-0123456789'
ENCRYPTION_KEY = '11' * 32


@pytest.fixture
def sqlite_db(tmp_path, sqlite_template):
    path = str(tmp_path / 'app.db')
    shutil.copyfile(sqlite_template, path)
    return Backend('sqlite', path=path)


def args(backend, operation, **extra):
    base = {'operation': operation, 'data_map_file': DEMO_DATA_MAP, 'tenant': 'acme', 'subject_id': '3', 'pseudonym_key': PSEUDONYM_KEY}
    base.update(backend.module_args())
    base.update(extra)
    return base


def run(arguments, check_mode=False):
    return run_module(rgpd.main, arguments, check_mode=check_mode)


def no_secrets(result, *secrets):
    text = json.dumps(result)
    for secret in (PSEUDONYM_KEY, AUDIT_KEY, ENCRYPTION_KEY, *secrets):
        assert secret not in text


def audit_records(path):
    with open(path, encoding='utf-8') as handle:
        return [json.loads(line) for line in handle]


def test_inventory_export_erase_replay(backend, tmp_path):
    secrets = (backend.postgres.password,) if backend.postgres else ()
    inventory = run(args(backend, 'inventory'))
    assert inventory['changed'] is False and inventory['subject_found'] is True and inventory['total_rows'] > 0
    assert inventory['subject'] == _rgpd.pseudonym('3', PSEUDONYM_KEY.encode()) == _rgpd.pseudonym(3, PSEUDONYM_KEY.encode())
    dest = str(tmp_path / 'export.zip')
    checked = run(args(backend, 'export', dest=dest, encryption_key=ENCRYPTION_KEY), check_mode=True)
    assert checked['changed'] is True and not os.path.exists(dest) and checked['archive'] == {'path': dest, 'encrypted': True}
    exported = run(args(backend, 'export', dest=dest, encryption_key=ENCRYPTION_KEY))
    assert exported['archive']['encrypted'] is True and exported['archive']['sha256'] == _rgpd.file_sha256(dest)
    ledger = str(tmp_path / 'ledger.jsonl')
    saved = rgpd_fixtures.backup(backend, tmp_path)
    planned = run(args(backend, 'erase', ledger_file=ledger), check_mode=True)
    assert planned['changed'] is True and 'ledger_entry_id' not in planned and not os.path.exists(ledger)
    erased = run(args(backend, 'erase', ledger_file=ledger))
    assert erased['changed'] is True and len(erased['ledger_entry_id']) == 32
    assert run(args(backend, 'erase', ledger_file=ledger))['changed'] is False
    assert run(args(backend, 'inventory'))['total_rows'] == 0
    rgpd_fixtures.restore(backend, saved)
    replayed = run(args(backend, 'replay', ledger_file=ledger, subject_id=None, tenant=None))
    assert replayed['changed'] is True and replayed['erased'] == 1
    assert run(args(backend, 'replay', ledger_file=ledger, subject_id=None, tenant=None))['changed'] is False
    for result in (inventory, checked, exported, planned, erased, replayed):
        no_secrets(result, *secrets)


def test_audit_events_are_written_for_success_and_failure(sqlite_db, tmp_path):
    log = str(tmp_path / 'audit.log')
    audit = {'audit_log': log, 'audit_key': AUDIT_KEY, 'audit_user': 'dpo@example.com', 'trace_id': 'cd' * 16}
    result = run(args(sqlite_db, 'erase', ledger_file=str(tmp_path / 'ledger.jsonl'), **audit))
    assert result['trace_id'] == 'cd' * 16
    run(args(sqlite_db, 'inventory', **audit), check_mode=True)  # check mode writes no audit event
    failed = run(args(sqlite_db, 'erase', subject_id="'; DROP TABLE users; --", ledger_file=str(tmp_path / 'ledger.jsonl'), **audit))
    assert failed['failed'] is True and 'must be an integer' in failed['msg']
    records = audit_records(log)
    assert [(record['event']['action'], record['event']['category'], record['event']['outcome']) for record in records] == [
        ('rgpd.erase', 'rgpd', 'success'), ('rgpd.erase', 'rgpd', 'failure')]
    first = records[0]
    assert first['trace']['id'] == 'cd' * 16 and first['organization']['id'] == 'acme'
    assert first['dihya']['details']['subject'] == result['subject'] and first['dihya']['details']['ledger_entry_id'] == result['ledger_entry_id']
    assert first['user']['id'].startswith('hmac:') and 'dpo@example.com' not in pathlib.Path(log).read_text(encoding='utf-8')
    assert 'DROP TABLE' not in records[1]['dihya']['details']['error']
    assert _audit.verify(log, AUDIT_KEY.encode()).ok
    no_secrets(result)


def test_the_audit_event_names_the_host_it_is_given(sqlite_db, tmp_path):
    log = str(tmp_path / 'audit.log')
    audit = {'audit_log': log, 'audit_key': AUDIT_KEY, 'audit_user': 'dpo@example.com'}
    run(args(sqlite_db, 'inventory', audit_host='web-03', **audit))
    run(args(sqlite_db, 'inventory', **audit))
    named, default = audit_records(log)
    assert named['host']['name'] == 'web-03'
    assert default['host']['name'] == socket.gethostname()


def test_audit_write_failure_is_a_warning(sqlite_db, tmp_path):
    result = run(args(sqlite_db, 'inventory', audit_log=str(tmp_path / 'missing' / 'audit.log'), audit_key=AUDIT_KEY))
    assert 'failed' not in result and result['warnings'][0].startswith('audit event not written')


def test_anonymise_and_consent(sqlite_db):
    assert run(args(sqlite_db, 'anonymise'), check_mode=True)['changed'] is True
    assert run(args(sqlite_db, 'anonymise'))['changed'] is True
    assert run(args(sqlite_db, 'anonymise'))['changed'] is False
    status = run(args(sqlite_db, 'consent'))
    assert status['changed'] is False and 'newsletter' in status['consents']
    action = 'withdraw' if status['consents']['newsletter']['granted'] else 'grant'
    done = run(args(sqlite_db, 'consent', consent_action=action, purpose='newsletter', source='preference_center', consent_time='2031-01-01T00:00:00Z'))
    assert done['changed'] is True and done['consent']['source'] == 'preference_center' and done['consent']['at'] == '2031-01-01T00:00:00Z'
    assert run(args(sqlite_db, 'consent', consent_action=action, purpose='newsletter'))['changed'] is False
    assert run(args(sqlite_db, 'consent', consent_action='grant', consent_time=''))['msg'] == 'consent_time must not be empty'


def test_inline_data_map_and_errors(sqlite_db, tmp_path):
    import yaml  # pylint: disable=import-outside-toplevel
    with open(DEMO_DATA_MAP, encoding='utf-8') as handle:
        data = yaml.safe_load(handle)
    inline = {key: value for key, value in args(sqlite_db, 'inventory').items() if key != 'data_map_file'}
    assert run({**inline, 'data_map': data})['subject_found'] is True
    data['tables']['ghost'] = {'subject_columns': ['user_id']}
    failed = run({**inline, 'data_map': data})
    assert failed['failed'] is True and "table 'ghost' does not exist" in failed['msg']
    data['tables']['ghost'] = {'subject_columns': ['user_id; DROP TABLE users']}
    assert 'not a valid SQL identifier' in run({**inline, 'data_map': data})['msg']
    missing = run(args(sqlite_db, 'inventory', database=str(tmp_path / 'nope.db')))
    assert 'does not exist' in missing['msg']
    assert 'ledger_file' in run(args(sqlite_db, 'replay'))['msg']
    assert 'dest' in run(args(sqlite_db, 'export'))['msg']
    os_error = run(args(sqlite_db, 'erase', ledger_file=str(tmp_path / 'no' / 'ledger.jsonl')))
    assert os_error['failed'] is True and 'ledger.jsonl' in os_error['msg']
    assert run(args(sqlite_db, 'inventory'))['total_rows'] > 0


def test_postgresql_credentials_never_shown(postgres):
    wrong = postgres.dsn(password='Wr0ng-s3cret-pw')
    result = run({'operation': 'inventory', 'dsn': wrong, 'data_map_file': DEMO_DATA_MAP, 'tenant': 'acme', 'subject_id': '3',
                  'pseudonym_key': PSEUDONYM_KEY})
    assert result['failed'] is True and 'cannot connect to PostgreSQL' in result['msg']
    no_secrets(result, 'Wr0ng-s3cret-pw', postgres.password)


def test_check_mode_export_to_a_folder_still_to_be_created_and_double_slash_database(sqlite_db, tmp_path):
    dest = str(tmp_path / 'exports' / 'acme-3.zip')
    checked = run(args(sqlite_db, 'export', dest=dest, database='/' + sqlite_db.path), check_mode=True)
    assert checked['changed'] is True and checked['archive'] == {'path': dest, 'encrypted': False} and checked['tables']['users']['rows'] == 1
    assert not os.path.exists(tmp_path / 'exports')
    os.mkdir(tmp_path / 'exports')
    exported = run(args(sqlite_db, 'export', dest=dest, database='/' + sqlite_db.path))
    assert exported['archive']['sha256'] == _rgpd.file_sha256(dest) and os.listdir(tmp_path / 'exports') == ['acme-3.zip']
