# Copyright (c) Dihya ops maintainers
# GNU General Public License v3.0+ (see LICENSES/GPL-3.0-or-later.txt or https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later

"""Tests of the RGPD database adapter on a real SQLite file and a real PostgreSQL database."""

from __future__ import annotations

import shutil
import sqlite3

import pytest

from ansible_collections.dihya.ops.plugins.module_utils import _db_url, _optional, _rgpd_db
from ansible_collections.dihya.ops.plugins.module_utils._rgpd_db import DbError, open_database, quote
from ansible_collections.dihya.ops.tests.unit.plugins import rgpd_fixtures

sqlite_template, pg_template, backend = rgpd_fixtures.make_fixtures('db', kinds=('sqlite', 'postgresql'))


@pytest.mark.parametrize('identifier', ("users; DROP TABLE users; --", 'a"b', 'x/*', '', None, 'x' * 64))
def test_quote_refuses_anything_but_plain_identifiers(identifier):
    with pytest.raises(DbError, match='refusing SQL identifier'):
        quote(identifier)


def test_quote():
    assert quote('order_items') == '"order_items"'


def test_introspection(backend):
    with backend.open(read_only=True) as db:
        info = db.introspect(['users', 'follows', 'uploads', 'nosuchtable'])
        assert set(info) == {'users', 'follows', 'uploads'}
        users = info['users']
        assert list(users.columns)[:3] == ['id', 'tenant_id', 'name'] and users.primary_key == ('id',)
        assert users.columns['id'].kind == 'integer' and users.columns['id'].generated
        assert users.columns['email'].kind == 'text' and users.columns['email'].notnull and not users.columns['phone'].notnull
        assert info['follows'].primary_key == ('follower_id', 'followee_id') and not info['follows'].columns['follower_id'].generated
        assert info['follows'].references == frozenset({'users'})
        assert info['uploads'].columns['id'].kind == 'text' and not info['uploads'].columns['id'].generated
        assert db.referencing_tables('users') == {'posts', 'messages', 'follows', 'consents', 'orders', 'uploads'}


def test_streaming_and_transactions(backend):
    with backend.open() as db:
        rows = list(db.stream(db.sql('SELECT id FROM users WHERE id > ? ORDER BY id'), (0,), batch=7))
        assert len(rows) == 36 and rows[0][0] == 1
        with pytest.raises(RuntimeError), db.transaction():
            db.execute(db.sql('DELETE FROM follows WHERE follower_id = ?'), (1,))
            raise RuntimeError('boom')
        with db.transaction(), pytest.raises(DbError, match='nested'), db.transaction():
            pass
        assert db.query('SELECT count(*) FROM follows WHERE follower_id = 1')[0][0] > 0
        with db.transaction():
            assert db.execute(db.sql('DELETE FROM follows WHERE follower_id = ?'), (1,)) > 0
        assert db.query('SELECT count(*) FROM follows WHERE follower_id = 1')[0][0] == 0
        with pytest.raises(DbError, match='failed'):
            db.query('SELECT nope FROM users')
        with pytest.raises(DbError, match='failed'):
            db.execute('DELETE FROM nosuchtable')
        with pytest.raises(DbError, match='failed'):
            list(db.stream('SELECT nope FROM users'))
        with pytest.raises(DbError, match='failed'):
            db.executemany(db.sql('INSERT INTO nosuchtable VALUES (?)'), [(1,)])


def test_read_only_sqlite_refuses_writes(tmp_path, sqlite_template):
    path = str(tmp_path / 'ro.db')
    shutil.copyfile(sqlite_template, path)
    with open_database(path=path, read_only=True) as db, pytest.raises(DbError, match='readonly'):
        db.execute('DELETE FROM follows')


def test_open_errors(tmp_path, postgres):
    with pytest.raises(DbError, match='either a SQLite database path or a PostgreSQL DSN'):
        open_database()
    with pytest.raises(DbError, match='either'):
        open_database(path='x', dsn='y')
    with pytest.raises(DbError, match='does not exist'):
        open_database(path=str(tmp_path / 'missing.db'))
    (tmp_path / 'junk.db').write_bytes(b'this is not a database' * 100)
    with pytest.raises(DbError, match='not a database'):
        open_database(path=str(tmp_path / 'junk.db')).query('SELECT count(*) FROM sqlite_master')
    with pytest.raises(DbError, match='invalid PostgreSQL DSN'):
        open_database(dsn='mysql://root:hunter2@localhost/x')
    with pytest.raises(DbError, match='invalid PostgreSQL DSN') as caught:
        open_database(dsn='postgresql://u:hunter2@[bad')
    assert 'hunter2' not in str(caught.value)
    wrong = postgres.dsn(password='Wr0ng-s3cret-pw')
    with pytest.raises(DbError, match='cannot connect to PostgreSQL') as caught:
        open_database(dsn=wrong)
    assert 'Wr0ng-s3cret-pw' not in str(caught.value) and postgres.password not in str(caught.value)
    with pytest.raises(DbError, match='refusing SQL identifier'):
        open_database(dsn=postgres.dsn(), schema='public; DROP SCHEMA public')


def test_password_is_scrubbed_from_statement_errors(postgres):
    with open_database(dsn=postgres.dsn()) as db, pytest.raises(DbError) as caught:
        db.query(f"SELECT '{postgres.password}'::integer")
    assert postgres.password not in str(caught.value) and _db_url.MASK in str(caught.value)


def test_missing_psycopg_is_explained(monkeypatch):
    def missing(name):
        raise ImportError(f'No module named {name!r}')

    monkeypatch.setattr(_optional.importlib, 'import_module', missing)
    with pytest.raises(DbError, match='needs the psycopg Python library'):
        open_database(dsn='postgresql://u@127.0.0.1/x')


def test_sqlite_foreign_keys_setting(tmp_path):
    path = str(tmp_path / 'fk.db')
    sqlite3.connect(path).close()
    with open_database(path=path, foreign_keys=False) as db:
        assert db.query('PRAGMA foreign_keys') == [(0,)]
    with open_database(path=path) as db:
        assert db.query('PRAGMA foreign_keys') == [(1,)]


@pytest.mark.parametrize('name', ('plain.db', 'odd ?#%&=.db'))
def test_sqlite_paths_starting_with_two_slashes(tmp_path, name):
    path = str(tmp_path / name)
    conn = sqlite3.connect(path)
    conn.execute('CREATE TABLE t (id INTEGER PRIMARY KEY)')
    conn.close()
    # POSIX keeps a leading '//' in absolute paths; it must not become the authority of a file: URI.
    for given in ('/' + path, '//' + path.lstrip('/'), '///' + path.lstrip('/')):
        with open_database(path=given, read_only=True) as db:
            assert db.query('SELECT count(*) FROM t') == [(0,)]


def test_base_adapter_leaves_everything_to_subclasses():
    db = _rgpd_db.Database()
    table = _rgpd_db.TableInfo('t', {}, (), frozenset())
    assert db.row_text(table, 't0') is None
    for call in (lambda: db.execute('x'), lambda: db.executemany('x', []), lambda: db.query('x'), lambda: list(db.stream('x')),
                 lambda: db._begin(True), db._commit, db._rollback, lambda: db.introspect([]), lambda: db.referencing_tables('t'), db.close):
        with pytest.raises(NotImplementedError):
            call()


UNIQUE_SCHEMA = """
CREATE TABLE k_pk (id INTEGER PRIMARY KEY, t TEXT);
CREATE TABLE k_composite (id INTEGER NOT NULL, t TEXT NOT NULL, PRIMARY KEY (id, t));
CREATE TABLE k_tenant_first (t TEXT NOT NULL, id INTEGER NOT NULL, PRIMARY KEY (t, id));
CREATE TABLE k_constraint (id INTEGER NOT NULL, t TEXT NOT NULL, code TEXT UNIQUE, PRIMARY KEY (id, t));
CREATE TABLE k_index (id INTEGER NOT NULL, t TEXT NOT NULL, PRIMARY KEY (id, t));
CREATE UNIQUE INDEX k_index_id ON k_index (id);
CREATE TABLE k_partial (id INTEGER NOT NULL, t TEXT NOT NULL, PRIMARY KEY (id, t));
CREATE UNIQUE INDEX k_partial_id ON k_partial (id) WHERE t <> 'x';
CREATE TABLE k_expression (id INTEGER NOT NULL, t TEXT NOT NULL, PRIMARY KEY (id, t));
CREATE UNIQUE INDEX k_expression_id ON k_expression ((id + 0));
CREATE TABLE k_plain_index (id INTEGER NOT NULL, t TEXT NOT NULL, PRIMARY KEY (id, t));
CREATE INDEX k_plain_index_id ON k_plain_index (id);
"""
UNIQUE_EXPECTED = {
    'k_pk': {'id': True, 't': False}, 'k_composite': {'id': False, 't': False}, 'k_tenant_first': {'id': False, 't': False},
    'k_constraint': {'id': False, 'code': True}, 'k_index': {'id': True}, 'k_partial': {'id': False}, 'k_expression': {'id': False},
    'k_plain_index': {'id': False},
}


def test_unique_keys_prove_uniqueness_only_when_the_database_guarantees_it(backend):
    extra = ''
    if backend.kind == 'sqlite':
        extra = 'CREATE TABLE k_without_rowid (id TEXT PRIMARY KEY, t TEXT) WITHOUT ROWID; CREATE TABLE k_desc (id INTEGER PRIMARY KEY DESC, t TEXT);'
    else:
        # Only key columns count: INCLUDE columns are carried, not unique. An index not valid yet proves nothing.
        extra = ('CREATE TABLE k_include (id INTEGER NOT NULL, t TEXT NOT NULL); CREATE UNIQUE INDEX k_include_t ON k_include (t) INCLUDE (id);'
                 'CREATE TABLE k_invalid (id INTEGER NOT NULL); CREATE UNIQUE INDEX k_invalid_id ON k_invalid (id);'
                 "UPDATE pg_index SET indisvalid = false WHERE indexrelid = 'k_invalid_id'::regclass;")
    backend.script(UNIQUE_SCHEMA + extra)
    expected = dict(UNIQUE_EXPECTED)
    if backend.kind == 'sqlite':
        expected.update(k_without_rowid={'id': True, 't': False}, k_desc={'id': True})
    else:
        expected.update(k_include={'t': True, 'id': False}, k_invalid={'id': False})
    with backend.open(read_only=True) as db:
        info = db.introspect(list(expected))
    for table, columns in expected.items():
        for column, unique in columns.items():
            assert info[table].unique_on(column) is unique, (table, column)
    assert info['k_composite'].key_text() == '(id, t)' and info['k_tenant_first'].key_text() == '(t, id)'
    assert _rgpd_db.TableInfo('t', {}, (), frozenset()).key_text() == 'no primary key'


def test_referencing_tables_whatever_their_name(backend):
    if backend.kind == 'sqlite':
        backend.script('CREATE TABLE "user-notes" (id INTEGER PRIMARY KEY, user_id INTEGER REFERENCES Users (id));'
                       'CREATE TABLE "Sessions" (id INTEGER PRIMARY KEY, user_id INTEGER REFERENCES "USERS");')
        extra = {'user-notes', 'Sessions'}
    else:
        backend.script('CREATE TABLE "user-notes" (id INTEGER PRIMARY KEY, user_id INTEGER REFERENCES users (id));'
                       'CREATE TABLE "Users" (id INTEGER PRIMARY KEY); CREATE TABLE "Sessions" (id INTEGER PRIMARY KEY, user_id INTEGER REFERENCES "Users");'
                       'CREATE SCHEMA other; CREATE TABLE other.posts (id INTEGER PRIMARY KEY, author_id INTEGER REFERENCES public.users (id));'
                       'CREATE TABLE logs (id INTEGER, user_id INTEGER REFERENCES users (id)) PARTITION BY RANGE (id);'
                       'CREATE TABLE logs_1 PARTITION OF logs FOR VALUES FROM (0) TO (100);')
        extra = {'user-notes', 'other.posts', 'logs'}
    with backend.open(read_only=True) as db:
        found = db.referencing_tables('users')
        assert found == {'posts', 'messages', 'follows', 'consents', 'orders', 'uploads'} | extra
        if backend.kind == 'sqlite':
            assert db.fold('Users') == db.fold('USERS') == 'users' and db.fold('É') == 'É'
            assert db.referencing_tables('USERS') == found
        else:
            assert db.fold('Users') == 'Users' and db.referencing_tables('Users') == {'Sessions'}
