# Copyright (c) Dihya ops maintainers
# GNU General Public License v3.0+ (see LICENSES/GPL-3.0-or-later.txt or https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later

"""dihya.ops.rgpd: the one database URL contract (db_url, and its older spellings database and dsn), on real databases."""

from __future__ import annotations

import json
import urllib.parse

import pytest

from ansible_collections.dihya.ops.plugins.module_utils import _rgpd_request
from ansible_collections.dihya.ops.plugins.module_utils._db_url import DbUrlError
from ansible_collections.dihya.ops.plugins.module_utils._rgpd_db import DbError, open_database
from ansible_collections.dihya.ops.plugins.modules import rgpd
from ansible_collections.dihya.ops.tests.unit.plugins import rgpd_fixtures
from ansible_collections.dihya.ops.tests.unit.plugins.modules.utils import run_module
from ansible_collections.dihya.ops.tests.unit.plugins.rgpd_fixtures import DEMO_DATA_MAP

PSEUDONYM_KEY = 'db-url-test-pseudonym-key-0123456789'
SECRET = 'S3cr3t/pass?word#1@x'


@pytest.fixture
def sqlite_path(tmp_path):
    return rgpd_fixtures.seeded_database(tmp_path, users_per_tenant=3)


def inventory(check_mode=False, **database):
    arguments = {'operation': 'inventory', 'data_map_file': DEMO_DATA_MAP, 'tenant': 'acme', 'subject_id': '1', 'pseudonym_key': PSEUDONYM_KEY,
                 **database}
    return run_module(rgpd.main, arguments, check_mode=check_mode)


def refused(result, *words):
    assert result['failed'] is True, result
    for word in words:
        assert word in result['msg'], result['msg']
    return result['msg']


@pytest.mark.parametrize('form', ['plain', 'sqlite3', 'sqlite4', 'database', 'database_url'])
def test_every_sqlite_form_opens_the_same_file(sqlite_path, form):
    given = {
        'plain': {'db_url': sqlite_path},
        'sqlite3': {'db_url': 'sqlite://' + sqlite_path},
        'sqlite4': {'db_url': 'sqlite:///' + sqlite_path},
        'database': {'database': sqlite_path},
        'database_url': {'database': 'sqlite://' + sqlite_path},
    }[form]
    result = inventory(**given)
    assert result.get('failed') is not True, result
    assert result['subject_found'] is True and result['total_rows'] > 0


def test_postgresql_url_and_conninfo(postgres, tmp_path):
    url = rgpd_fixtures.create_pg_database(postgres, 'rgpd_db_url')
    try:
        rgpd_fixtures.copy_sqlite_to_postgres(_seeded(tmp_path), url)
        parts = urllib.parse.urlsplit(url)
        conninfo = f"host={parts.hostname} port={parts.port} user={parts.username} password='{parts.password}' dbname={parts.path.lstrip('/')}"
        for given in ({'db_url': url}, {'db_url': url.replace('postgresql://', 'postgres://', 1)}, {'db_url': conninfo}, {'dsn': url},
                      {'dsn': conninfo}):
            result = inventory(**given)
            assert result.get('failed') is not True, result
            assert result['subject_found'] is True and result['total_rows'] > 0
            assert postgres.password not in json.dumps(result)
    finally:
        rgpd_fixtures.drop_pg_database(postgres, 'rgpd_db_url')


def _seeded(tmp_path):
    path = tmp_path / 'seed.db'
    rgpd_fixtures.seed_sqlite(str(path), users_per_tenant=3)
    return str(path)


def test_hostile_sqlite_urls_are_refused_before_anything_is_opened(sqlite_path, tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path / 'data')
    # Relative paths, even to a database that exists from the working directory.
    refused(inventory(db_url='app.db'), 'relative path is refused')
    refused(inventory(db_url='./app.db'), 'relative path is refused')
    refused(inventory(db_url='../data/app.db'), 'relative path is refused')
    refused(inventory(db_url='sqlite://app.db'), 'sqlite:///ABSOLUTE/PATH')
    refused(inventory(database='app.db'), 'relative path is refused')
    # A .. component, even one leading back to the real file.
    refused(inventory(db_url=str(tmp_path / 'data' / '..' / 'data' / 'app.db')), '..')
    refused(inventory(db_url='sqlite:///' + str(tmp_path / 'other' / '..' / 'data' / 'app.db')), '..')
    # NUL, a query or a host in a SQLite URL.
    refused(inventory(db_url=sqlite_path + '\x00.db'), 'NUL')
    refused(inventory(db_url='sqlite:///' + sqlite_path + '?mode=rwc'), 'no query')
    refused(inventory(db_url='sqlite://host/' + sqlite_path), 'no host')
    assert sorted(path.name for path in (tmp_path / 'data').iterdir()) == ['app.db']


def test_unknown_schemes_and_mismatched_spellings_never_show_the_password(sqlite_path):
    for url in (f'mysql://root:{SECRET}@db.internal/app', f'MySQL://root:{SECRET}@db.internal/app', f'http://u:{SECRET}@x/y',
                f'file://{sqlite_path}', f'jdbc:postgresql://u:{SECRET}@x/y', ''):
        message = refused(inventory(db_url=url), 'db_url')
        assert SECRET not in message, message
        assert not url or url not in message, message
    assert "scheme 'mysql'" in refused(inventory(db_url=f'mysql://root:{SECRET}@db.internal/app'))
    # The older spellings take one kind each, and say where the other goes.
    message = refused(inventory(database='postgresql://u:Plain-pw-1234@127.0.0.1:1/x'), 'database must be a SQLite file path', 'db_url')
    assert 'Plain-pw-1234' not in message
    refused(inventory(dsn=sqlite_path), 'dsn must be a PostgreSQL DSN', 'db_url')
    # Exactly one of them.
    refused(inventory(db_url=sqlite_path, database=sqlite_path), 'mutually exclusive')
    refused(inventory(), 'one of the following is required')


@pytest.mark.parametrize('url', [
    f'postgresql://u:{SECRET}@[bad/x',
    f'postgresql://u:{SECRET}@127.0.0.1:notaport/x',
    f"host=127.0.0.1 port=1 user=u password='{SECRET}' dbname=x connect_timeout=1",
    f'postgresql://u:{urllib.parse.quote(SECRET, safe="")}@127.0.0.1:1/x?connect_timeout=1',
    f'postgresql://u@127.0.0.1:1/x?password={urllib.parse.quote(SECRET, safe="")}&connect_timeout=1',
])
def test_a_password_never_reaches_the_result(url):
    result = inventory(db_url=url)
    assert result['failed'] is True
    shown = json.dumps(result)
    for spelling in (SECRET, urllib.parse.quote(SECRET, safe=''), urllib.parse.quote_plus(SECRET)):
        assert spelling not in shown, shown


def test_a_sqlite_path_is_shown_in_messages_and_a_postgresql_url_is_not(tmp_path):
    missing = str(tmp_path / 'missing.db')
    assert missing in refused(inventory(db_url=missing), 'does not exist')
    assert missing in refused(inventory(db_url='sqlite://' + missing), 'does not exist')
    url = f'postgresql://u:{SECRET}@127.0.0.1:1/x?connect_timeout=1'
    result = inventory(db_url=url)
    assert result['failed'] is True and url not in json.dumps(result) and SECRET not in json.dumps(result)


def test_check_mode_refuses_the_same_urls(sqlite_path):
    refused(inventory(check_mode=True, db_url='app.db'), 'relative path is refused')
    assert inventory(check_mode=True, db_url='sqlite://' + sqlite_path)['subject_found'] is True


def test_the_engine_side_parses_with_the_same_helper(sqlite_path):
    assert _rgpd_request.database_url({'db_url': 'sqlite://' + sqlite_path}).path == sqlite_path
    assert _rgpd_request.database_url({'database': sqlite_path}).kind == 'sqlite'
    assert _rgpd_request.database_url({'dsn': 'host=db dbname=app'}).kind == 'postgresql'
    with pytest.raises(DbUrlError, match='exactly one'):
        _rgpd_request.database_url({'db_url': sqlite_path, 'dsn': 'host=db'})
    with open_database(url='sqlite://' + sqlite_path, read_only=True) as db:
        assert db.kind == 'sqlite'
    with pytest.raises(DbError, match='relative path is refused'):
        open_database(url='app.db')
    with pytest.raises(DbError, match='invalid PostgreSQL DSN') as caught:
        open_database(dsn=f'mysql://root:{SECRET}@localhost/x')
    assert SECRET not in str(caught.value)
