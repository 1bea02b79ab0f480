# Copyright (c) Dihya ops maintainers
# GNU General Public License v3.0+ (see LICENSES/GPL-3.0-or-later.txt or https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later

"""Fixtures shared by the governance tests of this folder."""

from __future__ import annotations

import typing as t
import uuid

import pytest


@pytest.fixture(params=['sqlite', pytest.param('postgresql', marks=pytest.mark.services('postgres'))], name='store_config')
def fixture_store_config(request: t.Any, tmp_path: t.Any) -> t.Iterator[dict[str, t.Any]]:
    """A fresh store of each kind: a SQLite file in a new folder, or a new PostgreSQL database."""
    if request.param == 'sqlite':
        yield {'kind': 'sqlite', 'path': str(tmp_path / 'gov' / 'store.sqlite3')}
        return
    import psycopg  # pylint: disable=import-outside-toplevel

    postgres = request.getfixturevalue('postgres')
    name = f'gov_{uuid.uuid4().hex[:12]}'
    with psycopg.connect(postgres.dsn(), autocommit=True) as conn:
        conn.execute(f'CREATE DATABASE "{name}"')
    yield {'kind': 'postgresql', 'dsn': postgres.dsn(database=name)}
    with psycopg.connect(postgres.dsn(), autocommit=True) as conn:
        conn.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
