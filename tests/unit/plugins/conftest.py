# Copyright (c) Dihya ops maintainers
# GNU General Public License v3.0+ (see LICENSES/GPL-3.0-or-later.txt or https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later

"""Fixtures shared by the plugin tests."""

from __future__ import annotations

import typing as t
import warnings

import pytest

from ansible.plugins.loader import init_plugin_loader
from ansible.utils.collection_loader import AnsibleCollectionConfig
from ansible.utils.collection_loader._collection_finder import _AnsibleCollectionFinder


@pytest.fixture(scope="module")
def plugin_loader() -> t.Iterator[None]:
    """The plugin loader of ansible-core, for the local connection; the collection finder may already be set up.

    A module that runs actions through ansible-core's own task and connection asks for it with
    ``pytestmark = pytest.mark.usefixtures("plugin_loader")``. A finder this fixture installs is removed after the
    module: left in ``sys.meta_path`` and ``sys.path_hooks``, it answers for the ``ansible_collections`` namespace
    package of the test run, and refuses the path it is then given whenever ``sys.path`` changes
    (``monkeypatch.syspath_prepend``, pytest removing its ``pythonpath`` at exit), which broke later tests of the
    worker and coverage's exit handlers ("Exception ignored in atexit callback").
    """
    installed_before = AnsibleCollectionConfig.collection_finder is not None
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", UserWarning)
        init_plugin_loader()
    yield
    if not installed_before:
        _AnsibleCollectionFinder._remove()  # pylint: disable=protected-access
