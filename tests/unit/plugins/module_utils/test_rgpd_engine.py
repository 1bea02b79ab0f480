# Copyright (c) Dihya ops maintainers
# GNU General Public License v3.0+ (see LICENSES/GPL-3.0-or-later.txt or https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later

"""Tests of the RGPD engine on the demo backend's database, each run on SQLite (foreign keys on and off) and PostgreSQL."""

from __future__ import annotations

import base64
import csv
import hashlib
import io
import json
import os
import pathlib
import stat
import subprocess
import sys
import threading
import time
import zipfile

import pytest

from ansible_collections.dihya.ops.plugins.module_utils import _rgpd, _rgpd_archive, _rgpd_batches, _rgpd_request, _rgpd_values
from ansible_collections.dihya.ops.plugins.module_utils._rgpd import Engine, RgpdError
from ansible_collections.dihya.ops.plugins.module_utils._rgpd_map import load_data_map, load_data_map_file
from ansible_collections.dihya.ops.plugins.module_utils._rgpd_request import RgpdRequest
from ansible_collections.dihya.ops.tests.unit.plugins import rgpd_fixtures
from ansible_collections.dihya.ops.tests.unit.plugins.rgpd_fixtures import ACCOUNTS_MAP, DEMO_DATA_MAP, add_bulk_messages, backup, restore

sqlite_template, pg_template, backend = rgpd_fixtures.make_fixtures('engine')

KEY = b'pseudonym-key-for-the-rgpd-tests'
DEMO_MAP = load_data_map_file(DEMO_DATA_MAP)
HOSTILE = ("'; DROP TABLE users; --", 'a"b', 'x/*', '1; DELETE FROM users', '1 OR 1=1')


def engine(db, data_map=DEMO_MAP, check_mode=False, **kwargs):
    return Engine(db, data_map, KEY, check_mode=check_mode, **kwargs)


def tenant_id(backend, slug='acme'):
    return backend.query('SELECT id FROM tenants WHERE slug = ?', (slug,))[0][0]


def pick_subject(backend, slug='acme'):
    """A user of the tenant who sent and received messages, follows and is followed, and ordered."""
    rows = backend.query(
        'SELECT u.id FROM users u JOIN tenants t ON t.id = u.tenant_id WHERE t.slug = ?'
        ' AND EXISTS (SELECT 1 FROM messages m WHERE m.sender_id = u.id) AND EXISTS (SELECT 1 FROM messages m WHERE m.recipient_id = u.id)'
        ' AND EXISTS (SELECT 1 FROM follows f WHERE f.follower_id = u.id) AND EXISTS (SELECT 1 FROM follows f WHERE f.followee_id = u.id)'
        ' AND EXISTS (SELECT 1 FROM orders o WHERE o.user_id = u.id) ORDER BY u.id',
        (slug,),
    )
    assert rows, 'the seed has no active enough user'
    return rows[0][0]


def add_uploads(backend, subject, other):
    tid = tenant_id(backend)
    for upload_id, user in (('up-subject', subject), ('up-other', other)):
        backend.execute(
            'INSERT INTO uploads (id, tenant_id, user_id, filename, size_bytes, sha256, staged_path, created_at) VALUES (?, ?, ?, ?, ?, ?, ?, ?)',
            (upload_id, tid, user, f'{upload_id}.pdf', 10, '0' * 64, f'/tmp/{upload_id}', '2025-01-01T00:00:00Z'),
        )


def expected_rows(backend, subject):
    """The subject's rows per table, found with hand-written SQL (not the engine's)."""
    tid = tenant_id(backend)
    queries = {
        'users': ('SELECT * FROM users WHERE id = ?', (subject,)),
        'posts': ('SELECT * FROM posts WHERE author_id = ?', (subject,)),
        'messages': ('SELECT * FROM messages WHERE sender_id = ? OR recipient_id = ?', (subject, subject)),
        'follows': ('SELECT * FROM follows WHERE follower_id = ? OR followee_id = ?', (subject, subject)),
        'consents': ('SELECT * FROM consents WHERE user_id = ?', (subject,)),
        'orders': ('SELECT * FROM orders WHERE user_id = ? AND tenant_id = ?', (subject, tid)),
        'order_items': ('SELECT * FROM order_items WHERE order_id IN (SELECT id FROM orders WHERE user_id = ? AND tenant_id = ?)', (subject, tid)),
        'uploads': ('SELECT * FROM uploads WHERE user_id = ? AND tenant_id = ?', (subject, tid)),
    }
    return {table: sorted(backend.query(sql, params), key=repr) for table, (sql, params) in queries.items()}


def read_archive(path):
    with zipfile.ZipFile(path) as archive:
        return {name: archive.read(name) for name in archive.namelist()}


# ---------------------------------------------------------------------------
# inventory and export
# ---------------------------------------------------------------------------

def test_inventory_counts_match_the_rows(backend):
    subject = pick_subject(backend)
    expected = expected_rows(backend, subject)
    with backend.open(read_only=True) as db:
        result = engine(db).inventory('acme', subject)
    assert result['subject_found'] is True and result['changed'] is False
    assert {name: entry['rows'] for name, entry in result['tables'].items()} == {name: len(rows) for name, rows in expected.items()}
    assert result['tables']['messages']['sides']['sender_id'] > 0 and result['tables']['messages']['sides']['recipient_id'] > 0
    assert result['subject'] == _rgpd.pseudonym(subject, KEY) and str(subject) not in json.dumps(result['subject'])
    assert result['total_rows'] == sum(len(rows) for rows in expected.values())


def test_export_round_trip(backend, tmp_path):
    subject = pick_subject(backend)
    other = pick_subject(backend, 'globex')
    add_uploads(backend, subject, other)
    expected = expected_rows(backend, subject)
    dest = str(tmp_path / 'export.zip')
    with backend.open(read_only=True) as db:
        result = engine(db, trace_id='ab' * 16).export('acme', subject, dest)
    assert result['changed'] is True
    assert stat.S_IMODE(os.stat(dest).st_mode) == 0o600
    assert result['archive']['sha256'] == hashlib.sha256(pathlib.Path(dest).read_bytes()).hexdigest()
    members = read_archive(dest)
    manifest = json.loads(members.pop('manifest.json'))
    assert manifest['subject'] == _rgpd.pseudonym(subject, KEY) and manifest['data_map_version'] == DEMO_MAP.version
    assert manifest['trace_id'] == 'ab' * 16 and manifest['format'] == _rgpd_archive.ARCHIVE_FORMAT
    assert manifest['retention']['tables']['orders']
    assert set(members) == {f'{table}.{ext}' for table in DEMO_MAP.tables for ext in ('json', 'csv')}
    for name, data in members.items():
        assert manifest['files'][name]['sha256'] == hashlib.sha256(data).hexdigest(), name
    for table, rows in expected.items():
        exported = json.loads(members[f'{table}.json'])
        assert sorted((tuple(row.values()) for row in exported), key=repr) == rows, table
        reader = list(csv.reader(io.StringIO(members[f'{table}.csv'].decode('utf-8'))))
        assert reader[0] == list(exported[0]) if exported else True
        assert len(reader) - 1 == len(rows) == manifest['tables'][table]['rows']
    assert expected['uploads'] and all(row[2] == subject for row in expected['uploads'])
    # Nobody else's user row, and no globex data at all.
    assert [row['id'] for row in json.loads(members['users.json'])] == [subject]
    assert b'up-other' not in b''.join(members.values())


def test_export_encrypted_and_check_mode(backend, tmp_path):
    subject = pick_subject(backend)
    dest = str(tmp_path / 'export.zip.enc')
    with backend.open(read_only=True) as db:
        checked = engine(db, check_mode=True).export('acme', subject, dest)
        assert set(os.listdir(tmp_path)) <= {'demo.db'}
        assert checked['changed'] is True and checked['tables']['users']['rows'] == 1
        key = base64.urlsafe_b64encode(os.urandom(32)).decode()
        result = engine(db).export('acme', subject, dest, encryption_key=key)
    raw = pathlib.Path(dest).read_bytes()
    assert raw.startswith(_rgpd_archive.ENCRYPTION_MAGIC) and b'PK' not in raw[:40] and result['archive']['encrypted'] is True
    plain = str(tmp_path / 'plain.zip')
    _rgpd.decrypt_archive(dest, plain, key)
    assert json.loads(read_archive(plain)['manifest.json'])['tables']['users']['rows'] == 1
    with pytest.raises(RgpdError, match='decryption failed'):
        _rgpd.decrypt_archive(dest, str(tmp_path / 'bad.zip'), base64.urlsafe_b64encode(b'x' * 32).decode())
    assert not os.path.exists(tmp_path / 'bad.zip') and not os.path.exists(tmp_path / 'bad.zip.partial')


def test_export_refuses_bad_destinations(backend, tmp_path):
    subject = pick_subject(backend)
    (tmp_path / 'link').symlink_to(tmp_path / 'elsewhere')
    with backend.open(read_only=True) as db:
        rgpd = engine(db)
        for dest, message in (('relative.zip', 'absolute'), (str(tmp_path / 'missing' / 'x.zip'), 'does not exist'),
                              (str(tmp_path / 'link'), 'symbolic link'), (str(tmp_path), 'is a directory')):
            with pytest.raises(RgpdError, match=message):
                rgpd.export('acme', subject, dest)
        with pytest.raises(RgpdError, match='encryption_key must be 32 bytes'):
            rgpd.export('acme', subject, str(tmp_path / 'x.zip'), encryption_key='short')
    assert not os.path.exists(tmp_path / 'elsewhere')


EXPORT_CHILD = r"""
import resource, sys
sys.path.insert(0, sys.argv[1])
from ansible_collections.dihya.ops.plugins.module_utils._rgpd import Engine
from ansible_collections.dihya.ops.plugins.module_utils._rgpd_db import open_database
from ansible_collections.dihya.ops.plugins.module_utils._rgpd_map import load_data_map_file
kind, target, dest, subject = sys.argv[2:6]
db = open_database(path=target, read_only=True) if kind == 'sqlite' else open_database(dsn=target, read_only=True)
result = Engine(db, load_data_map_file(sys.argv[6]), b'pseudonym-key-for-the-rgpd-tests').export('acme', int(subject), dest)
print(result['tables']['messages']['rows'], resource.getrusage(resource.RUSAGE_SELF).ru_maxrss)
"""


def _export_child(backend, dest, subject):
    collections = os.path.abspath(os.path.join(rgpd_fixtures.COLLECTION_ROOT, '..', '..', '..'))
    target = backend.path if backend.kind == 'sqlite' else backend.dsn
    return subprocess.Popen(
        [sys.executable, '-c', EXPORT_CHILD, collections, backend.kind, target, dest, str(subject), DEMO_DATA_MAP],
        stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
    )


def test_sigkill_during_export_leaves_no_partial_archive(backend, tmp_path):
    if backend.kind == 'sqlite' and not backend.foreign_keys:
        pytest.skip('same file as the sqlite case')
    subject = pick_subject(backend)
    other = backend.query('SELECT id FROM users WHERE tenant_id = ? AND id <> ? ORDER BY id', (tenant_id(backend), subject))[0][0]
    add_bulk_messages(backend, subject, other, 40000)
    out = tmp_path / 'out'
    out.mkdir()
    dest = str(out / 'big.zip')
    # Killed while it writes.
    child = _export_child(backend, dest, subject)
    try:
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline:
            temps = [name for name in os.listdir(out) if _rgpd.TEMP_MARKER in name]
            if temps and os.path.getsize(out / temps[0]) > 64 * 1024:
                break
            assert child.poll() is None, child.communicate()[1]
            time.sleep(0.01)
        else:
            pytest.fail('the export never started writing')
        child.kill()
    finally:
        child.kill()
        child.communicate(timeout=30)
    assert not os.path.exists(dest)
    leftovers = [name for name in os.listdir(out) if name.startswith('.big.zip' + _rgpd.TEMP_MARKER)]
    assert len(leftovers) == 1
    with backend.open(read_only=True) as db:
        result = engine(db).export('acme', subject, dest)
    assert result['stale_temp_files_removed'] == 1
    assert os.listdir(out) == ['big.zip']
    assert zipfile.ZipFile(dest).testzip() is None


# ---------------------------------------------------------------------------
# erase and replay
# ---------------------------------------------------------------------------

def test_erase_removes_every_trace_and_keeps_other_peoples_data(backend, tmp_path):
    subject = pick_subject(backend)
    add_uploads(backend, subject, pick_subject(backend, 'globex'))
    before = backend.dump()
    received = backend.query('SELECT id, sender_id, body FROM messages WHERE recipient_id = ? ORDER BY id', (subject,))
    sent = backend.query('SELECT id FROM messages WHERE sender_id = ? ORDER BY id', (subject,))
    ledger = str(tmp_path / 'ledger.jsonl')
    with backend.open(read_only=True) as db:
        planned = engine(db, check_mode=True).erase('acme', subject, ledger_file=ledger)
    assert backend.dump() == before and not os.path.exists(ledger)
    with backend.open() as db:
        result = engine(db).erase('acme', subject, ledger_file=ledger, ledger_table=True)
        assert {name: entry['rows'] for name, entry in result['tables'].items()} == {name: entry['rows'] for name, entry in planned['tables'].items()}
        assert engine(db).inventory('acme', subject)['total_rows'] == 0
        again = engine(db).erase('acme', subject, ledger_file=ledger)
    assert result['changed'] is True and planned['changed'] is True and again['changed'] is False
    assert list(result['tables'])[-1] == 'users' and list(result['tables']).index('order_items') < list(result['tables']).index('orders')
    assert backend.references_to(subject) == {}
    if backend.kind == 'sqlite':
        assert backend.query('PRAGMA foreign_key_check') == []
    # The other side of shared rows is intact: messages received keep their sender and body.
    tombstone = backend.query('SELECT id, email, name, phone, address FROM users WHERE id NOT IN (SELECT id FROM users WHERE id <= ?) ', (max(
        row[0] for row in before['users']),))
    assert len(tombstone) == 1 and tombstone[0][1].startswith('hmac:') and tombstone[0][2].startswith('anon-') and tombstone[0][3] is None
    new_id = tombstone[0][0]
    assert backend.query('SELECT id, sender_id, body FROM messages WHERE recipient_id = ? ORDER BY id', (new_id,)) == received
    assert backend.query('SELECT DISTINCT body FROM messages WHERE sender_id = ?', (new_id,)) == [('[redacted]',)]
    assert [row[0] for row in backend.query('SELECT id FROM messages WHERE sender_id = ? ORDER BY id', (new_id,))] == [row[0] for row in sent]
    assert len(backend.dump()['messages']) == len(before['messages'])
    assert backend.query('SELECT DISTINCT shipping_address FROM orders WHERE user_id = ?', (new_id,)) == [('[redacted]',)]
    # The ledger holds the pseudonym only.
    rows = backend.query(f'SELECT entry_id, subject, tenant, counts FROM {_rgpd.LEDGER_TABLE}')
    assert [(row[0], row[1], row[2]) for row in rows] == [(result['ledger_entry_id'], _rgpd.pseudonym(subject, KEY), 'acme')]
    lines = [json.loads(line) for line in pathlib.Path(ledger).read_text(encoding='utf-8').splitlines()]
    assert [line['state'] for line in lines] == ['pending', 'committed'] and stat.S_IMODE(os.stat(ledger).st_mode) == 0o600
    assert f'"{subject}"' not in pathlib.Path(ledger).read_text(encoding='utf-8')
    # Other people's rows did not change (apart from the tombstone and the repointed references).
    after = backend.dump()
    for table in ('tenants', 'products', 'schema_meta'):
        assert after[table] == before[table]
    assert [row for row in after['consents'] if row[1] != subject] == [row for row in before['consents'] if row[1] != subject]


def test_erase_without_shared_rows_leaves_no_tombstone(backend):
    backend.execute('INSERT INTO users (tenant_id, name, email, created_at) VALUES (?, ?, ?, ?)',
                    (tenant_id(backend), 'Lone Person', 'lone@example.com', '2025-01-01T00:00:00Z'))
    subject = backend.query("SELECT id FROM users WHERE email = 'lone@example.com'")[0][0]
    backend.execute('INSERT INTO consents (user_id, purpose, granted, source, at) VALUES (?, ?, ?, ?, ?)',
                    (subject, 'newsletter', 1, 'signup_form', '2025-01-01T00:00:00Z'))
    users = len(backend.query('SELECT id FROM users'))
    with backend.open() as db:
        result = engine(db).erase('acme', subject)
    assert result['tables']['users'] == {'rows': 1, 'deleted': 1, 'anonymised': 0, 'tombstone': False}
    assert result['tables']['consents']['deleted'] == 1
    assert len(backend.query('SELECT id FROM users')) == users - 1 and backend.references_to(subject) == {}


@pytest.fixture
def failing_third_table(backend):
    """Makes deleting from follows (the third table of the erasure order) fail."""
    if backend.kind == 'sqlite':
        backend.script("CREATE TRIGGER rgpd_test_fail BEFORE DELETE ON follows BEGIN SELECT RAISE(ABORT, 'injected failure'); END;")
    else:
        backend.script(
            "CREATE FUNCTION rgpd_test_fail() RETURNS trigger LANGUAGE plpgsql AS $$ BEGIN RAISE EXCEPTION 'injected failure'; END $$;"
            'CREATE TRIGGER rgpd_test_fail BEFORE DELETE ON follows FOR EACH ROW EXECUTE FUNCTION rgpd_test_fail();'
        )
    return backend


def test_erase_failure_halfway_changes_nothing(failing_third_table, tmp_path):
    backend = failing_third_table
    subject = pick_subject(backend)
    before = backend.dump()
    ledger = str(tmp_path / 'ledger.jsonl')
    with backend.open() as db:
        rgpd = engine(db)
        assert rgpd.order[:3] == ['posts', 'messages', 'follows']
        with pytest.raises(_rgpd.DbError, match='injected failure'):
            rgpd.erase('acme', subject, ledger_file=ledger)
    assert backend.dump() == before
    assert _rgpd.LEDGER_TABLE not in backend.tables()
    assert not os.path.exists(ledger)


def test_erase_with_killed_postgresql_connection_changes_nothing(backend, tmp_path):
    if backend.kind != 'postgresql':
        pytest.skip('PostgreSQL only')
    import psycopg  # pylint: disable=import-outside-toplevel
    backend.script(
        "CREATE FUNCTION rgpd_test_sleep() RETURNS trigger LANGUAGE plpgsql AS $$ BEGIN PERFORM pg_sleep(30); RETURN OLD; END $$;"
        'CREATE TRIGGER rgpd_test_sleep BEFORE DELETE ON follows FOR EACH STATEMENT EXECUTE FUNCTION rgpd_test_sleep();'
    )
    subject = pick_subject(backend)
    before = backend.dump()
    terminated = []

    def killer():
        with psycopg.connect(backend.dsn, autocommit=True) as conn:
            deadline = time.monotonic() + 20
            while time.monotonic() < deadline and not terminated:
                rows = conn.execute("SELECT pid FROM pg_stat_activity WHERE wait_event = 'PgSleep' AND datname = current_database()").fetchall()
                for (pid,) in rows:
                    terminated.append(conn.execute('SELECT pg_terminate_backend(%s)', (pid,)).fetchone()[0])
                time.sleep(0.05)

    thread = threading.Thread(target=killer)
    thread.start()
    try:
        with backend.open() as db, pytest.raises(_rgpd.DbError) as caught:
            engine(db).erase('acme', subject, ledger_file=str(tmp_path / 'ledger.jsonl'))
    finally:
        thread.join(30)
    assert terminated == [True]
    assert backend.postgres.password not in str(caught.value)
    assert backend.dump() == before
    assert not os.path.exists(tmp_path / 'ledger.jsonl')


def test_replay_after_backup_restore(backend, tmp_path):
    subject = pick_subject(backend)
    second = backend.query('SELECT id FROM users WHERE tenant_id = ? AND id <> ? ORDER BY id DESC', (tenant_id(backend), subject))[0][0]
    ledger = str(tmp_path / 'ledger.jsonl')
    saved = backup(backend, tmp_path)
    with backend.open() as db:
        first = engine(db).erase('acme', subject, ledger_file=ledger)
        engine(db).erase('acme', second, ledger_file=ledger)
    erased = backend.dump()
    restore(backend, saved)
    assert backend.references_to(subject) and backend.references_to(second)
    with backend.open(read_only=True) as db:
        planned = engine(db, check_mode=True).replay(ledger)
    assert planned['changed'] is True and planned['erased'] == 2
    assert backend.references_to(subject)
    with backend.open() as db:
        replayed = engine(db).replay(ledger, ledger_table=True)
        assert replayed['erased'] == 2 and replayed['changed'] is True
        assert replayed['replayed'][0]['entry_id'] == first['ledger_entry_id'] and replayed['replayed'][0]['found'] is True
        assert engine(db).inventory('acme', subject)['total_rows'] == 0
        # Idempotent: nobody left to erase.
        again = engine(db).replay(ledger)
    assert again['changed'] is False and again['erased'] == 0 and all(not item['found'] for item in again['replayed'])
    assert backend.references_to(subject) == {} and backend.references_to(second) == {}
    restored = backend.dump()
    assert len(restored['users']) == len(erased['users']) and len(restored['messages']) == len(erased['messages'])
    assert len(backend.query(f'SELECT * FROM {_rgpd.LEDGER_TABLE} WHERE replay_of IS NOT NULL')) == 2


def test_replay_skips_aborted_entries_and_other_tenants(backend, tmp_path):
    subject = pick_subject(backend)
    ledger = str(tmp_path / 'ledger.jsonl')
    _rgpd.append_ledger_file(ledger, {'entry_id': 'e1', 'tenant': 'acme', 'subject': _rgpd.pseudonym(subject, KEY), 'state': 'pending'})
    _rgpd.append_ledger_file(ledger, {'entry_id': 'e1', 'state': 'aborted'})
    _rgpd.append_ledger_file(ledger, {'entry_id': 'e2', 'tenant': 'acme', 'subject': _rgpd.pseudonym(subject, KEY), 'state': 'pending'})
    with open(ledger, 'a', encoding='utf-8') as handle:
        handle.write('{"entry_id": "torn')
    with backend.open() as db:
        assert engine(db).replay(ledger, tenant='globex')['replayed'] == []
        result = engine(db).replay(ledger, tenant='acme')
    assert [item['entry_id'] for item in result['replayed']] == ['e2'] and result['erased'] == 0
    assert result['replayed'][0]['status'] == 'unverified' and result['unverified'] == 1
    with backend.open() as db:
        result = engine(db).replay(ledger, tenant='acme', allow_unverified=True)
    assert [item['entry_id'] for item in result['replayed']] == ['e2'] and result['erased'] == 1
    with pytest.raises(RgpdError, match='cannot read ledger file'):
        _rgpd.read_ledger_file(str(tmp_path / 'missing.jsonl'))
    (tmp_path / 'bad.jsonl').write_text('not json\n')
    with pytest.raises(RgpdError, match='unreadable ledger line'):
        _rgpd.read_ledger_file(str(tmp_path / 'bad.jsonl'))
    (tmp_path / 'noid.jsonl').write_text('{"state": "pending"}\n')
    with pytest.raises(RgpdError, match='without entry_id'):
        _rgpd.read_ledger_file(str(tmp_path / 'noid.jsonl'))


# ---------------------------------------------------------------------------
# anonymise and consent
# ---------------------------------------------------------------------------

def test_anonymise_is_deterministic_and_idempotent(backend):
    subject = pick_subject(backend)
    email, ip = backend.query('SELECT email, last_login_ip FROM users WHERE id = ?', (subject,))[0]
    before = backend.dump()
    with backend.open(read_only=True) as db:
        planned = engine(db, check_mode=True).anonymise('acme', subject)
    assert backend.dump() == before and planned['changed'] is True
    with backend.open() as db:
        result = engine(db).anonymise('acme', subject)
        again = engine(db).anonymise('acme', subject)
    assert result['tables'] == planned['tables'] and result['changed'] is True
    assert again['changed'] is False and all(entry['anonymised'] == 0 for entry in again['tables'].values())
    row = backend.query('SELECT id, name, email, phone, address, last_login_ip FROM users WHERE id = ?', (subject,))[0]
    assert row[0] == subject and row[1].startswith('anon-') and row[2] == _rgpd.pseudonym(email, KEY) and row[3] is None and row[4] == '[redacted]'
    assert row[5] == (_rgpd_values.mask(ip) if ip else None)
    # Only the subject's side of the shared messages: messages received keep their body.
    received = backend.query('SELECT body FROM messages WHERE recipient_id = ?', (subject,))
    assert received and ('[redacted]',) not in received
    assert set(backend.query('SELECT body FROM messages WHERE sender_id = ?', (subject,))) == {('[redacted]',)}
    assert backend.references_to(subject)


def test_consent_grant_withdraw_status(backend):
    subject = pick_subject(backend)
    with backend.open() as db:
        rgpd = engine(db)
        status = rgpd.consent('acme', subject, 'status')
        assert status['changed'] is False and set(status['consents']) <= set(DEMO_MAP.consent.purposes)
        want = not status['consents']['newsletter']['granted']
        action = 'grant' if want else 'withdraw'
        checked = engine(db, check_mode=True).consent('acme', subject, action, 'newsletter', 'preference_center')
        assert checked['changed'] is True and checked['consent']['granted'] is want
        assert rgpd.consent('acme', subject, 'status')['consents']['newsletter']['granted'] is not want
        done = rgpd.consent('acme', subject, action, 'newsletter', 'preference_center', at='2030-01-01T00:00:00Z')
        assert done['changed'] is True and done['consent'] == {'purpose': 'newsletter', 'granted': want, 'source': 'preference_center',
                                                               'at': '2030-01-01T00:00:00Z'}
        assert rgpd.consent('acme', subject, action, 'newsletter', 'preference_center')['changed'] is False
        assert rgpd.consent('acme', subject, 'status', 'newsletter')['consent']['granted'] is want
        for args, message in ((('grant', 'spam'), 'unknown consent purpose'), (('grant',), 'needs a purpose'), (('maybe', 'newsletter'), 'must be one of')):
            with pytest.raises(RgpdError, match=message):
                rgpd.consent('acme', subject, *args)
        with pytest.raises(RgpdError, match='no such subject'):
            rgpd.consent('globex', subject, 'status')
    rows = backend.query('SELECT granted, source, at FROM consents WHERE user_id = ? AND purpose = ? ORDER BY at DESC', (subject, 'newsletter'))
    assert rows[0] == (int(want), 'preference_center', '2030-01-01T00:00:00Z')
    with backend.open() as db, pytest.raises(RgpdError, match='no consent section'):
        engine(db, load_data_map({**json.loads(json.dumps(raw_demo_map())), 'consent': None})).consent('acme', subject, 'status')


def raw_demo_map():
    import yaml  # pylint: disable=import-outside-toplevel
    with open(DEMO_DATA_MAP, encoding='utf-8') as handle:
        return yaml.safe_load(handle)


# ---------------------------------------------------------------------------
# tenant scoping, hostile input, schema checks
# ---------------------------------------------------------------------------

def test_same_subject_id_in_two_tenants(backend, tmp_path):
    accounts = load_data_map(ACCOUNTS_MAP)
    dest = str(tmp_path / 'a-u1.zip')
    with backend.open() as db:
        rgpd = engine(db, accounts)
        assert rgpd.inventory('a', 'u1')['tables'] == {'accounts': {'rows': 1}, 'notes': {'rows': 2}}
        assert rgpd.inventory('b', 'u1')['tables'] == {'accounts': {'rows': 1}, 'notes': {'rows': 1}}
        rgpd.export('a', 'u1', dest)
        notes = json.loads(read_archive(dest)['notes.json'])
        assert sorted(note['body'] for note in notes) == ['note a/u1 #1', 'note a/u1 #2']
        assert [row['email'] for row in json.loads(read_archive(dest)['accounts.json'])] == ['u1@a.example']
        assert rgpd.erase('a', 'u1')['tables']['notes']['deleted'] == 2
    assert backend.query("SELECT tenant, uid, body FROM notes WHERE uid = 'u1'") == [('b', 'u1', 'note b/u1')]
    assert backend.query("SELECT tenant FROM accounts WHERE uid = 'u1'") == [('b',)]


def test_subject_of_another_tenant_is_not_touched(backend, tmp_path):
    subject = pick_subject(backend)
    before = backend.dump()
    with backend.open() as db:
        rgpd = engine(db)
        inventory = rgpd.inventory('globex', subject)
        assert inventory['subject_found'] is False and inventory['total_rows'] == 0
        assert rgpd.erase('globex', subject)['changed'] is False
        assert rgpd.anonymise('globex', subject)['changed'] is False
        exported = rgpd.export('globex', subject, str(tmp_path / 'x.zip'))
        assert all(entry['rows'] == 0 for entry in exported['tables'].values())
        with pytest.raises(RgpdError, match=r'tenant .* not found'):
            rgpd.inventory('nosuchtenant', subject)
    assert backend.dump() == before


def test_hostile_subject_ids(backend):
    before = backend.dump()
    with backend.open() as db:
        rgpd = engine(db)
        accounts = engine(db, load_data_map(ACCOUNTS_MAP))
        for hostile in HOSTILE:
            with pytest.raises(RgpdError, match='subject_id must be an integer') as caught:
                rgpd.erase('acme', hostile)
            assert hostile not in str(caught.value)
            with pytest.raises(RgpdError, match=r'tenant .* not found'):
                rgpd.inventory(hostile, 1)
            assert accounts.inventory('a', hostile)['total_rows'] == 0
            assert accounts.erase('a', hostile)['changed'] is False
            assert accounts.inventory(hostile, 'u1')['total_rows'] == 0
    assert backend.dump() == before


def test_hostile_subject_id_is_bound_as_a_value(backend):
    evil = "'; DROP TABLE notes; --"
    with backend.open() as db:
        rgpd = engine(db, load_data_map(ACCOUNTS_MAP))
        assert rgpd.inventory('a', evil)['tables'] == {'accounts': {'rows': 1}, 'notes': {'rows': 1}}
        assert rgpd.erase('a', evil)['changed'] is True
    assert 'notes' in backend.tables() and 'users' in backend.tables()
    assert backend.query('SELECT count(*) FROM notes')[0][0] == 4
    assert backend.query('SELECT count(*) FROM accounts WHERE uid = ?', (evil,))[0][0] == 0


def test_data_map_that_does_not_fit_the_database(backend):
    before = backend.dump()
    data = raw_demo_map()
    data['tables']['ghost'] = {'subject_columns': ['user_id']}
    data['tables']['posts']['columns']['nope'] = 'redact'
    data['tables']['users']['columns']['tenant_id'] = 'null'
    data['tables']['orders']['columns']['user_id'] = 'hmac'
    data['tables']['consents']['columns']['granted'] = 'redact'
    data['tables']['order_items']['parent']['references'] = 'missing_ref'
    data['consent']['source_column'] = 'nowhere'
    data['tenant_lookup']['key_column'] = 'no_slug'
    with backend.open() as db, pytest.raises(RgpdError) as caught:
        engine(db, load_data_map(data))
    message = str(caught.value)
    for expected in ("table 'ghost' does not exist", "table 'posts' has no column 'nope'", 'strategy null on a NOT NULL column',
                     'a subject or tenant column cannot be anonymised', "strategy 'redact' writes text", "no column 'missing_ref'",
                     "consent.source_column: table 'consents' has no column 'nowhere'", "no column 'no_slug'"):
        assert expected in message, expected
    assert backend.dump() == before


def test_unmapped_table_referencing_the_subject_is_refused(backend):
    backend.script('CREATE TABLE sessions (id INTEGER PRIMARY KEY, user_id INTEGER REFERENCES users (id))')
    data = raw_demo_map()
    with backend.open() as db:
        with pytest.raises(RgpdError, match="table 'sessions' has a foreign key to 'users' but is not in the data map"):
            engine(db, load_data_map(data))
        data['tables']['sessions'] = {'subject_columns': ['user_id'], 'erasure': 'anonymise'}
        data['tables']['users']['erasure'] = 'delete'
        with pytest.raises(RgpdError) as caught:
            engine(db, load_data_map(data))
    assert 'NOT NULL and the subject table is deleted' in str(caught.value)


def test_subject_table_delete_sets_nullable_references_to_null(backend):
    data = raw_demo_map()
    data['tables']['users']['erasure'] = 'delete'
    for name in ('messages', 'orders'):
        data['tables'][name]['erasure'] = 'delete'
    data['tables']['order_items']['erasure'] = 'delete'
    data['tables']['uploads']['erasure'] = 'anonymise'
    subject = pick_subject(backend)
    add_uploads(backend, subject, pick_subject(backend, 'globex'))
    with backend.open() as db:
        result = engine(db, load_data_map(data)).erase('acme', subject)
    assert result['tables']['uploads']['anonymised'] == 1 and result['tables']['users']['deleted'] == 1
    assert backend.query("SELECT user_id, filename FROM uploads WHERE id = 'up-subject'") == [(None, '[redacted]')]
    assert backend.references_to(subject) == {}
    if backend.kind == 'sqlite':
        assert backend.query('PRAGMA foreign_key_check') == []


def test_engine_rejects_bad_keys_and_trace_ids(backend):
    with backend.open(read_only=True) as db:
        with pytest.raises(RgpdError, match='at least 16 bytes'):
            Engine(db, DEMO_MAP, b'short')
        with pytest.raises(RgpdError, match='trace_id'):
            Engine(db, DEMO_MAP, KEY, trace_id='NOT-A-TRACE')
        with pytest.raises(RgpdError, match='unknown operation'):
            _rgpd_request.run(engine(db), RgpdRequest('shred'))
        with pytest.raises(RgpdError, match='replay needs'):
            _rgpd_request.run(engine(db), RgpdRequest('replay'))


# ---------------------------------------------------------------------------
# export encodings: the rows the database writes as text and the rows the engine encodes
# ---------------------------------------------------------------------------

ODD_TEXTS = ('plain', 'comma, inside', 'quote " inside', 'line\nbreak', 'carriage\rreturn', 'tab\tand \\ backslash', 'é ü 漢字 \u2028',
             'control \x01\x1f', '', None, "'; DROP TABLE samples; --", '{"looks": "like json"}')
WIDE_COLUMNS = 60  # more than the database builds JSON for


def _odd_schema(backend):
    """Tables holding values of every kind, for one subject table ``people``; the data map that goes with them."""
    if backend.kind == 'sqlite':
        backend.script(
            'CREATE TABLE people (id INTEGER PRIMARY KEY, tenant TEXT NOT NULL, name TEXT);'
            'CREATE TABLE samples (id INTEGER PRIMARY KEY, tenant TEXT NOT NULL, uid INTEGER NOT NULL, label TEXT, score INTEGER,'
            ' data BLOB, ratio REAL, born DATE);'
            'CREATE TABLE remarks (id INTEGER PRIMARY KEY, tenant TEXT NOT NULL, uid INTEGER NOT NULL, body TEXT, flag BOOLEAN);'
            f'CREATE TABLE wide (id INTEGER PRIMARY KEY, tenant TEXT NOT NULL, uid INTEGER NOT NULL, '
            f'{", ".join(f"c{index} TEXT" for index in range(WIDE_COLUMNS))});'
        )
    else:
        backend.script(
            'CREATE TABLE people (id BIGINT PRIMARY KEY, tenant TEXT NOT NULL, name TEXT);'
            'CREATE TABLE samples (id BIGINT PRIMARY KEY, tenant TEXT NOT NULL, uid BIGINT NOT NULL, label TEXT, score INTEGER,'
            ' data BYTEA, ratio DOUBLE PRECISION, born DATE);'
            'CREATE TABLE remarks (id BIGINT PRIMARY KEY, tenant TEXT NOT NULL, uid BIGINT NOT NULL, body TEXT, flag BOOLEAN);'
            f'CREATE TABLE wide (id BIGINT PRIMARY KEY, tenant TEXT NOT NULL, uid BIGINT NOT NULL, '
            f'{", ".join(f"c{index} TEXT" for index in range(WIDE_COLUMNS))});'
        )
    blob = b'\x00\xffbinary'
    backend.execute('INSERT INTO people (id, tenant, name) VALUES (?, ?, ?), (?, ?, ?)', (1, 't', 'Zoé, "Z"', 2, 't', 'other'))
    samples = [
        (1, 't', 1, 'plain', 7, None, None, '2024-02-29'),
        (2, 't', 1, 'blob', 8, blob, None, None),
        (3, 't', 1, 'real', 9, None, 0.1 + 0.2, '2024-01-01'),
        (4, 't', 1, 'huge', 2 ** 31 - 1, None, 1e300, None),
        (5, 't', 2, 'not the subject', 1, None, None, None),
    ]
    if backend.kind == 'sqlite':
        # Any column may hold anything in SQLite: a real in an integer column, a blob in a text column.
        samples.append((6, 't', 1, b'text column blob', 2.5, None, 1.0, None))
    for row in samples:
        backend.execute('INSERT INTO samples (id, tenant, uid, label, score, data, ratio, born) VALUES (?, ?, ?, ?, ?, ?, ?, ?)', row)
    for index, text in enumerate(ODD_TEXTS):
        backend.execute('INSERT INTO remarks (id, tenant, uid, body, flag) VALUES (?, ?, ?, ?, ?)',
                        (index + 1, 't', 1, text, None if text is None else index % 2 == 0))
    backend.execute('INSERT INTO remarks (id, tenant, uid, body, flag) VALUES (?, ?, ?, ?, ?)', (100, 't', 2, 'not the subject', True))
    wide_columns = ', '.join(f'c{index}' for index in range(WIDE_COLUMNS))
    for row_id, uid in ((1, 1), (2, 1), (3, 2)):
        values = [ODD_TEXTS[(row_id + index) % len(ODD_TEXTS)] for index in range(WIDE_COLUMNS)]
        backend.execute(f'INSERT INTO wide (id, tenant, uid, {wide_columns}) VALUES (?, ?, ?, {", ".join("?" for dummy in values)})',
                        (row_id, 't', uid, *values))
    return load_data_map({
        'version': 'odd-1',
        'subject': {'table': 'people', 'id_column': 'id', 'tenant_column': 'tenant'},
        'tables': {
            'people': {'subject_columns': ['id'], 'tenant_column': 'tenant'},
            'samples': {'subject_columns': ['uid'], 'tenant_column': 'tenant'},
            'remarks': {'subject_columns': ['uid'], 'tenant_column': 'tenant'},
            'wide': {'subject_columns': ['uid'], 'tenant_column': 'tenant'},
        },
    })


def _reference_members(backend, table, where):
    """``<table>.json`` and ``<table>.csv`` as the engine writes them when it encodes every row itself."""
    if backend.kind == 'sqlite':
        conn = rgpd_fixtures.sqlite3.connect(backend.path)
        try:
            cursor = conn.execute(f'SELECT * FROM "{table}" WHERE {where} ORDER BY id')
            rows, columns = cursor.fetchall(), [entry[0] for entry in cursor.description]
        finally:
            conn.close()
    else:
        with rgpd_fixtures.pg_connect(backend.dsn) as conn:
            cursor = conn.execute(f'SELECT * FROM "{table}" WHERE {where} ORDER BY id')
            rows, columns = cursor.fetchall(), [entry.name for entry in cursor.description]
    encode = json.JSONEncoder(ensure_ascii=False, separators=(',', ':'), default=_rgpd_values.json_value).encode
    objects = [encode(dict(zip(columns, row, strict=True))) for row in rows]
    text = io.StringIO()
    writer = csv.writer(text)
    writer.writerow(columns)
    writer.writerows([[_rgpd_values.csv_value(value) for value in row] for row in rows])
    return ('[' + ''.join(('\n' if index == 0 else ',\n') + item for index, item in enumerate(objects)) + '\n]\n').encode(), text.getvalue().encode()


def test_export_writes_every_kind_of_value_as_the_engine_encodes_it(backend, tmp_path):
    data_map = _odd_schema(backend)
    dest = str(tmp_path / 'odd.zip')
    with backend.open(read_only=True) as db:
        result = engine(db, data_map).export('t', 1, dest)
        if backend.kind == 'sqlite':
            assert db.row_text(engine(db, data_map).info['wide'], 't0') is None
        else:
            info = engine(db, data_map).info
            assert db.row_text(info['samples'], 't0') is None and db.row_text(info['remarks'], 't0') is not None
    members = read_archive(dest)
    manifest = json.loads(members['manifest.json'])
    assert manifest['tables'] == {'people': {'rows': 1}, 'samples': {'rows': 5 if backend.kind == 'sqlite' else 4},
                                  'remarks': {'rows': len(ODD_TEXTS)}, 'wide': {'rows': 2}}
    for table, where in (('people', "id = 1 AND tenant = 't'"), ('samples', "uid = 1 AND tenant = 't'"), ('remarks', "uid = 1 AND tenant = 't'"),
                         ('wide', "uid = 1 AND tenant = 't'")):
        expected_json, expected_csv = _reference_members(backend, table, where)
        assert members[f'{table}.json'] == expected_json, table
        assert members[f'{table}.csv'] == expected_csv, table
        for ext in ('json', 'csv'):
            entry = manifest['files'][f'{table}.{ext}']
            assert entry['sha256'] == hashlib.sha256(members[f'{table}.{ext}']).hexdigest() and entry['size'] == len(members[f'{table}.{ext}'])
    samples = {row['label']: row for row in json.loads(members['samples.json'])}
    assert samples['blob']['data'] == b'\x00\xffbinary'.hex() and samples['real']['ratio'] == 0.1 + 0.2 and samples['huge']['ratio'] == 1e300
    assert [row['body'] for row in json.loads(members['remarks.json'])] == list(ODD_TEXTS)
    assert list(csv.reader(io.StringIO(members['remarks.csv'].decode(), newline='')))[1:][3][3] == 'line\nbreak'
    assert result['archive']['files'] == manifest['files']


def test_export_of_a_table_without_rows_and_of_one_column(backend, tmp_path):
    backend.script('CREATE TABLE solo (id TEXT PRIMARY KEY, tenant TEXT NOT NULL); CREATE TABLE empty_notes (id TEXT PRIMARY KEY, uid TEXT);'
                   'CREATE TABLE marks (uid TEXT PRIMARY KEY)')
    backend.execute("INSERT INTO solo (id, tenant) VALUES ('', 't'), ('x,y', 't')")
    backend.execute("INSERT INTO marks (uid) VALUES (''), ('x,y')")
    data_map = load_data_map({'version': 'solo-1', 'subject': {'table': 'solo', 'id_column': 'id', 'tenant_column': 'tenant'},
                              'tables': {'solo': {'subject_columns': ['id']}, 'empty_notes': {'subject_columns': ['uid']},
                                         'marks': {'subject_columns': ['uid']}}})
    dest = str(tmp_path / 'solo.zip')
    with backend.open(read_only=True) as db:
        engine(db, data_map).export('t', 'x,y', dest)
    members = read_archive(dest)
    assert members['solo.csv'] == b'id,tenant\r\n"x,y",t\r\n' and json.loads(members['solo.json']) == [{'id': 'x,y', 'tenant': 't'}]
    assert members['empty_notes.csv'] == b'id,uid\r\n' and members['empty_notes.json'] == b'[\n]\n'
    assert members['marks.csv'] == b'uid\r\n"x,y"\r\n' and members['marks.json'] == b'[\n{"uid":"x,y"}\n]\n'


def test_export_leaves_only_the_archive_and_works_without_nameless_files(backend, tmp_path, monkeypatch):
    subject = pick_subject(backend)
    out = tmp_path / 'out'
    out.mkdir()
    key = base64.urlsafe_b64encode(os.urandom(32)).decode()
    with backend.open(read_only=True) as db:
        first = engine(db).export('acme', subject, str(out / 'a.zip'))
        # A file system without O_TMPFILE: the spool gets a name, removed at once.
        monkeypatch.delattr(os, 'O_TMPFILE', raising=False)
        second = engine(db).export('acme', subject, str(out / 'b.zip'), encryption_key=key)
    assert sorted(os.listdir(out)) == ['a.zip', 'b.zip']
    plain = str(tmp_path / 'b-plain.zip')
    _rgpd.decrypt_archive(str(out / 'b.zip'), plain, key)
    assert read_archive(plain).keys() == read_archive(str(out / 'a.zip')).keys()
    assert json.loads(read_archive(plain)['manifest.json'])['files'].keys() == first['archive']['files'].keys() == second['archive']['files'].keys()
    for name, entry in json.loads(read_archive(plain)['manifest.json'])['files'].items():
        assert hashlib.sha256(read_archive(plain)[name]).hexdigest() == entry['sha256'] == first['archive']['files'][name]['sha256'], name


def test_spool_is_encrypted_on_disk(tmp_path):
    spool = _rgpd_archive.Spool(str(tmp_path), '.x.rgpd-tmp-1-spool', encrypted=True)
    try:
        spool.reset()
        spool.write(b'secret row, ' * 1000)
        spool.file.flush()
        spool.file.seek(0)
        assert b'secret' not in spool.file.read()
        copied = io.BytesIO()
        assert spool.copy_to(copied) == 12000 and copied.getvalue() == b'secret row, ' * 1000
        spool.reset()
        spool.write(b'next')
        copied = io.BytesIO()
        assert spool.copy_to(copied) == 4 and copied.getvalue() == b'next'
    finally:
        spool.close()
    assert not os.listdir(tmp_path)


def test_prefetched_stops_its_reader_and_passes_errors():
    closed = []

    def batches(fail):
        try:
            for index in range(100):
                if fail and index == 3:
                    raise _rgpd.DbError('query failed')
                yield [index]
        finally:
            closed.append(fail)

    assert [item[0] for item in _rgpd_batches.prefetched(batches(False))] == list(range(100))
    with pytest.raises(_rgpd.DbError, match='query failed'):
        list(_rgpd_batches.prefetched(batches(True)))
    consumer = _rgpd_batches.prefetched(batches(None), depth=1)
    assert next(consumer) == [0]
    consumer.close()  # the consumer stops early: the reader stops too and closes the stream
    assert closed == [False, True, None]


def test_export_in_check_mode_accepts_a_folder_still_to_be_created(backend, tmp_path):
    subject = pick_subject(backend)
    dest = str(tmp_path / 'not-yet' / 'export.zip')
    with backend.open(read_only=True) as db:
        checked = engine(db, check_mode=True).export('acme', subject, dest)
        assert checked['changed'] is True and checked['archive'] == {'path': dest, 'encrypted': False}
        for bad, message in (('relative.zip', 'absolute'), (str(tmp_path), 'is a directory')):
            with pytest.raises(RgpdError, match=message):
                engine(db, check_mode=True).export('acme', subject, bad)
        with pytest.raises(RgpdError, match='does not exist'):
            engine(db).export('acme', subject, dest)
    assert not os.path.exists(tmp_path / 'not-yet')
