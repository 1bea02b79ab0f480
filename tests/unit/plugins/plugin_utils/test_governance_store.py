# Copyright (c) Dihya ops maintainers
# GNU General Public License v3.0+ (see LICENSES/GPL-3.0-or-later.txt or https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later

"""The governance store: SQLite (file safety, WAL) and PostgreSQL, one schema, clear errors."""

from __future__ import annotations

import os
import stat

import pytest

from ansible_collections.dihya.ops.plugins.plugin_utils import _governance_store
from ansible_collections.dihya.ops.plugins.plugin_utils._governance_store import StoreError, open_store


def test_schema_version_and_reopen(store_config):
    store = open_store(store_config)
    with store.transaction() as tx:
        assert tx.execute('SELECT value FROM governance_meta WHERE name = ?', ('schema_version',)) == [('1',)]
    store.close()
    again = open_store(store_config)
    with again.transaction() as tx:
        tx.execute('UPDATE governance_meta SET value = ? WHERE name = ?', ('99', 'schema_version'))
    again.close()
    with pytest.raises(StoreError, match='schema version 99'):
        open_store(store_config)


def test_a_failed_transaction_writes_nothing(store_config):
    store = open_store(store_config)
    with pytest.raises(RuntimeError), store.transaction() as tx:
        tx.execute('INSERT INTO governance_runs (scope, trace_id, at) VALUES (?, ?, ?)', ('s', 't', 1.0))
        raise RuntimeError('boom')
    with store.transaction() as tx:
        assert tx.execute('SELECT COUNT(*) FROM governance_runs') == [(0,)]
    store.close()


def test_sqlite_file_and_folder_modes_and_wal(tmp_path):
    path = tmp_path / 'new' / 'store.sqlite3'
    store = open_store({'path': str(path)})
    assert stat.S_IMODE(os.stat(path).st_mode) == 0o600
    assert stat.S_IMODE(os.stat(path.parent).st_mode) == 0o700
    with store.transaction() as tx:
        assert tx.execute('PRAGMA journal_mode') == [('wal',)]
    store.close()
    os.chmod(path, 0o644)
    open_store({'path': str(path)}).close()
    assert stat.S_IMODE(os.stat(path).st_mode) == 0o600


def test_default_path_is_under_home(tmp_path, monkeypatch):
    monkeypatch.setenv('HOME', str(tmp_path))
    store = open_store({})
    assert store.path == str(tmp_path / '.ansible' / 'dihya-ops-governance.sqlite3')  # type: ignore[attr-defined]
    store.close()


def test_symlinked_file_or_folder_is_refused(tmp_path):
    target = tmp_path / 'elsewhere.sqlite3'
    target.write_bytes(b'')
    (tmp_path / 'link.sqlite3').symlink_to(target)
    with pytest.raises(StoreError, match='symlink'):
        open_store({'path': str(tmp_path / 'link.sqlite3')})
    (tmp_path / 'real').mkdir()
    (tmp_path / 'dirlink').symlink_to(tmp_path / 'real')
    with pytest.raises(StoreError, match='symlink'):
        open_store({'path': str(tmp_path / 'dirlink' / 'store.sqlite3')})
    assert not os.listdir(tmp_path / 'real')
    (tmp_path / 'afolder.sqlite3').mkdir()
    with pytest.raises(StoreError, match='not a regular file'):
        open_store({'path': str(tmp_path / 'afolder.sqlite3')})


@pytest.mark.parametrize(('config', 'message'), [
    ('sqlite', 'must be a mapping'),
    ({'kind': 'mysql'}, 'kind must be sqlite or postgresql'),
    ({'kind': 'sqlite', 'dsn': 'x'}, 'unknown key dsn'),
    ({'path': 'relative/store'}, 'must be absolute'),
    ({'path': '/tmp/../etc/store'}, 'must not contain ".."'),
    ({'path': 42}, 'must be a non-empty file path'),
    ({'path': '/tmp/x\0y'}, 'must be a non-empty file path'),
    ({'path': '/' + 'a' * 5000}, 'must be a non-empty file path'),
    ({'busy_timeout': 'soon'}, 'busy_timeout'),
    ({'busy_timeout': True}, 'busy_timeout'),
    ({'busy_timeout': 10_000}, 'busy_timeout'),
    ({'kind': 'postgresql'}, 'dsn must be a non-empty connection string'),
    ({'kind': 'postgresql', 'dsn': ['a']}, 'dsn must be a non-empty connection string'),
])
def test_bad_configurations_are_clear_errors(config, message):
    with pytest.raises(StoreError, match=message):
        open_store(config)


def test_postgresql_errors_never_show_the_dsn():
    secret = 'postgresql://u:hunter2-s3cret@127.0.0.1:1/none'
    with pytest.raises(StoreError) as caught:
        open_store({'kind': 'postgresql', 'dsn': secret, 'busy_timeout': 1})
    assert 'hunter2' not in str(caught.value) and 'not shown' in str(caught.value)


def test_no_psycopg_is_a_clear_error(monkeypatch):
    import builtins  # pylint: disable=import-outside-toplevel

    real = builtins.__import__

    def refuse(name, *args, **kwargs):
        if name == 'psycopg':
            raise ImportError(name)
        return real(name, *args, **kwargs)

    monkeypatch.setattr(builtins, '__import__', refuse)
    with pytest.raises(StoreError, match='needs the Python package psycopg'):
        _governance_store.PostgresStore('postgresql://x', 1.0)
