# Copyright (c) Dihya ops maintainers
# GNU General Public License v3.0+ (see LICENSES/GPL-3.0-or-later.txt or https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later

"""The RGPD engine on a single-tenant database (no tenant column; ``docs/examples/rgpd-datamap-single-tenant.yml``):
inventory, export, anonymise, erase, consent and replay, with two-sided relations (followers, private messages),
secrets in the user table and ids reused after deletion. Each test runs on SQLite (foreign keys on and off) and
PostgreSQL."""

from __future__ import annotations

import json
import pathlib
import zipfile

import pytest

from ansible_collections.dihya.ops.plugins.module_utils import _rgpd
from ansible_collections.dihya.ops.plugins.module_utils._rgpd import DbError, Engine, RgpdError
from ansible_collections.dihya.ops.plugins.module_utils._rgpd_map import load_data_map, load_data_map_file
from ansible_collections.dihya.ops.tests.unit.plugins import rgpd_fixtures
from ansible_collections.dihya.ops.tests.unit.plugins.rgpd_fixtures import (
    DEMO_DATA_MAP, SINGLE_DATA_MAP, SINGLE_ROWS, SINGLE_USER_REFERENCES, backup, restore, single_tenant_map,
)

single_backend = rgpd_fixtures.make_single_tenant_fixtures('engine')
sqlite_template, pg_template, backend = rgpd_fixtures.make_fixtures('single', kinds=('sqlite',))

KEY = b'pseudonym-key-for-the-rgpd-tests'
MAP = load_data_map(single_tenant_map())
SECRETS = [value for row in SINGLE_ROWS['user'] for value in (row[5], row[6]) if value]


def engine(db, data_map=MAP, check_mode=False):
    return Engine(db, data_map, KEY, check_mode=check_mode)


def references_to(backend, user_id):
    counts = backend.queries([(f'SELECT count(*) FROM "{table}" WHERE "{column}" = ?', (user_id,)) for table, column in SINGLE_USER_REFERENCES])
    return {f'{table}.{column}': rows[0][0] for (table, column), rows in zip(SINGLE_USER_REFERENCES, counts, strict=True) if rows[0][0]}


def add_user(backend, username, member_since, user_id=None):
    """A user with one consent row and nothing shared (its erasure leaves no tombstone); returns its id.

    Without ``user_id`` the database picks the id: on SQLite (INTEGER PRIMARY KEY, no AUTOINCREMENT) max(id) + 1.
    """
    columns = 'username, email, display_name, password_hash, member_since'
    values = [username, f'{username}@example.org', username.title(), f'pbkdf2:sha256:600000${username}$ffff', member_since]
    if user_id is not None:
        columns, values = 'id, ' + columns, [user_id, *values]
    backend.execute(f'INSERT INTO "user" ({columns}) VALUES ({", ".join("?" for dummy in values)})', values)
    found = backend.query('SELECT id FROM "user" WHERE username = ?', (username,))[0][0]
    backend.execute('INSERT INTO consent (user_id, purpose, granted, source, at) VALUES (?, ?, ?, ?, ?)',
                    (found, 'newsletter', 1, 'signup_form', member_since))
    return found


# ---------------------------------------------------------------------------
# inventory: the way to check a map
# ---------------------------------------------------------------------------

def test_inventory_checks_the_example_map_and_counts_both_sides(single_backend):
    before = single_backend.dump()
    with single_backend.open(read_only=True) as db:
        checked = engine(db)
        assert checked.warnings() == []
        for tenant in (None, '', 'main'):
            result = checked.inventory(tenant, 1)
            assert result['tenant'] == 'main' and result['subject_found'] and result['subject'] == _rgpd.pseudonym(1, KEY)
        assert result['tables']['followers'] == {'rows': 3, 'sides': {'follower_id': 1, 'followed_id': 2}}
        assert result['tables']['message'] == {'rows': 3, 'sides': {'sender_id': 2, 'recipient_id': 1}}
        assert result['tables']['user'] == {'rows': 1} and result['tables']['post'] == {'rows': 1} and result['tables']['comment'] == {'rows': 1}
        # A message to oneself is on both sides, and counted once.
        assert checked.inventory(None, 3)['tables']['message'] == {'rows': 1, 'sides': {'sender_id': 1, 'recipient_id': 1}}
        assert checked.inventory(None, 99)['subject_found'] is False
        # The example map itself has no consent table: inventory names the unmapped table that points at the subject.
        with pytest.raises(RgpdError, match="table 'consent' has a foreign key to 'user' but is not in the data map"):
            engine(db, load_data_map_file(SINGLE_DATA_MAP))
    assert single_backend.dump() == before
    single_backend.execute('DROP TABLE consent')
    with single_backend.open(read_only=True) as db:
        assert engine(db, load_data_map_file(SINGLE_DATA_MAP)).inventory(None, 2)['total_rows'] == 8


@pytest.mark.parametrize('tenant', ['acme', 'default', 'MAIN', '../main', "main'; --", 'x' * 5000])
def test_a_request_naming_another_tenant_is_refused(single_backend, tenant):
    with single_backend.open(read_only=True) as db:
        checked = engine(db)
        with pytest.raises(RgpdError, match=r'is not the tenant of this database|is not a valid tenant name') as caught:
            checked.inventory(tenant, 1)
        assert len(str(caught.value)) < 400
        with pytest.raises(RgpdError):
            checked.export(tenant, 1, '/nonexistent/x.zip')


def test_without_a_fixed_name_the_request_names_the_tenant(single_backend):
    data = single_tenant_map()
    del data['tenant']
    with single_backend.open(read_only=True) as db:
        free = engine(db, load_data_map(data))
        assert free.inventory(None, 1)['tenant'] == 'default' and free.inventory('shop', 1)['tenant'] == 'shop'
        with pytest.raises(RgpdError, match='is not a valid tenant name'):
            free.inventory('../../etc', 1)


def test_a_multi_tenant_map_still_needs_its_tenant(backend):
    with backend.open(read_only=True) as db:
        demo = engine(db, load_data_map_file(DEMO_DATA_MAP))
        for tenant in (None, ''):
            with pytest.raises(RgpdError, match='tenant is required: the data map is multi-tenant'):
                demo.inventory(tenant, 1)
        assert demo.inventory('acme', 1)['tenant'] == 'acme'


# ---------------------------------------------------------------------------
# export: either side, never a secret
# ---------------------------------------------------------------------------

def test_export_holds_both_sides_and_no_secret_in_clear(single_backend, tmp_path):
    dest = tmp_path / 'ana.zip'
    with single_backend.open(read_only=True) as db:
        result = engine(db).export(None, 1, str(dest))
    assert result['tenant'] == 'main' and result['changed']
    with zipfile.ZipFile(dest) as archive:
        members = {name: archive.read(name).decode('utf-8') for name in archive.namelist()}
    manifest = json.loads(members['manifest.json'])
    assert manifest['tenant'] == 'main' and manifest['data_map_version'] == 'chirp-1'
    messages = json.loads(members['message.json'])
    assert sorted(row['id'] for row in messages) == [1, 2, 3]
    assert sorted(int(row['follower_id']) for row in json.loads(members['followers.json'])) == [1, 2, 3]
    [user] = json.loads(members['user.json'])
    assert user['username'] == 'ana' and 'password_hash' not in user and 'api_token' not in user
    assert 'password_hash' not in members['user.csv'].splitlines()[0] and 'api_token' not in members['user.csv']
    everything = ''.join(members.values())
    for secret in SECRETS:
        assert secret not in everything
    # Nothing of the other people but their ids: bob's and cleo's profiles are not in the archive.
    assert 'bob@example.org' not in everything and 'Cleo Park' not in everything


# ---------------------------------------------------------------------------
# anonymise and erase: the subject's side only; rows only the subject owns go
# ---------------------------------------------------------------------------

def test_anonymise_changes_the_subjects_side_only_and_is_idempotent(single_backend):
    with single_backend.open() as db:
        result = engine(db).anonymise(None, 1)
    assert result['changed'] and result['tenant'] == 'main'
    rows = dict(single_backend.query('SELECT id, body FROM message'))
    assert rows[1] == rows[3] == '[redacted]' and rows[2] == 'bob to ana: sounds good' and rows[4] == 'cleo note to self'
    [(password_hash, api_token, email, member_since)] = single_backend.query('SELECT password_hash, api_token, email, member_since FROM "user" WHERE id = 1')
    assert password_hash == '[redacted]' and api_token is None and email.startswith('hmac:') and member_since == '2025-01-05T10:00:00Z'
    bob = single_backend.query('SELECT * FROM "user" WHERE id = 2')
    assert bob == [SINGLE_ROWS['user'][1]]
    with single_backend.open() as db:
        assert engine(db).anonymise('main', 1)['changed'] is False


def test_erase_in_check_mode_changes_nothing(single_backend, tmp_path):
    before = single_backend.dump()
    ledger = tmp_path / 'ledger.jsonl'
    with single_backend.open(read_only=True) as db:
        planned = engine(db, check_mode=True).erase(None, 1, ledger_file=str(ledger))
    assert planned['check_mode'] and planned['tables']['followers']['deleted'] == 3 and planned['tables']['message']['anonymised'] == 3
    assert single_backend.dump() == before and not ledger.exists()


def test_erase_keeps_the_other_partys_copy_and_deletes_what_only_the_subject_owns(single_backend, tmp_path):
    ledger = tmp_path / 'state' / 'ledger.jsonl'
    ledger.parent.mkdir()
    with single_backend.open() as db:
        result = engine(db).erase(None, 1, ledger_file=str(ledger))
    assert result['changed'] and result['tenant'] == 'main' and result['fingerprint_recorded']
    tables = result['tables']
    assert tables['followers'] == {'rows': 3, 'deleted': 3, 'anonymised': 0}
    assert tables['comment'] == {'rows': 1, 'deleted': 1, 'anonymised': 0}
    assert tables['message']['anonymised'] == 3 and tables['post']['anonymised'] == 1 and tables['user']['tombstone'] is True
    # No row anywhere holds the erased id any more.
    assert references_to(single_backend, 1) == {}
    [(tombstone, username, password_hash, api_token)] = single_backend.query(
        'SELECT id, username, password_hash, api_token FROM "user" WHERE id NOT IN (2, 3)')
    assert username.startswith('anon-') and password_hash == '[redacted]' and api_token is None
    messages = {row[0]: row[1:] for row in single_backend.query('SELECT id, sender_id, recipient_id, body FROM message')}
    assert messages[1] == (tombstone, 2, '[redacted]') and messages[3] == (tombstone, 2, '[redacted]')
    # bob's message to the erased person stays bob's, pointing at the tombstone.
    assert messages[2] == (2, tombstone, 'bob to ana: sounds good') and messages[4] == (3, 3, 'cleo note to self')
    # bob's comment on the erased person's post stays; the post is kept without its words.
    assert single_backend.query('SELECT id, user_id, body FROM post WHERE id = 1') == [(1, tombstone, '[redacted]')]
    assert single_backend.query('SELECT post_id, user_id, body FROM comment WHERE id = 1') == [(1, 2, 'bob on ana')]
    assert single_backend.query('SELECT follower_id, followed_id FROM followers') == []
    [pending, committed] = [json.loads(line) for line in ledger.read_text(encoding='utf-8').splitlines()]
    assert pending['tenant'] == 'main' and committed['state'] == 'committed'
    text = ledger.read_text(encoding='utf-8')
    assert 'ana' not in text and '2025-01-05' not in text
    with single_backend.open() as db:
        again = engine(db).erase(None, 1, ledger_file=str(ledger))
    assert again['changed'] is False and again['subject_found'] is False


def test_consent_on_a_single_tenant_database(single_backend):
    with single_backend.open() as db:
        status = engine(db).consent(None, 2, 'status')
        assert status['consents']['newsletter']['granted'] is False and status['tenant'] == 'main'
        planned = engine(db, check_mode=True).consent(None, 2, 'grant', 'newsletter', at='2026-01-01T00:00:00Z')
        assert planned['changed'] and single_backend.query('SELECT count(*) FROM consent WHERE user_id = 2') == [(1,)]
        granted = engine(db).consent('main', 2, 'grant', 'newsletter', at='2026-01-01T00:00:00Z')
        assert granted['changed'] and granted['consent']['granted'] is True
        assert engine(db).consent(None, 2, 'grant', 'newsletter')['changed'] is False
        with pytest.raises(RgpdError, match='is not the tenant of this database'):
            engine(db).consent('acme', 2, 'withdraw', 'newsletter')
        with pytest.raises(RgpdError, match='no such subject'):
            engine(db).consent(None, 42, 'grant', 'newsletter')
    assert single_backend.query('SELECT user_id, purpose, granted FROM consent WHERE user_id = 2 ORDER BY id') == [
        (2, 'newsletter', 0), (2, 'newsletter', 1)]


# ---------------------------------------------------------------------------
# replay: integer ids reused after deletion
# ---------------------------------------------------------------------------

def test_replay_never_erases_a_newcomer_who_got_the_erased_id(single_backend, tmp_path):
    ledger = str(tmp_path / 'ledger.jsonl')
    erased = add_user(single_backend, 'dan', '2025-06-01T00:00:00Z')
    assert erased == 4 == single_backend.query('SELECT max(id) FROM "user"')[0][0]
    saved = backup(single_backend, tmp_path)
    with single_backend.open() as db:
        result = engine(db).erase(None, erased, ledger_file=ledger)
    assert result['tables']['user'] == {'rows': 1, 'deleted': 1, 'anonymised': 0, 'tombstone': False}
    # A new person signs up: SQLite hands out the same id again (max + 1); on PostgreSQL the application gives it explicitly.
    newcomer = add_user(single_backend, 'eve', '2026-02-01T00:00:00Z', user_id=None if single_backend.kind == 'sqlite' else erased)
    assert newcomer == erased
    before = single_backend.dump()
    with single_backend.open(read_only=True) as db:
        planned = engine(db, check_mode=True).replay(ledger)
    with single_backend.open() as db:
        replayed = engine(db).replay(ledger, tenant='main')
    for outcome in (planned, replayed):
        [item] = outcome['replayed']
        assert item['status'] == 'mismatch' and item['found'] is True and item['tenant'] == 'main' and outcome['erased'] == 0
    assert single_backend.dump() == before
    assert single_backend.query('SELECT username FROM "user" WHERE id = ?', (newcomer,)) == [('eve',)]
    with single_backend.open() as db, pytest.raises(RgpdError, match='is not the tenant of this database'):
        engine(db).replay(ledger, tenant='acme')
    # The backup from before the erasure holds dan under that id: replay lists him, then erases him again.
    restore(single_backend, saved)
    restored = single_backend.dump()
    with single_backend.open(read_only=True) as db:
        planned = engine(db, check_mode=True).replay(ledger)
    assert [item['status'] for item in planned['replayed']] == ['would_erase'] and single_backend.dump() == restored
    with single_backend.open() as db:
        replayed = engine(db).replay(ledger)
    assert [item['status'] for item in replayed['replayed']] == ['erased'] and references_to(single_backend, erased) == {}
    with single_backend.open() as db:
        assert [item['status'] for item in engine(db).replay(ledger)['replayed']] == ['absent']
    entries = _rgpd.read_ledger_file(ledger)
    assert [entry['tenant'] for entry in entries] == ['main', 'main'] and entries[-1]['replay_of'] == entries[0]['entry_id']
    assert 'dan' not in pathlib.Path(ledger).read_text(encoding='utf-8')


def test_replay_of_entries_written_under_another_name(single_backend, tmp_path):
    """A single-tenant database is its one tenant's: entries written before the map had a fixed name are replayed too."""
    ledger = str(tmp_path / 'ledger.jsonl')
    data = single_tenant_map()
    del data['tenant']
    erased = add_user(single_backend, 'dan', '2025-06-01T00:00:00Z')
    saved = backup(single_backend, tmp_path)
    with single_backend.open() as db:
        assert engine(db, load_data_map(data)).erase('shop', erased, ledger_file=ledger)['tenant'] == 'shop'
    restore(single_backend, saved)
    with single_backend.open() as db:
        replayed = engine(db).replay(ledger)
    assert [(item['tenant'], item['status']) for item in replayed['replayed']] == [('shop', 'erased')]
    assert references_to(single_backend, erased) == {}


# ---------------------------------------------------------------------------
# hostile schemas
# ---------------------------------------------------------------------------

@pytest.mark.parametrize('column', ['tenant_id', 'tenant', 'TenantId', 'org_id', 'organisation_id'])
def test_a_single_tenant_map_on_a_table_with_a_tenant_like_column_warns(single_backend, column):
    single_backend.execute(f'ALTER TABLE "user" ADD COLUMN "{column}" INTEGER')
    with single_backend.open(read_only=True) as db:
        checked = engine(db)
        warnings = checked.warnings()
        assert checked.inventory(None, 1)['subject_found']
    [warning] = [item for item in warnings if 'tenant column' in item]
    assert f"tables.user: column {column!r} looks like a tenant column" in warning and 'declare tenancy: column' in warning


def test_a_subject_id_that_is_not_unique_is_refused_in_a_single_tenant_map(single_backend):
    if single_backend.kind == 'sqlite':
        single_backend.script('CREATE TABLE member (id INTEGER NOT NULL, site INTEGER NOT NULL, email TEXT, PRIMARY KEY (id, site));'
                              'CREATE TABLE note (id INTEGER PRIMARY KEY, member_id INTEGER NOT NULL, body TEXT);')
    else:
        single_backend.script('CREATE TABLE member (id INTEGER NOT NULL, site INTEGER NOT NULL, email TEXT, PRIMARY KEY (id, site));'
                              'CREATE TABLE note (id INTEGER GENERATED BY DEFAULT AS IDENTITY PRIMARY KEY, member_id INTEGER NOT NULL, body TEXT);')
    data_map = load_data_map({
        'version': 1, 'tenancy': 'single',
        'subject': {'table': 'member', 'fingerprint_columns': ['email']},
        'tables': {'member': {'subject_columns': ['id']}, 'note': {'subject_columns': ['member_id'], 'columns': {'body': 'redact'}}},
    })
    with single_backend.open(read_only=True) as db, pytest.raises(RgpdError) as caught:
        engine(db, data_map)
    assert "tables.note: cannot prove each row is the subject's: member.id is not unique on its own (the key is (id, site))" in str(caught.value)


def test_a_deleted_table_that_other_peoples_rows_reference_is_warned_about(single_backend, tmp_path):
    data = single_tenant_map()
    data['tables']['post'] = {'subject_columns': ['user_id'], 'erasure': 'delete'}
    with single_backend.open(read_only=True) as db:
        warnings = engine(db, load_data_map(data)).warnings()
    [warning] = [item for item in warnings if 'foreign key' in item]
    assert "tables.comment: it has a foreign key to 'post', whose rows erasure deletes" in warning and 'erasure: anonymise' in warning
    if single_backend.foreign_keys:
        before = single_backend.dump()
        with single_backend.open() as db, pytest.raises(DbError, match='comment'):
            engine(db, load_data_map(data)).erase(None, 1, ledger_file=str(tmp_path / 'ledger.jsonl'))
        assert single_backend.dump() == before
