# Copyright (c) Dihya ops maintainers
# GNU General Public License v3.0+ (see LICENSES/GPL-3.0-or-later.txt or https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later

"""Fixtures shared by the engine tests of this folder."""

from __future__ import annotations

import pathlib
import typing as t

import pytest

from ansible_collections.dihya.ops.tests.unit.plugins.module_utils.safe_write_utils import Thing, make


@pytest.fixture
def place(tmp_path: pathlib.Path) -> t.Iterator[t.Callable[..., Thing]]:
    """A writer's folder ``out/`` and a victims' folder next to it.

    Yields a function that puts a kind of thing (see ``safe_write_utils.KINDS``) at ``out/<name>``; symbolic
    links point into ``victims/``. Everything it made is closed in teardown.
    """
    out = tmp_path / 'out'
    out.mkdir()
    made: list[Thing] = []

    def put(kind: str, name: str = 'dest') -> Thing:
        thing = make(kind, out / name, tmp_path / 'victims')
        made.append(thing)
        return thing

    yield put
    for thing in made:
        thing.close()
