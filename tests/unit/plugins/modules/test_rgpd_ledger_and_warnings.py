# Copyright (c) Dihya ops maintainers
# GNU General Public License v3.0+ (see LICENSES/GPL-3.0-or-later.txt or https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later

"""dihya.ops.rgpd module: where the erasure ledger goes, replay refusals and data map warnings, on a real SQLite database."""

from __future__ import annotations

import sqlite3

import pytest

from ansible_collections.dihya.ops.plugins.module_utils import _rgpd
from ansible_collections.dihya.ops.plugins.modules import rgpd
from ansible_collections.dihya.ops.tests.unit.plugins import rgpd_fixtures
from ansible_collections.dihya.ops.tests.unit.plugins.modules.utils import run_module
from ansible_collections.dihya.ops.tests.unit.plugins.rgpd_fixtures import DEMO_DATA_MAP

PSEUDONYM_KEY = 'module-test-pseudonym-key-0123456789'


@pytest.fixture
def database(tmp_path):
    return rgpd_fixtures.seeded_database(tmp_path, users_per_tenant=4)


def sql(path, statement, params=()):
    conn = sqlite3.connect(path)
    try:
        with conn:
            return conn.execute(statement, params).fetchall()
    finally:
        conn.close()


def args(database, operation, **extra):
    base = {'operation': operation, 'database': database, 'data_map_file': DEMO_DATA_MAP, 'tenant': 'acme', 'pseudonym_key': PSEUDONYM_KEY}
    base.update(extra)
    return base


def run(arguments, check_mode=False):
    return run_module(rgpd.main, arguments, check_mode=check_mode)


def lone_user(database, email, created_at):
    sql(database, "INSERT INTO users (tenant_id, name, email, created_at) SELECT id, 'Lone', ?, ? FROM tenants WHERE slug = 'acme'", (email, created_at))
    return sql(database, 'SELECT max(id) FROM users')[0][0]


def test_erase_needs_a_ledger_and_keeps_the_table_out_of_the_schema_unless_asked(database, tmp_path):
    user = lone_user(database, 'lone@example.com', '2025-01-01T00:00:00Z')
    refused = run(args(database, 'erase', subject_id=str(user)))
    assert refused['failed'] is True and 'erase needs the erasure ledger file' in refused['msg']
    ledger = str(tmp_path / 'state' / 'ledger.jsonl')
    (tmp_path / 'state').mkdir()
    done = run(args(database, 'erase', subject_id=str(user), ledger_file=ledger))
    assert done['changed'] is True and done['data_map_warnings'] == [] and 'warnings' not in done
    assert not sql(database, "SELECT name FROM sqlite_master WHERE name = ?", (_rgpd.LEDGER_TABLE,))
    other = lone_user(database, 'other@example.com', '2025-01-02T00:00:00Z')
    assert run(args(database, 'erase', subject_id=str(other), ledger_table=True))['changed'] is True
    assert sql(database, f'SELECT count(*) FROM {_rgpd.LEDGER_TABLE}') == [(1,)]


def test_a_ledger_next_to_the_database_is_warned_about(database):
    user = lone_user(database, 'lone@example.com', '2025-01-01T00:00:00Z')
    beside = database.rsplit('/', 1)[0] + '/ledger.jsonl'
    result = run(args(database, 'erase', subject_id=str(user), ledger_file=beside))
    assert result['changed'] is True
    assert any('ledger_file is in the folder of the database' in warning for warning in result['warnings'])


def test_replay_refusals_are_warnings_and_unverified_entries_need_the_option(database, tmp_path):
    ledger = str(tmp_path / 'ledger.jsonl')
    user = lone_user(database, 'lone@example.com', '2025-01-01T00:00:00Z')
    assert run(args(database, 'erase', subject_id=str(user), ledger_file=ledger))['changed'] is True
    newcomer = lone_user(database, 'newcomer@example.com', '2026-01-01T00:00:00Z')
    assert newcomer == user
    _rgpd.append_ledger_file(ledger, {'entry_id': 'legacy', 'tenant': 'acme', 'subject': _rgpd.pseudonym(newcomer, PSEUDONYM_KEY.encode()),
                                      'state': 'committed'})
    planned = run(args(database, 'replay', ledger_file=ledger), check_mode=True)
    assert [item['status'] for item in planned['replayed']] == ['mismatch', 'unverified'] and planned['changed'] is False
    assert planned['mismatched'] == 1 and planned['unverified'] == 1
    assert sum('replay left ledger entry' in warning for warning in planned['warnings']) == 2
    refused = run(args(database, 'replay', ledger_file=ledger))
    assert refused['changed'] is False and sql(database, 'SELECT email FROM users WHERE id = ?', (newcomer,)) == [('newcomer@example.com',)]
    # The operator looked at the list and knows the legacy entry is right: the option erases it (the mismatch stays refused).
    forced = run(args(database, 'replay', ledger_file=ledger, replay_unverified=True))
    assert [item['status'] for item in forced['replayed']] == ['mismatch', 'erased'] and forced['erased'] == 1
    assert sql(database, 'SELECT count(*) FROM users WHERE id = ?', (newcomer,)) == [(0,)]


def test_secret_looking_columns_are_module_warnings(database, tmp_path):
    sql(database, 'ALTER TABLE users ADD COLUMN password_hash TEXT')
    result = run(args(database, 'inventory', subject_id='1'))
    assert result['changed'] is False and 'failed' not in result
    [warning] = result['data_map_warnings']
    assert "tables.users: column 'password_hash' looks like a secret" in warning and "not mapped" in warning
    assert warning in result['warnings']
