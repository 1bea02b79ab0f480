# Copyright (c) Dihya ops maintainers
# GNU General Public License v3.0+ (see LICENSES/GPL-3.0-or-later.txt or https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later

"""Tests of the database URL contract: the accepted forms, what is refused, and that no password ever shows."""

from __future__ import annotations

import math
import typing as t
import urllib.parse

import pytest

from ansible_collections.dihya.ops.plugins.module_utils._db_url import (
    MASK,
    POSTGRESQL,
    SQLITE,
    DbUrl,
    DbUrlError,
    dsn_secrets,
    parse_db_url,
    scrub,
)

# Passwords holding every character that has a meaning in a URL or a conninfo string.
PASSWORDS = ['p@ss', 'p:ss', 'p/ss', 'p%ss', "p'ss", 'p?ss', 'p#ss', 'p ss', 'p\\ss', "s3@:/%'cr3t", '1/ss', '99#x', 'caf\udce9', '%41%zz']


def quote(text: str) -> str:
    return urllib.parse.quote(text, safe='', errors='surrogateescape')


def shows(text: str, password: str) -> bool:
    """Whether ``text`` shows ``password`` in any of the spellings a message could use."""
    spellings = {password, quote(password), urllib.parse.quote_plus(password, errors='surrogateescape')}
    return any(spelling in text for spelling in spellings)


# ---------------------------------------------------------------------------
# The accepted forms
# ---------------------------------------------------------------------------

@pytest.mark.parametrize('value, path', [
    ('sqlite:///srv/dihya/data/app.db', '/srv/dihya/data/app.db'),
    ('SQLite:///srv/app.db', '/srv/app.db'),
    ('sqlite:////srv/app.db', '/srv/app.db'),
    ('/srv/dihya/data/app.db', '/srv/dihya/data/app.db'),
    ('  sqlite:///srv/app.db\n', '/srv/app.db'),
    ('/srv/..data/app..db', '/srv/..data/app..db'),
    ('/srv/caf\udce9.db', '/srv/caf\udce9.db'),
    ('/srv/with space/app.db', '/srv/with space/app.db'),
])
def test_sqlite_forms(value: str, path: str) -> None:
    db = parse_db_url(value)
    assert db == DbUrl(kind=SQLITE, path=path)
    assert db.kind == 'sqlite'
    assert db.dsn is None
    assert db.secrets == ()
    assert db.masked() == path
    assert db.scrub(f'cannot open {path}') == f'cannot open {path}'


@pytest.mark.parametrize('value', [
    'postgresql://dihya:s3cret@db.example.org:5432/dihya?sslmode=verify-full',
    'postgres://dihya:s3cret@db.example.org/dihya',
    'POSTGRESQL://dihya:s3cret@[::1]:5432/dihya',
    'postgresql://db.example.org/dihya?user=dihya&password=s3cret',
    'host=db.example.org dbname=dihya user=dihya password=s3cret',
    "host=db.example.org dbname=dihya password='s3cret' user=dihya",
])
def test_postgresql_forms(value: str) -> None:
    db = parse_db_url(value)
    assert db.kind == POSTGRESQL == 'postgresql'
    assert db.path is None
    assert db.dsn == value
    assert 's3cret' in db.secrets
    assert 's3cret' not in db.masked()
    assert MASK in db.masked()
    assert 's3cret' not in repr(db)
    assert db.scrub('FATAL:  password authentication failed (password s3cret)') == f'FATAL:  password authentication failed (password {MASK})'


def test_a_postgresql_url_without_password() -> None:
    db = parse_db_url('postgresql://dihya@db/dihya')
    assert db.kind == POSTGRESQL
    assert db.secrets == ()
    assert db.masked() == 'postgresql://dihya@db/dihya'


def test_the_option_name_is_in_the_messages() -> None:
    with pytest.raises(DbUrlError, match=r'^check_health_db_url must be a string'):
        parse_db_url(None, name='check_health_db_url')
    with pytest.raises(DbUrlError, match=r'^rgpd_db_url must not be empty'):
        parse_db_url('', name='rgpd_db_url')


def test_db_url_errors_are_value_errors() -> None:
    with pytest.raises(ValueError):
        parse_db_url('relative.db')


# ---------------------------------------------------------------------------
# Identity
# ---------------------------------------------------------------------------

def test_identity_names_the_database_without_revealing_it() -> None:
    first = parse_db_url('postgresql://dihya:s3cret@db/dihya')
    assert len(first.identity) == 64
    assert int(first.identity, 16) >= 0
    assert first.identity == parse_db_url('postgresql://dihya:s3cret@db/dihya').identity
    assert first.identity != parse_db_url('postgresql://dihya:s3cret@db/other').identity
    # The same database whatever the password: no digest of a password to test guesses against.
    assert first.identity == parse_db_url('postgresql://dihya:changed@db/dihya').identity
    sqlite = parse_db_url('sqlite:///srv/app.db')
    assert sqlite.identity == parse_db_url('/srv/app.db').identity
    assert sqlite.identity != parse_db_url('/srv/other.db').identity
    assert '/srv' not in sqlite.identity
    assert len(parse_db_url('/srv/caf\udce9.db').identity) == 64


# ---------------------------------------------------------------------------
# What is refused
# ---------------------------------------------------------------------------

@pytest.mark.parametrize('value, kind', [
    (None, 'NoneType'), (42, 'int'), (math.nan, 'float'), (b'sqlite:///srv/app.db', 'bytes'),
    (['sqlite:///srv/app.db'], 'list'), ({'db_url': '/srv/app.db'}, 'dict'), (True, 'bool'),
])
def test_wrong_types(value: t.Any, kind: str) -> None:
    with pytest.raises(DbUrlError, match=f'^db_url must be a string .*, not {kind}$'):
        parse_db_url(value)


@pytest.mark.parametrize('value', ['', '   ', '\n\t'])
def test_empty(value: str) -> None:
    with pytest.raises(DbUrlError, match='must not be empty'):
        parse_db_url(value)


@pytest.mark.parametrize('value', ['/srv/app.db\x00', 'sqlite:///srv/\x00app.db', 'postgresql://u:s3cret\x00@db/x', 'host=db password=s3cret\x00'])
def test_nul(value: str) -> None:
    with pytest.raises(DbUrlError, match='must not contain a NUL character') as info:
        parse_db_url(value)
    assert 's3cret' not in str(info.value)
    assert 'srv' not in str(info.value)


@pytest.mark.parametrize('value', [
    'app.db', './app.db', '../app.db', 'data/app.db', '~/app.db', 'sqlite:app.db',
    'sqlite:./app.db', 'app.db?password=x',
])
def test_relative_paths(value: str) -> None:
    with pytest.raises(DbUrlError, match='a relative path is refused') as info:
        parse_db_url(value)
    assert 'app.db' not in str(info.value)


@pytest.mark.parametrize('value', [
    'sqlite://app.db', 'sqlite://../app.db', 'sqlite://host/srv/app.db', 'sqlite:///srv/app.db?mode=rwc',
    'sqlite:///srv/app.db#x', 'sqlite://user:s3cret@host/srv/app.db',
])
def test_sqlite_urls_have_three_slashes_and_nothing_else(value: str) -> None:
    with pytest.raises(DbUrlError, match=r'^a SQLite db_url is sqlite:///ABSOLUTE/PATH \(three slashes, no host, no query\)$'):
        parse_db_url(value)


@pytest.mark.parametrize('value', ['/srv/../etc/app.db', 'sqlite:///srv/../app.db', 'sqlite:///../app.db', '/..', '/srv/data/..'])
def test_dot_dot_components(value: str) -> None:
    with pytest.raises(DbUrlError, match=r'^a SQLite db_url must not contain a \.\. component') as info:
        parse_db_url(value)
    assert 'srv' not in str(info.value)


@pytest.mark.parametrize('value', ['/', 'sqlite:///', 'sqlite:////', '/srv/data/'])
def test_directories(value: str) -> None:
    with pytest.raises(DbUrlError, match='must name a file, not a directory'):
        parse_db_url(value)


@pytest.mark.parametrize('value, shown', [
    ('mysql://dihya:s3cret@db/dihya', "(scheme 'mysql')"),
    ('file:///srv/app.db', "(scheme 'file')"),
    ('https://s3cret@db/dihya', "(scheme 'https')"),
    ('mongodb+srv://dihya:s3cret@db/dihya', ''),
    ('averyveryverylongschemename://dihya:s3cret@db/dihya', ''),
])
def test_unknown_schemes(value: str, shown: str) -> None:
    with pytest.raises(DbUrlError) as info:
        parse_db_url(value)
    message = str(info.value)
    assert message.startswith('db_url must be one of sqlite:///ABSOLUTE/PATH, an absolute path, postgresql://... or libpq key=value pairs')
    assert shown in message
    assert 's3cret' not in message
    assert 'dihya' not in message
    if not shown:
        assert 'scheme' not in message


@pytest.mark.parametrize('value', ['postgresql://dihya:s3cret@db:port/dihya', 'postgresql://dihya:s3cret@db:99999/dihya', 'postgresql://dihya:s3cret@[db/x'])
def test_an_invalid_postgresql_url_is_not_shown(value: str) -> None:
    with pytest.raises(DbUrlError, match='is not a valid postgresql:// URL') as info:
        parse_db_url(value)
    assert 's3cret' not in str(info.value)
    assert 'dihya' not in str(info.value)


# ---------------------------------------------------------------------------
# Passwords never show
# ---------------------------------------------------------------------------

def url_forms(password: str) -> list[str]:
    """The URLs a user may write with ``password``: percent-encoded (as it should be) and as it is."""
    encoded = quote(password)
    return [
        f'postgresql://dihya:{encoded}@db.example.org:5432/dihya',
        f'postgresql://dihya:{password}@db.example.org:5432/dihya',
        f'postgresql://db.example.org/dihya?user=dihya&password={encoded}',
        f'postgresql://db.example.org/dihya?user=dihya&password={encoded.lower()}',
        f'postgresql://db.example.org/dihya?password={urllib.parse.quote_plus(password, errors="surrogateescape")}&user=dihya',
    ]


def conninfo_forms(password: str) -> list[str]:
    """libpq key=value strings with ``password``, quoted and escaped as libpq reads them."""
    escaped = password.replace('\\', '\\\\').replace("'", "\\'")
    forms = [f"host=db dbname=dihya password='{escaped}' user=dihya", f"password='{escaped}' host=db"]
    if ' ' not in password:
        forms.append(f'host=db password={escaped} dbname=dihya')
    return forms


@pytest.mark.parametrize('password', PASSWORDS)
def test_a_password_never_shows(password: str) -> None:
    for value in url_forms(password) + conninfo_forms(password):
        try:
            db = parse_db_url(value)
        except DbUrlError as exc:
            assert not shows(str(exc), password), (value, str(exc))
            assert 'dihya' not in str(exc)
            continue
        assert db.kind == POSTGRESQL
        assert not shows(db.masked(), password), (value, db.masked())
        assert not shows(repr(db), password)
        message = f'connection to server failed: FATAL: password authentication failed for user "dihya" ({password}) in {value}'
        assert not shows(db.scrub(message), password), (value, db.scrub(message))
        assert 'password authentication failed for user "dihya"' in db.scrub(message)


def test_a_conninfo_password_with_an_escaped_space_is_masked_whole() -> None:
    db = parse_db_url('host=db password=s3\\ cret dbname=dihya')
    assert db.masked() == f'host=db password={MASK} dbname=dihya'
    assert db.scrub('s3 cret') == MASK


def test_a_conninfo_password_holding_a_scheme_is_still_conninfo() -> None:
    db = parse_db_url('host=db password=s3cret://x dbname=dihya')
    assert db.kind == POSTGRESQL
    assert db.masked() == f'host=db password={MASK} dbname=dihya'


def test_a_raw_password_that_ends_the_authority_is_masked() -> None:
    # '/' and '#' end the authority: the URL parser reads "1" as the port and no password at all.
    for value in ('postgresql://dihya:1/ss@db/dihya', 'postgresql://dihya:99#x@db/dihya'):
        db = parse_db_url(value)
        assert 'ss@' not in db.masked() and '#x' not in db.masked(), db.masked()
        assert db.masked().startswith(f'postgresql://dihya:{MASK}'), db.masked()


# ---------------------------------------------------------------------------
# dsn_secrets and scrub
# ---------------------------------------------------------------------------

def test_secrets_are_every_spelling_longest_first() -> None:
    secrets = dsn_secrets('postgresql://dihya:p%40ss@db/dihya')
    assert {'p%40ss', 'p@ss'} <= set(secrets)
    assert list(secrets) == sorted(secrets, key=len, reverse=True)
    assert '' not in secrets


def test_no_secrets_in_a_url_without_password() -> None:
    assert dsn_secrets('postgresql://db/dihya') == ()
    assert dsn_secrets('host=db dbname=dihya') == ()
    assert dsn_secrets('postgresql://[::1') == ()


def test_scrub_masks_a_secret_that_holds_another_whole() -> None:
    assert scrub('pass and password', ['pass', 'password']) == f'{MASK} and {MASK}'


def test_scrub_takes_a_single_string_as_one_secret() -> None:
    assert scrub('the s3cret is safe', 's3cret') == f'the {MASK} is safe'


def test_scrub_ignores_empty_secrets() -> None:
    assert scrub('nothing to hide', ['', 'xyz']) == 'nothing to hide'
    assert scrub('nothing to hide', ()) == 'nothing to hide'


def test_scrub_with_surrogates() -> None:
    assert scrub('caf\udce9 and more', ['caf\udce9']) == f'{MASK} and more'
