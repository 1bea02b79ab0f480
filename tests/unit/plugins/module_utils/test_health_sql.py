# Copyright (c) Dihya ops maintainers
# GNU General Public License v3.0+ (see LICENSES/GPL-3.0-or-later.txt or https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later

"""Tests of the sql check: SQLite files and a real PostgreSQL server, read-only whatever the query says."""

from __future__ import annotations

import dataclasses
import hashlib
import json
import os
import pathlib
import re
import sqlite3
import sys
import time
import typing as t
import uuid

import pytest

from ansible_collections.dihya.ops.plugins.module_utils import _probe_sql
from ansible_collections.dihya.ops.plugins.module_utils._db_url import dsn_secrets, scrub
from ansible_collections.dihya.ops.plugins.module_utils._health import CheckSpec, validate_spec
from ansible_collections.dihya.ops.plugins.module_utils._probe_common import Budget
from ansible_collections.dihya.ops.tests.unit.plugins.module_utils.health_utils import assert_error, check

if t.TYPE_CHECKING:
    from ansible_collections.dihya.ops.tests.unit.conftest import Postgres


# ---------------------------------------------------------------------------
# SQL
# ---------------------------------------------------------------------------

@pytest.fixture
def sqlite_db(tmp_path: pathlib.Path) -> pathlib.Path:
    path = tmp_path / 'app.db'
    with sqlite3.connect(path) as connection:
        connection.execute('CREATE TABLE migrations (version TEXT, applied INTEGER)')
        connection.execute("INSERT INTO migrations VALUES ('0042', 1)")
    connection.close()
    return path


class TestSqlite:
    def test_select_one(self, sqlite_db: pathlib.Path) -> None:
        result = check('sql', db_url=f'sqlite://{sqlite_db}')
        assert result.healthy
        assert result.message == "query returned '1'"
        assert result.details == {'backend': 'sqlite', 'value': '1'}

    def test_four_slashes(self, sqlite_db: pathlib.Path) -> None:
        assert check('sql', db_url=f'sqlite:///{sqlite_db}').healthy

    def test_expect(self, sqlite_db: pathlib.Path) -> None:
        query = 'SELECT version FROM migrations ORDER BY version DESC LIMIT 1'
        assert check('sql', db_url=f'sqlite://{sqlite_db}', query=query, expect='0042').healthy
        result = check('sql', db_url=f'sqlite://{sqlite_db}', query=query, expect='0043')
        assert result.status == 'failed'
        assert result.message == "query returned '0042', expected '0043'"

    def test_expect_compares_as_text(self, sqlite_db: pathlib.Path) -> None:
        assert check('sql', db_url=f'sqlite://{sqlite_db}', query='SELECT applied FROM migrations', expect=1).healthy
        assert check('sql', db_url=f'sqlite://{sqlite_db}', query='SELECT NULL', expect='null').healthy

    def test_no_rows(self, sqlite_db: pathlib.Path) -> None:
        query = "SELECT version FROM migrations WHERE version = 'x'"
        assert check('sql', db_url=f'sqlite://{sqlite_db}', query=query).message == 'query returned no rows'
        result = check('sql', db_url=f'sqlite://{sqlite_db}', query=query, expect='0042')
        assert result.status == 'failed'
        assert result.message == "query returned no rows, expected '0042'"

    def test_missing_file_is_never_created(self, tmp_path: pathlib.Path) -> None:
        path = tmp_path / 'missing.db'
        result = check('sql', db_url=f'sqlite://{path}')
        assert result.status == 'failed'
        assert result.message == f'database file {path} not found'
        assert not path.exists()

    def test_read_only(self, sqlite_db: pathlib.Path) -> None:
        result = check('sql', db_url=f'sqlite://{sqlite_db}', query="INSERT INTO migrations VALUES ('9999', 0)")
        assert_error(result, 'query must be a read-only SELECT or WITH statement (got INSERT)')
        with sqlite3.connect(sqlite_db) as connection:
            assert connection.execute('SELECT count(*) FROM migrations').fetchone() == (1,)
        connection.close()

    def test_bad_query(self, sqlite_db: pathlib.Path) -> None:
        result = check('sql', db_url=f'sqlite://{sqlite_db}', query='SELECT * FROM nowhere')
        assert result.message == 'database error: no such table: nowhere'

    def test_not_a_database(self, tmp_path: pathlib.Path) -> None:
        path = tmp_path / 'notes.txt'
        path.write_text('plain text, long enough to not look like an empty database file ' * 10)
        result = check('sql', db_url=f'sqlite://{path}')
        assert result.status == 'failed'
        assert result.message.startswith('database error: ')

    def test_query_timeout(self, sqlite_db: pathlib.Path) -> None:
        query = 'WITH RECURSIVE n(i) AS (SELECT 1 UNION ALL SELECT i + 1 FROM n WHERE i < 1000000000) SELECT max(i) FROM n'
        started = time.monotonic()
        result = check('sql', db_url=f'sqlite://{sqlite_db}', query=query, timeout=0.2)
        assert result.message == 'deadline exceeded while running the query (timeout 0.2 s)'
        assert time.monotonic() - started < 2

    def test_locked_database_waits_no_longer_than_the_timeout(self, sqlite_db: pathlib.Path) -> None:
        writer = sqlite3.connect(sqlite_db)
        try:
            writer.execute('PRAGMA journal_mode = DELETE')
            writer.execute('BEGIN EXCLUSIVE')
            started = time.monotonic()
            result = check('sql', db_url=f'sqlite://{sqlite_db}', timeout=0.5)
            assert time.monotonic() - started < 0.5 + 1.5
            assert result.status == 'failed' and 'locked' in result.message
        finally:
            writer.rollback()
            writer.close()

    @pytest.mark.parametrize('db_url, message', [
        ('sqlite://relative.db', 'a SQLite db_url is sqlite:///ABSOLUTE/PATH (three slashes, no host, no query)'),
        ('sqlite:relative.db', 'db_url must be one of sqlite:///ABSOLUTE/PATH, an absolute path, postgresql://'),
        ('sqlite:///tmp/a.db?mode=rwc', 'a SQLite db_url is sqlite:///ABSOLUTE/PATH'),
        ('mysql://u:p@h/db', "(scheme 'mysql'); a relative path is refused"),
        ('relative/a.db', 'a relative path is refused'),
        ('  ', 'db_url must not be empty'),
    ])
    def test_invalid_db_url(self, db_url: str, message: str) -> None:
        assert_error(check('sql', db_url=db_url), message)

    @pytest.mark.parametrize('options, message', [
        ({}, 'db_url is required for a sql check'),
        ({'db_url': 42}, 'db_url must be a string'),
        ({'dsn': 42}, 'dsn must be a string'),
        ({'db_url': 'sqlite:///tmp/a.db', 'query': '  '}, 'query must not be empty'),
        ({'db_url': 'sqlite:///tmp/a.db', 'path': '/'}, 'option(s) not valid for a sql check: path'),
        ({'db_url': 'sqlite:///tmp/a.db', 'dsn': 'sqlite:///tmp/b.db'}, 'give db_url or its alias dsn, not both'),
    ])
    def test_invalid_options(self, options: dict[str, t.Any], message: str) -> None:
        assert_error(check('sql', **options), message)

    def test_every_form_of_the_db_url_contract(self, sqlite_db: pathlib.Path) -> None:
        """The forms of dihya_backend_db_url, as the rgpd module takes them: a plain absolute path or sqlite:///."""
        for db_url in (str(sqlite_db), f'sqlite://{sqlite_db}', f'sqlite:///{sqlite_db}'):
            result = check('sql', db_url=db_url)
            assert result.healthy and result.details == {'backend': 'sqlite', 'value': '1'}, (db_url, result)

    def test_dsn_is_an_alias_of_db_url(self, sqlite_db: pathlib.Path) -> None:
        assert check('sql', dsn=f'sqlite://{sqlite_db}').healthy
        assert check('sql', dsn=str(sqlite_db), query='SELECT version FROM migrations', expect='0042').healthy
        assert check('sql', dsn=f'sqlite://{sqlite_db}', db_url=None).healthy
        # Both, as Ansible passes an option given by its alias: fine when they agree.
        assert check('sql', dsn=str(sqlite_db), db_url=str(sqlite_db)).healthy
        # The message names the option that was given.
        assert_error(check('sql', dsn='sqlite://relative.db'), 'a SQLite dsn is sqlite:///ABSOLUTE/PATH')


class TestPostgresql:
    def test_connection_refused_hides_password(self, closed_port: int) -> None:
        result = check('sql', db_url=f'postgresql://app:Very-Secret-1@127.0.0.1:{closed_port}/app')
        assert result.status == 'failed'
        assert result.message == 'connection refused'
        assert 'Very-Secret-1' not in json.dumps(result.to_dict())

    def test_conninfo_form_hides_password(self, closed_port: int) -> None:
        result = check('sql', db_url=f"host=127.0.0.1 port={closed_port} dbname=app user=app password='Very-Secret-1'")
        assert result.status == 'failed' and result.details == {'backend': 'postgresql'}
        assert result.message == 'connection refused'
        assert 'Very-Secret-1' not in json.dumps(result.to_dict())

    @pytest.mark.parametrize('key', ['db_url', 'dsn'])
    def test_invalid_db_url(self, key: str) -> None:
        options: dict[str, t.Any] = {key: 'postgresql://app:Very-Secret-1@127.0.0.1/app?no_such_option=1'}
        result = check('sql', **options)
        assert_error(result, f'invalid postgresql {key}')
        assert 'Very-Secret-1' not in result.message

    def test_unusable_db_url_hides_password(self) -> None:
        # A port that is not a number is caught when the options are read, before anything connects.
        result = check('sql', db_url='postgresql://app:Very-Secret-1@127.0.0.1:notaport/app')
        assert_error(result, 'db_url is not a valid postgresql:// URL')
        assert 'Very-Secret-1' not in json.dumps(result.to_dict())

    def test_psycopg_missing(self, monkeypatch: pytest.MonkeyPatch) -> None:
        monkeypatch.setitem(sys.modules, 'psycopg', None)
        assert_error(check('sql', db_url='postgresql://h/db'), 'a sql check on PostgreSQL needs the psycopg Python library')
        assert_error(check('sql', db_url='host=h dbname=db'), 'a sql check on PostgreSQL needs the psycopg Python library')

    def test_query(self, postgres: Postgres) -> None:
        result = check('sql', db_url=postgres.dsn(), query='SELECT 40 + 2', expect=42)
        assert result.healthy, result.message
        assert result.details == {'backend': 'postgresql', 'value': '42'}

    def test_conninfo_form(self, postgres: Postgres) -> None:
        db_url = f"host=127.0.0.1 port={postgres.port} dbname=postgres user=postgres password='{postgres.password}'"
        result = check('sql', db_url=db_url, query='SELECT 6 * 7', expect=42)
        assert result.healthy, result.message
        assert postgres.password not in json.dumps(result.to_dict())

    def test_session_is_read_only(self, postgres: Postgres) -> None:
        assert_error(check('sql', db_url=postgres.dsn(), query='CREATE TABLE dihya_probe (id int)'), 'read-only SELECT or WITH statement (got CREATE)')

    def test_statement_without_rows_is_refused(self, postgres: Postgres) -> None:
        assert_error(check('sql', db_url=postgres.dsn(), query='SET search_path TO public'), 'read-only SELECT or WITH statement (got SET)')

    def test_statement_timeout(self, postgres: Postgres) -> None:
        started = time.monotonic()
        result = check('sql', db_url=postgres.dsn(), query='SELECT pg_sleep(10)', timeout=1)
        assert result.message == 'deadline exceeded while running the query (timeout 1 s)'
        assert time.monotonic() - started < 1 + 1.5

    def test_wrong_password(self, postgres: Postgres) -> None:
        result = check('sql', db_url=postgres.dsn(password='wrong-Pa55word'))
        assert result.status == 'failed'
        assert 'password authentication failed' in result.message
        assert 'wrong-Pa55word' not in json.dumps(result.to_dict())


def _tree(folder: pathlib.Path) -> dict[str, str]:
    """Every file under ``folder`` and the SHA-256 of its content."""
    found = {}
    for root, _dirs, files in os.walk(folder):
        for name in files:
            path = os.path.join(root, name)
            with open(path, 'rb') as handle:
                found[os.path.relpath(path, folder)] = hashlib.sha256(handle.read()).hexdigest()
    return found


SQLITE_WRITES = [
    "VACUUM INTO '{dir}/copy.db'",
    "VACUUM INTO 'copy.db'",
    "vacuum main into '{dir}/copy2.db'",
    "ATTACH '{dir}/new.db' AS x",
    "ATTACH DATABASE 'file:{dir}/uri.db?mode=rwc' AS x",
    "INSERT INTO migrations VALUES ('9999', 0)",
    "REPLACE INTO migrations VALUES ('0042', 9)",
    "UPDATE migrations SET applied = 0",
    "DELETE FROM migrations",
    "SELECT 1; DROP TABLE migrations",
    "SELECT 1 /* ; */; DELETE FROM migrations",
    "select 1;\nvacuum into '{dir}/copy3.db'",
    "WITH x AS (SELECT 1) DELETE FROM migrations",
    "WITH x AS (SELECT 1) INSERT INTO migrations SELECT '1', 1 FROM x",
    "CREATE TABLE t (a)",
    "CREATE TEMP TABLE t (a)",
    "DROP TABLE migrations",
    "ALTER TABLE migrations ADD COLUMN b",
    "PRAGMA user_version = 5",
    "PRAGMA journal_mode = WAL",
    "PRAGMA query_only = OFF",
    "/* comment */ PRAGMA writable_schema = ON",
    "REINDEX",
    "ANALYZE",
    "BEGIN IMMEDIATE",
    "SELECT load_extension('{dir}/evil')",
    "SELECT 'unterminated",
    "SELECT 1 /* unterminated",
]


class TestSqlReadOnly:
    """A health query reads: statements that write, copy or attach are refused, and the connection cannot write anyway."""

    @pytest.mark.parametrize('query', SQLITE_WRITES)
    def test_sqlite_refuses_what_writes(self, sqlite_db: pathlib.Path, query: str, monkeypatch: pytest.MonkeyPatch) -> None:
        folder = sqlite_db.parent
        monkeypatch.chdir(folder)  # A relative VACUUM INTO or ATTACH would land here.
        before = _tree(folder)
        result = check('sql', db_url=f'sqlite://{sqlite_db}', query=query.format(dir=folder))
        assert not result.healthy and result.status in ('error', 'failed'), result
        assert result.attempts == 0 or 'refused' in result.message or 'not authorized' in result.message, result
        assert _tree(folder) == before

    # REINDEX of a database without indexes writes nothing, so the connection has nothing to refuse.
    @pytest.mark.parametrize('query', [query for query in SQLITE_WRITES if 'unterminated' not in query and query != 'REINDEX'])
    def test_sqlite_connection_cannot_write_even_past_the_statement_check(self, sqlite_db: pathlib.Path, query: str, monkeypatch: pytest.MonkeyPatch) -> None:
        """Defence in depth: the statement check bypassed, the connection itself refuses (mode=ro, query_only, authorizer)."""
        folder = sqlite_db.parent
        monkeypatch.chdir(folder)
        before = _tree(folder)
        with pytest.raises(sqlite3.Error):
            _probe_sql._query_sqlite(str(sqlite_db), query.format(dir=folder), 2.0)
        assert _tree(folder) == before

    @pytest.mark.parametrize('query, value', [
        ('SELECT version FROM migrations', '0042'),
        ('  select count(*) from migrations;  ', '1'),
        ('-- leading comment\nSELECT 1', '1'),
        ('/* a; b */ SELECT 2', '2'),
        ("SELECT ';DROP TABLE migrations'", ';DROP TABLE migrations'),
        ('SELECT "version" FROM [migrations]', '0042'),
        ('WITH RECURSIVE n(i) AS (SELECT 1 UNION ALL SELECT i + 1 FROM n WHERE i < 3) SELECT max(i) FROM n', '3'),
        ("SELECT json_extract('{\"a\": 7}', '$.a')", '7'),
        ('VALUES (5)', '5'),
    ])
    def test_sqlite_reads_still_work(self, sqlite_db: pathlib.Path, query: str, value: t.Any) -> None:
        result = check('sql', db_url=f'sqlite://{sqlite_db}', query=query)
        assert result.healthy, result
        assert result.details['value'] == value

    @pytest.mark.parametrize('query, message', [
        ('SELECT 1; SELECT 2', 'query must be a single statement (found 2)'),
        ('EXPLAIN SELECT 1', 'read-only SELECT or WITH statement (got EXPLAIN)'),
        ('-- only a comment', 'query must be a single statement (found 0)'),
        (';', 'query must be a single statement (found 0)'),
    ])
    def test_statement_check_messages(self, sqlite_db: pathlib.Path, query: str, message: str) -> None:
        assert_error(check('sql', db_url=f'sqlite://{sqlite_db}', query=query), message)

    @pytest.fixture
    def pg_table(self, postgres: Postgres) -> t.Iterator[str]:
        import psycopg  # pylint: disable=import-outside-toplevel

        name = f'dihya_ro_{uuid.uuid4().hex[:8]}'
        with psycopg.connect(postgres.dsn(), autocommit=True) as connection:
            connection.execute(f'CREATE TABLE {name} (id int)')
            connection.execute(f'INSERT INTO {name} VALUES (1), (2)')
            connection.execute(f'CREATE SEQUENCE {name}_seq')
        yield name
        with psycopg.connect(postgres.dsn(), autocommit=True) as connection:
            connection.execute(f'DROP TABLE IF EXISTS {name}')
            connection.execute(f'DROP TABLE IF EXISTS {name}_new')
            connection.execute(f'DROP SEQUENCE IF EXISTS {name}_seq')

    @staticmethod
    def _pg_state(postgres: Postgres, name: str) -> tuple[t.Any, ...]:
        import psycopg  # pylint: disable=import-outside-toplevel

        with psycopg.connect(postgres.dsn()) as connection:
            rows = connection.execute(f'SELECT id FROM {name} ORDER BY id').fetchall()
            tables = connection.execute("SELECT count(*) FROM pg_tables WHERE tablename LIKE %s", (f'{name}%',)).fetchone()
            sequence = connection.execute(f'SELECT last_value, is_called FROM {name}_seq').fetchone()
        return rows, tables, sequence

    PG_WRITES: t.ClassVar[list[str]] = [
        'WITH x AS (DELETE FROM {t} RETURNING *) SELECT count(*) FROM x',
        'WITH x AS (INSERT INTO {t} VALUES (3) RETURNING *) SELECT count(*) FROM x',
        'WITH x AS (UPDATE {t} SET id = id + 10 RETURNING *) SELECT count(*) FROM x',
        "SELECT nextval('{t}_seq')",
        "SELECT set_config('transaction_read_only', 'off', false)",
        'SELECT * INTO {t}_new FROM {t}',
        'SELECT * FROM {t} FOR UPDATE',
    ]
    PG_REFUSED_BEFORE_RUNNING: t.ClassVar[list[str]] = [
        'SELECT 1; DROP TABLE {t}',
        'SELECT 1; COMMIT; DELETE FROM {t}',
        'DELETE FROM {t}',
        'CREATE TABLE {t}_new (id int)',
        'SET SESSION CHARACTERISTICS AS TRANSACTION READ WRITE',
        'SELECT $q$;$q$; DELETE FROM {t}',
        "SELECT E'\\''; DELETE FROM {t}; SELECT '",
        'COPY {t} TO STDOUT',
    ]

    @pytest.mark.parametrize('query', PG_WRITES)
    def test_postgresql_session_is_read_only(self, postgres: Postgres, pg_table: str, query: str) -> None:
        before = self._pg_state(postgres, pg_table)
        result = check('sql', db_url=postgres.dsn(), query=query.format(t=pg_table))
        assert result.status == 'failed', result
        assert re.search('read-only transaction|read-write mode', result.message), result
        assert self._pg_state(postgres, pg_table) == before

    @pytest.mark.parametrize('query', PG_REFUSED_BEFORE_RUNNING)
    def test_postgresql_refuses_what_is_not_one_read(self, postgres: Postgres, pg_table: str, query: str) -> None:
        before = self._pg_state(postgres, pg_table)
        result = check('sql', db_url=postgres.dsn(), query=query.format(t=pg_table))
        assert result.status == 'error' and result.attempts == 0, result
        assert self._pg_state(postgres, pg_table) == before

    # A SET changes no data; COPY TO STDOUT only reads. The statement check alone refuses them.
    @pytest.mark.parametrize('query', [query for query in PG_REFUSED_BEFORE_RUNNING if not query.startswith(('COPY', 'SET'))])
    def test_postgresql_connection_refuses_past_the_statement_check(self, postgres: Postgres, pg_table: str, query: str) -> None:
        """Defence in depth: one statement per call (extended protocol) in a read-only session."""
        import psycopg  # pylint: disable=import-outside-toplevel

        before = self._pg_state(postgres, pg_table)
        with pytest.raises(psycopg.Error):
            _probe_sql._query_postgresql(postgres.dsn(), query.format(t=pg_table), Budget(5))
        assert self._pg_state(postgres, pg_table) == before

    def test_postgresql_reads_still_work(self, postgres: Postgres, pg_table: str) -> None:
        result = check('sql', db_url=postgres.dsn(), query=f'WITH x AS (SELECT id FROM {pg_table}) SELECT sum(id) FROM x', expect=3)
        assert result.healthy, result
        assert check('sql', db_url=postgres.dsn(), query="SELECT '50%'", expect='50%').healthy
        assert check('sql', db_url=postgres.dsn(), query='(SELECT 6)', expect=6).healthy


@pytest.mark.parametrize('dsn, masked', [
    ('postgresql://app:s3cret@db:5432/app', 'postgresql://app:********@db:5432/app'),
    ('postgresql://app:p%40ss@db/app', 'postgresql://app:********@db/app'),
    ('postgresql://db/app?user=app&password=s3cret', 'postgresql://db/app?user=app&password=********'),
    ("host=db password='s3 cret' dbname=app", 'host=db password=******** dbname=app'),
    ('host=db password=s3cret dbname=app', 'host=db password=******** dbname=app'),
    ('sqlite:///var/lib/app.db', 'sqlite:///var/lib/app.db'),
    ('postgresql://[::1', 'postgresql://[::1'),
])
def test_dsn_passwords_are_masked(dsn: str, masked: str) -> None:
    """Every spelling of a DSN's password, as the sql check scrubs its messages (``_db_url``)."""
    assert scrub(dsn, dsn_secrets(dsn)) == masked


def test_psycopg_errors_are_scrubbed() -> None:
    secrets = dsn_secrets('postgresql://app:s3cret@db/app')
    describe = _probe_sql._describe_psycopg_error
    assert describe(RuntimeError('FATAL: bad password s3cret\nDETAIL: more'), secrets) == 'database error: FATAL: bad password ********'
    assert describe(RuntimeError('could not connect: Connection refused'), secrets) == 'connection refused'
    assert describe(RuntimeError('connection failed: timeout expired'), secrets) == 'timed out'
    assert describe(RuntimeError(''), secrets) == 'database error: RuntimeError'


def test_unexpected_sql_errors_are_scrubbed(monkeypatch: pytest.MonkeyPatch, sqlite_db: pathlib.Path) -> None:
    def boom(path: t.Any, query: str, timeout: float) -> t.NoReturn:
        raise OSError(f'cannot open {path} with s3cret')
    monkeypatch.setattr(_probe_sql, '_query_sqlite', boom)
    spec = CheckSpec('db', 'sql', {'db_url': f'sqlite://{sqlite_db}', 'query': "SELECT 's3cret'"})
    config = validate_spec(spec)
    config = dataclasses.replace(config, db=dataclasses.replace(config.db, secrets=('s3cret',)))
    outcome = _probe_sql.probe_sql(config, 1.0)
    assert outcome.message == f'OSError: cannot open {sqlite_db} with ********'
