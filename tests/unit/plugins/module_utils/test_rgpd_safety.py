# Copyright (c) Dihya ops maintainers
# GNU General Public License v3.0+ (see LICENSES/GPL-3.0-or-later.txt or https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later

"""RGPD engine safety: replay never erases a person who got an erased id, tombstones never collide with unique
constraints, secret columns never leave the database, the ledger stays out of the application's schema unless asked,
and export memory is bounded in bytes. Each test runs on SQLite (foreign keys on and off) and PostgreSQL."""

from __future__ import annotations

import copy
import base64
import csv
import io
import json
import os
import pathlib
import subprocess
import sys
import threading
import time
import zipfile

import pytest

from ansible_collections.dihya.ops.plugins.module_utils import _rgpd, _rgpd_batches, _rgpd_request
from ansible_collections.dihya.ops.plugins.module_utils._rgpd import Engine, RgpdError
from ansible_collections.dihya.ops.plugins.module_utils._rgpd_map import load_data_map, load_data_map_file
from ansible_collections.dihya.ops.plugins.module_utils._rgpd_request import RgpdRequest
from ansible_collections.dihya.ops.tests.unit.plugins import rgpd_fixtures
from ansible_collections.dihya.ops.tests.unit.plugins.rgpd_fixtures import ACCOUNTS_MAP, DEMO_DATA_MAP, backup, restore

sqlite_template, pg_template, backend = rgpd_fixtures.make_fixtures('safety')

KEY = b'pseudonym-key-for-the-rgpd-tests'
DEMO_MAP = load_data_map_file(DEMO_DATA_MAP)
STRATEGIES = ('hmac', 'mask', 'fake', 'redact', 'null', 'keep', 'secret')


def engine(db, data_map=DEMO_MAP, check_mode=False, **kwargs):
    return Engine(db, data_map, KEY, check_mode=check_mode, **kwargs)


def raw_demo_map():
    import yaml  # pylint: disable=import-outside-toplevel
    with open(DEMO_DATA_MAP, encoding='utf-8') as handle:
        return yaml.safe_load(handle)


def acme(backend):
    return backend.query("SELECT id FROM tenants WHERE slug = 'acme'")[0][0]


def add_user(backend, email, created_at, user_id=None, name='Lone Person'):
    """A user of acme with one consent row and nothing shared (so its erasure leaves no tombstone); returns its id.

    Without ``user_id`` the database picks the id: on SQLite (INTEGER PRIMARY KEY, no AUTOINCREMENT) max(id) + 1.
    """
    if user_id is None:
        backend.execute('INSERT INTO users (tenant_id, name, email, created_at) VALUES (?, ?, ?, ?)', (acme(backend), name, email, created_at))
        user_id = backend.query('SELECT id FROM users WHERE tenant_id = ? AND email = ?', (acme(backend), email))[0][0]
    else:
        backend.execute('INSERT INTO users (id, tenant_id, name, email, created_at) VALUES (?, ?, ?, ?, ?)',
                        (user_id, acme(backend), name, email, created_at))
    backend.execute('INSERT INTO consents (user_id, purpose, granted, source, at) VALUES (?, ?, ?, ?, ?)',
                    (user_id, 'newsletter', 1, 'signup_form', created_at))
    return user_id


def person(backend, user_id):
    return backend.query('SELECT id, name, email, created_at FROM users WHERE id = ?', (user_id,))


# ---------------------------------------------------------------------------
# replay and reused ids
# ---------------------------------------------------------------------------

REUSE = {
    # name: (fingerprint columns of the data map, newcomer's e-mail, newcomer's created_at)
    'same-email-later-signup': (None, 'lone@example.com', '2026-03-01T09:00:00Z'),
    'other-email-later-signup': (None, 'newcomer@example.com', '2026-03-01T09:00:00Z'),
    'same-signup-other-email': (['created_at', 'email'], 'newcomer@example.com', '2025-01-01T00:00:00Z'),
}


@pytest.mark.parametrize('variant', sorted(REUSE))
def test_replay_leaves_alone_a_newcomer_who_got_the_erased_id(backend, tmp_path, variant):
    columns, email, created_at = REUSE[variant]
    data = raw_demo_map()
    if columns is not None:
        data['subject']['fingerprint_columns'] = columns
    data_map = load_data_map(data)
    ledger = str(tmp_path / 'ledger.jsonl')
    erased = add_user(backend, 'lone@example.com', '2025-01-01T00:00:00Z')
    assert erased == backend.query('SELECT max(id) FROM users')[0][0]
    with backend.open() as db:
        result = engine(db, data_map).erase('acme', erased, ledger_file=ledger)
    assert result['tables']['users'] == {'rows': 1, 'deleted': 1, 'anonymised': 0, 'tombstone': False} and result['fingerprint_recorded']
    # A new person signs up: SQLite hands out the same id again (max + 1); on PostgreSQL the application gives it explicitly.
    newcomer = add_user(backend, email, created_at, user_id=None if backend.kind == 'sqlite' else erased, name='Newcomer')
    assert newcomer == erased
    # The backup taken now is restored, then the ledger is replayed: the newcomer must not be erased.
    before = backend.dump()
    with backend.open(read_only=True) as db:
        planned = engine(db, data_map, check_mode=True).replay(ledger)
    with backend.open() as db:
        replayed = engine(db, data_map).replay(ledger)
    for outcome in (planned, replayed):
        assert outcome['changed'] is False and outcome['erased'] == 0 and outcome['mismatched'] == 1
        [item] = outcome['replayed']
        assert item['status'] == 'mismatch' and item['found'] is True and 'tables' not in item and 'fingerprint differs' in item['reason']
    assert backend.dump() == before
    assert person(backend, newcomer) == [(newcomer, 'Newcomer', email, created_at)]
    # Even with unverified entries allowed, a fingerprint that differs is never erased.
    with backend.open() as db:
        assert engine(db, data_map).replay(ledger, allow_unverified=True)['erased'] == 0
    assert backend.dump() == before


def test_replay_after_restore_lists_then_erases_only_the_matching_person(backend, tmp_path):
    ledger = str(tmp_path / 'ledger.jsonl')
    first = add_user(backend, 'first@example.com', '2025-01-01T00:00:00Z')
    saved = backup(backend, tmp_path)
    with backend.open() as db:
        engine(db).erase('acme', first, ledger_file=ledger)
    second = add_user(backend, 'second@example.com', '2025-02-01T00:00:00Z', user_id=None if backend.kind == 'sqlite' else first)
    assert second == first
    with backend.open() as db:
        engine(db).erase('acme', second, ledger_file=ledger)
    # The backup from before both erasures holds the first person under that id: replay finds them by id and fingerprint.
    restore(backend, saved)
    before = backend.dump()
    with backend.open(read_only=True) as db:
        planned = engine(db, check_mode=True).replay(ledger)
    assert backend.dump() == before
    statuses = [(item['status'], item.get('tables', {}).get('users', {}).get('rows')) for item in planned['replayed']]
    assert statuses == [('would_erase', 1), ('mismatch', None)] and planned['erased'] == 1 and planned['changed'] is True
    assert planned['replayed'][0]['tables']['consents'] == {'rows': 1, 'deleted': 1, 'anonymised': 0}
    with backend.open() as db:
        replayed = engine(db).replay(ledger)
    # Once the first person is erased again, nobody holds the pseudonym of the second entry any more.
    assert [item['status'] for item in replayed['replayed']] == ['erased', 'absent'] and replayed['replayed'][0]['ledger_entry_id']
    assert person(backend, first) == []
    with backend.open() as db:
        again = engine(db).replay(ledger)
    assert [item['status'] for item in again['replayed']] == ['absent', 'absent'] and again['changed'] is False
    entries = _rgpd.read_ledger_file(ledger)
    assert [entry.get('replay_of') for entry in entries][-1] == replayed['replayed'][0]['entry_id']
    assert all(entry['fingerprint'].startswith('hmac:') and entry['fingerprint_columns'] == ['created_at'] for entry in entries)
    assert '2025-01-01T00:00:00Z' not in pathlib.Path(ledger).read_text(encoding='utf-8')


@pytest.mark.parametrize('entry', ['no-fingerprint', 'empty-fingerprint', 'bad-columns'])
def test_replay_refuses_entries_that_cannot_prove_the_person_unless_allowed(backend, tmp_path, entry):
    user = add_user(backend, 'old@example.com', '2025-01-01T00:00:00Z')
    ledger = str(tmp_path / 'ledger.jsonl')
    record = {'entry_id': 'old-1', 'tenant': 'acme', 'subject': _rgpd.pseudonym(user, KEY), 'state': 'committed'}
    if entry == 'empty-fingerprint':
        record.update(fingerprint='', fingerprint_columns=[])
    elif entry == 'bad-columns':
        record.update(fingerprint='hmac:' + '0' * 64, fingerprint_columns=['created_at; DROP TABLE users'])
    _rgpd.append_ledger_file(ledger, record)
    before = backend.dump()
    with backend.open() as db:
        refused = engine(db).replay(ledger)
        assert backend.dump() == before
        [item] = refused['replayed']
        assert item['status'] == 'unverified' and refused['unverified'] == 1 and refused['erased'] == 0 and 'no fingerprint' in item['reason']
        planned = engine(db, check_mode=True).replay(ledger, allow_unverified=True)
        assert planned['replayed'][0]['status'] == 'would_erase' and backend.dump() == before
        allowed = engine(db).replay(ledger, allow_unverified=True)
    assert allowed['replayed'][0]['status'] == 'erased' and person(backend, user) == []


def test_fingerprint_columns_that_do_not_exist(backend, tmp_path):
    user = add_user(backend, 'fp@example.com', '2025-01-01T00:00:00Z')
    ledger = str(tmp_path / 'ledger.jsonl')
    data = raw_demo_map()
    data['subject']['fingerprint_columns'] = ['created_at', 'signup_at']
    before = backend.dump()
    with backend.open() as db:
        with pytest.raises(RgpdError, match="fingerprint_columns: table 'users' has no column 'signup_at'"):
            engine(db, load_data_map(data)).erase('acme', user, ledger_file=ledger)
        assert any('signup_at' in warning for warning in engine(db, load_data_map(data)).warnings())
    assert backend.dump() == before and not os.path.exists(ledger)
    # An entry whose fingerprint columns are gone from the table: refused as a mismatch.
    _rgpd.append_ledger_file(ledger, {'entry_id': 'e1', 'tenant': 'acme', 'subject': _rgpd.pseudonym(user, KEY), 'state': 'committed',
                                      'fingerprint': 'hmac:' + '1' * 64, 'fingerprint_columns': ['signup_at']})
    with backend.open() as db:
        result = engine(db).replay(ledger)
    assert result['replayed'][0]['status'] == 'mismatch' and 'signup_at' in result['replayed'][0]['reason']
    assert backend.dump() == before
    with pytest.raises(Exception, match='fingerprint_columns'):
        load_data_map({**data, 'subject': {**data['subject'], 'fingerprint_columns': 'created_at'}})


def test_a_subject_table_without_a_stable_column_records_no_fingerprint_and_warns(backend, tmp_path):
    ledger = str(tmp_path / 'ledger.jsonl')
    with backend.open() as db:
        accounts = engine(db, load_data_map(ACCOUNTS_MAP))
        assert any('fingerprint_columns' in warning for warning in accounts.warnings())
        result = accounts.erase('a', 'u2', ledger_file=ledger)
        assert result['fingerprint_recorded'] is False
    saved_entry = _rgpd.read_ledger_file(ledger)[0]
    assert saved_entry['fingerprint'] is None and saved_entry['fingerprint_columns'] == []
    backend.execute("INSERT INTO accounts VALUES ('a', 'u2', 'someone-else@a.example')")
    with backend.open() as db:
        assert engine(db, load_data_map(ACCOUNTS_MAP)).replay(ledger)['replayed'][0]['status'] == 'unverified'
    assert backend.query("SELECT email FROM accounts WHERE uid = 'u2'") == [('someone-else@a.example',)]


def test_a_fingerprint_column_changed_by_anonymise_is_warned_about(backend):
    data = raw_demo_map()
    data['subject']['fingerprint_columns'] = ['created_at', 'email']
    with backend.open(read_only=True) as db:
        warnings = engine(db, load_data_map(data)).warnings()
    assert any("'email' is changed by anonymise" in warning for warning in warnings)
    with backend.open(read_only=True) as db:
        assert engine(db).warnings() == []


# ---------------------------------------------------------------------------
# ledger table
# ---------------------------------------------------------------------------

OLD_LEDGER_DDL = ('CREATE TABLE dihya_rgpd_erasure_ledger (entry_id TEXT PRIMARY KEY, tenant TEXT NOT NULL, subject TEXT NOT NULL, '
                  'data_map_version TEXT NOT NULL, erased_at TEXT NOT NULL, trace_id TEXT NOT NULL, counts TEXT NOT NULL, replay_of TEXT)')


@pytest.mark.parametrize('table', ['absent', 'asked', 'asked-old-table'])
def test_the_ledger_table_is_only_created_when_asked(backend, tmp_path, table):
    user = add_user(backend, 'ledger@example.com', '2025-01-01T00:00:00Z')
    ledger = str(tmp_path / 'ledger.jsonl')
    if table == 'asked-old-table':
        backend.script(OLD_LEDGER_DDL)
    with backend.open() as db:
        result = engine(db).erase('acme', user, ledger_file=ledger, ledger_table=table != 'absent')
    if table == 'absent':
        assert _rgpd.LEDGER_TABLE not in backend.tables()
    else:
        rows = backend.query(f'SELECT entry_id, subject, fingerprint, fingerprint_columns FROM {_rgpd.LEDGER_TABLE}')
        assert rows == [(result['ledger_entry_id'], _rgpd.pseudonym(user, KEY), _rgpd.read_ledger_file(ledger)[0]['fingerprint'], '["created_at"]')]
    assert [entry['state'] for entry in _rgpd.read_ledger_file(ledger)] == ['committed']


def test_erase_needs_a_ledger(backend):
    user = add_user(backend, 'noledger@example.com', '2025-01-01T00:00:00Z')
    before = backend.dump()
    with backend.open() as db:
        with pytest.raises(RgpdError, match='erase needs the erasure ledger file'):
            _rgpd_request.run(engine(db), RgpdRequest('erase', tenant='acme', subject_id=user))
        done = _rgpd_request.run(engine(db), RgpdRequest('erase', tenant='acme', subject_id=user, ledger_table=True))
    assert done['changed'] is True and before != backend.dump() and _rgpd.LEDGER_TABLE in backend.tables()


# ---------------------------------------------------------------------------
# tombstones and unique constraints: anonymise, then erase
# ---------------------------------------------------------------------------

def _members_schema(backend, strategy):
    """A subject table with UNIQUE (tenant, email) and a unique unmapped nick; kept notes so erasure needs a tombstone."""
    ident = 'INTEGER PRIMARY KEY' if backend.kind == 'sqlite' else 'BIGINT GENERATED BY DEFAULT AS IDENTITY PRIMARY KEY'
    backend.script(
        f'CREATE TABLE members (id {ident}, tenant TEXT NOT NULL, email TEXT, nick TEXT, created_at TEXT NOT NULL, UNIQUE (tenant, email));'
        'CREATE UNIQUE INDEX members_nick ON members (nick);'
        f'CREATE TABLE member_notes (id {ident}, tenant TEXT NOT NULL, member_id BIGINT NOT NULL REFERENCES members (id), body TEXT NOT NULL);'
    )
    for email, nick in (('ann@x.example', 'ann'), ('bob@x.example', 'bob'), ('cy@x.example', 'cy'), ('di@other.example', 'di')):
        backend.execute('INSERT INTO members (tenant, email, nick, created_at) VALUES (?, ?, ?, ?)', ('t', email, nick, '2025-01-01T00:00:00Z'))
        member = backend.query('SELECT id FROM members WHERE nick = ?', (nick,))[0][0]
        backend.execute('INSERT INTO member_notes (tenant, member_id, body) VALUES (?, ?, ?)', ('t', member, f'note of {nick}'))
    return load_data_map({
        'version': 'members-1',
        'subject': {'table': 'members', 'id_column': 'id', 'tenant_column': 'tenant'},
        'tables': {
            'members': {'subject_columns': ['id'], 'erasure': 'anonymise', 'columns': {'email': strategy}},
            'member_notes': {'subject_columns': ['member_id'], 'tenant_column': 'tenant', 'erasure': 'anonymise', 'columns': {'body': 'redact'}},
        },
    })


@pytest.mark.parametrize('strategy', STRATEGIES)
def test_anonymise_then_erase_works_on_unique_columns(backend, tmp_path, strategy):
    data_map = _members_schema(backend, strategy)
    ledger = str(tmp_path / 'ledger.jsonl')
    ids = {nick: backend.query('SELECT id FROM members WHERE nick = ?', (nick,))[0][0] for nick in ('ann', 'bob', 'cy')}
    with backend.open() as db:
        rgpd = engine(db, data_map)
        for nick in ('ann', 'bob'):
            rgpd.anonymise('t', ids[nick])
            result = rgpd.erase('t', ids[nick], ledger_file=ledger)
            assert result['changed'] is True and result['tables']['members']['tombstone'] is True, nick
        # Erased without anonymising first, next to two tombstones.
        assert rgpd.erase('t', ids['cy'], ledger_file=ledger)['tables']['members']['tombstone'] is True
    rows = backend.query('SELECT id, email, nick FROM members ORDER BY id')
    assert len(rows) == 4 and not set(ids.values()) & {row[0] for row in rows}
    text = json.dumps(backend.dump(), default=str)
    for gone in ('ann@x.example', 'bob@x.example', 'cy@x.example', '"ann"', '"bob"', '"cy"'):
        assert gone not in text, gone
    assert 'di@other.example' in text
    tombstones = [row for row in rows if row[2] != 'di']
    assert len({row[1] for row in tombstones}) == (1 if strategy in ('null', 'secret') else 3)
    assert all(row[2].startswith('erased-') for row in tombstones)
    notes = backend.query('SELECT member_id, body FROM member_notes ORDER BY id')
    assert [body for dummy, body in notes] == ['[redacted]', '[redacted]', '[redacted]', 'note of di']
    assert {member for member, dummy in notes[:3]} == {row[0] for row in tombstones}


def test_anonymise_then_erase_on_the_demo_schema(backend, tmp_path):
    rows = backend.query(
        'SELECT u.id FROM users u WHERE u.tenant_id = ? AND EXISTS (SELECT 1 FROM messages m WHERE m.recipient_id = u.id) ORDER BY u.id',
        (acme(backend),))
    ledger = str(tmp_path / 'ledger.jsonl')
    with backend.open() as db:
        for (user,) in rows[:2]:
            engine(db).anonymise('acme', user)
            assert engine(db).erase('acme', user, ledger_file=ledger)['tables']['users']['tombstone'] is True
            assert engine(db).inventory('acme', user)['total_rows'] == 0
    assert backend.references_to(rows[0][0]) == {} and backend.references_to(rows[1][0]) == {}


# ---------------------------------------------------------------------------
# secret columns
# ---------------------------------------------------------------------------

SECRET_VALUES = ('$argon2id$v=19$m=65536$SECRET-HASH', 'tok_SECRET-TOKEN')


def _logins_schema(backend, extra_map=None):
    ident = 'INTEGER PRIMARY KEY' if backend.kind == 'sqlite' else 'BIGINT GENERATED BY DEFAULT AS IDENTITY PRIMARY KEY'
    backend.script(
        f'CREATE TABLE logins (id {ident}, tenant TEXT NOT NULL, email TEXT NOT NULL, password_hash TEXT NOT NULL, api_token TEXT,'
        ' otp_secret TEXT, "resetToken" TEXT, created_at TEXT NOT NULL);'
        f'CREATE TABLE login_keys (id {ident}, tenant TEXT NOT NULL, login_id BIGINT NOT NULL, label TEXT, "ApiKey" TEXT);'
    )
    for email in ('me@x.example', 'other@x.example'):
        backend.execute('INSERT INTO logins (tenant, email, password_hash, api_token, otp_secret, "resetToken", created_at) VALUES (?, ?, ?, ?, ?, ?, ?)',
                        ('t', email, SECRET_VALUES[0], SECRET_VALUES[1], 'otp-seed', 'reset-1', '2025-01-01T00:00:00Z'))
    me = backend.query("SELECT id FROM logins WHERE email = 'me@x.example'")[0][0]
    backend.execute('INSERT INTO login_keys (tenant, login_id, label, "ApiKey") VALUES (?, ?, ?, ?)', ('t', me, 'laptop', 'key_SECRET-KEY'))
    data = {
        'version': 'logins-1',
        'subject': {'table': 'logins', 'id_column': 'id', 'tenant_column': 'tenant'},
        'tables': {
            'logins': {'subject_columns': ['id'], 'erasure': 'delete',
                       'columns': {'email': 'hmac', 'password_hash': 'secret', 'api_token': 'secret', 'otp_secret': 'keep', 'resetToken': 'secret'}},
            'login_keys': {'subject_columns': ['login_id'], 'tenant_column': 'tenant', 'erasure': 'delete', 'columns': {'ApiKey': 'secret'}},
        },
    }
    for table, columns in (extra_map or {}).items():
        data['tables'][table]['columns'].update(columns)
    return me, load_data_map(data)


def test_export_never_holds_secret_columns(backend, tmp_path):
    me, data_map = _logins_schema(backend)
    with backend.open(read_only=True) as db:
        result = engine(db, data_map).export('t', me, str(tmp_path / 'me.zip'))
        key = base64.urlsafe_b64encode(os.urandom(32)).decode()
        engine(db, data_map).export('t', me, str(tmp_path / 'me.zip.enc'), encryption_key=key)
    _rgpd.decrypt_archive(str(tmp_path / 'me.zip.enc'), str(tmp_path / 'plain.zip'), key)
    for path in (tmp_path / 'me.zip', tmp_path / 'plain.zip'):
        with zipfile.ZipFile(path) as archive:
            members = {name: archive.read(name) for name in archive.namelist()}
        everything = b''.join(members.values()) + json.dumps(result).encode()
        for secret in (*SECRET_VALUES, 'key_SECRET-KEY', 'reset-1', 'password_hash', 'api_token', 'resetToken', 'ApiKey'):
            assert secret.encode() not in everything, secret
        [row] = json.loads(members['logins.json'])
        assert set(row) == {'id', 'tenant', 'email', 'otp_secret', 'created_at'} and row['email'] == 'me@x.example'
        header = next(csv.reader(io.StringIO(members['logins.csv'].decode())))
        assert header == ['id', 'tenant', 'email', 'otp_secret', 'created_at']
        assert json.loads(members['login_keys.json']) == [{'id': 1, 'tenant': 't', 'login_id': me, 'label': 'laptop'}]
        assert json.loads(members['manifest.json'])['tables'] == {'logins': {'rows': 1}, 'login_keys': {'rows': 1}}


def test_secret_columns_are_cleared_by_anonymise_and_erase(backend, tmp_path):
    me, data_map = _logins_schema(backend)
    with backend.open() as db:
        result = engine(db, data_map).anonymise('t', me)
        assert result['tables']['logins']['anonymised'] == 1 and result['tables']['login_keys']['anonymised'] == 1
    assert backend.query('SELECT password_hash, api_token, "resetToken", otp_secret FROM logins WHERE id = ?', (me,)) == [
        ('[redacted]', None, None, 'otp-seed')]
    assert backend.query('SELECT "ApiKey" FROM login_keys') == [(None,)]
    assert backend.query("SELECT password_hash FROM logins WHERE email = 'other@x.example'") == [(SECRET_VALUES[0],)]
    with backend.open() as db:
        assert engine(db, data_map).erase('t', me, ledger_file=str(tmp_path / 'ledger.jsonl'))['changed'] is True
    assert backend.query('SELECT count(*) FROM logins')[0][0] == 1


def test_secret_that_erasure_could_not_clear_is_refused(backend):
    backend.script('CREATE TABLE pins (id INTEGER PRIMARY KEY, tenant TEXT NOT NULL, owner BIGINT NOT NULL, pin INTEGER NOT NULL)')
    me, dummy_map = _logins_schema(backend)
    data = {'version': 'pins-1', 'subject': {'table': 'logins', 'id_column': 'id', 'tenant_column': 'tenant'},
            'tables': {'logins': {'subject_columns': ['id'],
                                  'columns': {'password_hash': 'secret', 'api_token': 'secret', 'resetToken': 'secret', 'otp_secret': 'secret'}},
                       'login_keys': {'subject_columns': ['login_id'], 'tenant_column': 'tenant', 'columns': {'ApiKey': 'secret'}},
                       'pins': {'subject_columns': ['owner'], 'tenant_column': 'tenant', 'columns': {'pin': 'secret'}}}}
    before = backend.dump()
    with backend.open() as db:
        for call in (lambda rgpd: rgpd.anonymise('t', me), lambda rgpd: rgpd.erase('t', me, ledger_table=True)):
            with pytest.raises(RgpdError, match=r'strategy secret on a NOT NULL .* column'):
                call(engine(db, load_data_map(data)))
    assert backend.dump() == before


def test_secret_looking_columns_that_are_exported_are_warned_about(backend):
    dummy_me, data_map = _logins_schema(backend)
    with backend.open(read_only=True) as db:
        warnings = engine(db, data_map).warnings()
        assert len(warnings) == 1 and "tables.logins: column 'otp_secret'" in warnings[0] and "mapped with strategy 'keep'" in warnings[0]
        loose = copy.deepcopy(data_map.tables['logins'].columns)
        data = {'version': 'logins-2', 'subject': {'table': 'logins', 'id_column': 'id', 'tenant_column': 'tenant'},
                'tables': {'logins': {'subject_columns': ['id'], 'columns': {k: v for k, v in loose.items() if k in ('email', 'password_hash')}},
                           'login_keys': {'subject_columns': ['login_id'], 'tenant_column': 'tenant'}}}
        warnings = engine(db, load_data_map(data)).warnings()
    flagged = sorted(warning.split("'")[1] for warning in warnings)
    assert flagged == ['ApiKey', 'api_token', 'otp_secret', 'resetToken']
    assert all('not mapped' in warning for warning in warnings if 'otp_secret' not in warning)


@pytest.mark.parametrize('name', ['password', 'password_hash', 'PasswordHash', 'hashed_password', 'PASSWD', 'pwd', 'api_key', 'apiKey', 'APIKEY',
                                  'api_token', 'AuthToken', 'refresh-token', 'otp', 'totp_seed', 'OTP_SECRET', 'client_secret', 'salt',
                                  'PasswordSalt', 'private_key', 'recovery_code', 'pin'])
def test_secret_looking_names(name):
    assert _rgpd.looks_secret(name)


@pytest.mark.parametrize('name', ['email', 'name', 'sha256', 'passport_number', 'hashtag', 'created_at', 'user_id', 'keyboard_layout', 'spin',
                                  'shipping_address', 'tokyo_office'])
def test_ordinary_names(name):
    assert not _rgpd.looks_secret(name)


# ---------------------------------------------------------------------------
# export memory is bounded in bytes
# ---------------------------------------------------------------------------

BIG_ROWS = 200
BIG_ROW_CHARS = 1_000_000

MEMORY_CHILD = r"""
import resource, sys
sys.path.insert(0, sys.argv[1])
from ansible_collections.dihya.ops.plugins.module_utils._rgpd import Engine
from ansible_collections.dihya.ops.plugins.module_utils._rgpd_db import open_database
from ansible_collections.dihya.ops.plugins.module_utils._rgpd_map import load_data_map
kind, target, dest = sys.argv[2:5]
data_map = load_data_map({'version': 'big-1', 'subject': {'table': 'owners', 'id_column': 'id', 'tenant_column': 'tenant'},
                          'tables': {'owners': {'subject_columns': ['id']},
                                     'big_rows': {'subject_columns': ['owner'], 'tenant_column': 'tenant'}}})
db = open_database(path=target, read_only=True) if kind == 'sqlite' else open_database(dsn=target, read_only=True)
result = Engine(db, data_map, b'pseudonym-key-for-the-rgpd-tests').export('t', 1, dest)
print(result['tables']['big_rows']['rows'], resource.getrusage(resource.RUSAGE_SELF).ru_maxrss)
"""


@pytest.mark.services('load')
def test_export_of_one_megabyte_rows_stays_within_bounded_memory(backend, tmp_path):
    if backend.kind == 'sqlite' and not backend.foreign_keys:
        pytest.skip('same file as the sqlite case')
    backend.script('CREATE TABLE owners (id BIGINT PRIMARY KEY, tenant TEXT NOT NULL);'
                   'CREATE TABLE big_rows (id BIGINT PRIMARY KEY, tenant TEXT NOT NULL, owner BIGINT NOT NULL, body TEXT NOT NULL)')
    backend.execute("INSERT INTO owners (id, tenant) VALUES (1, 't'), (2, 't')")
    if backend.kind == 'sqlite':
        backend.execute('WITH RECURSIVE n(i) AS (SELECT 1 UNION ALL SELECT i + 1 FROM n WHERE i < ?) '
                        "INSERT INTO big_rows (id, tenant, owner, body) SELECT i, 't', 1, hex(randomblob(?)) FROM n", (BIG_ROWS, BIG_ROW_CHARS // 2))
    else:
        backend.execute("INSERT INTO big_rows (id, tenant, owner, body) SELECT i, 't', 1, repeat(md5(i::text), %s) FROM generate_series(1, %s) AS i",
                        (BIG_ROW_CHARS // 32, BIG_ROWS))
    backend.execute("INSERT INTO big_rows (id, tenant, owner, body) VALUES (100000, 't', 2, 'not the subject')")
    collections = os.path.abspath(os.path.join(rgpd_fixtures.COLLECTION_ROOT, '..', '..', '..'))
    dest = str(tmp_path / 'big.zip')
    proc = subprocess.run([sys.executable, '-c', MEMORY_CHILD, collections, backend.kind, backend.path or backend.dsn, dest],
                          capture_output=True, text=True, timeout=600, check=False)
    assert proc.returncode == 0, proc.stderr
    rows, peak_kib = (int(value) for value in proc.stdout.split())
    assert rows == BIG_ROWS
    assert peak_kib < 200 * 1024, f'the export peaked at {peak_kib // 1024} MiB for {BIG_ROWS} rows of {BIG_ROW_CHARS // 1_000_000} MB'
    with zipfile.ZipFile(dest) as archive:
        assert json.loads(archive.read('manifest.json'))['files']['big_rows.json']['size'] > BIG_ROWS * BIG_ROW_CHARS
        with archive.open('big_rows.json') as member:
            assert member.read(20).startswith(b'[\n{"id":1,')


def test_byte_budget_picks_fewer_rows_for_bigger_rows():
    budget = _rgpd_batches.ByteBudget(budget=4 * 1024 * 1024, first=16, most=1000)
    assert budget() == 16
    budget.measure([(1, 'x' * 100)] * 16)
    assert budget() == 1000
    budget.measure([(2, 'y' * 1_000_000)])
    assert 3 <= budget() <= 5
    budget.measure([(3, b'z' * 50_000_000)])
    assert budget() == 1


def test_prefetch_queue_is_bounded_in_bytes():
    produced = []

    def batches():
        for index in range(50):
            produced.append(index)
            yield [index]

    stream = _rgpd_batches.prefetched(batches(), depth=40, max_bytes=30, size=lambda batch: 10)
    assert next(stream) == [0]
    time.sleep(0.3)
    # Queued: at most 30 bytes of 10-byte items; plus the item the reader holds while it waits for room.
    assert len(produced) <= 1 + 3 + 1
    assert [item[0] for item in stream] == list(range(1, 50))
    assert threading.active_count() >= 1
