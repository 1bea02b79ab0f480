# Copyright (c) Dihya ops maintainers
# GNU General Public License v3.0+ (see LICENSES/GPL-3.0-or-later.txt or https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later

"""Fixtures shared by the plugin tests."""

from __future__ import annotations

import pathlib
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


#: The caller's environment variables of the run context, which a test of the controller's actions starts without.
CONTEXT_ENVIRONMENT = ("DIHYA_OPS_USER", "DIHYA_AUDIT_USER", "DIHYA_TRACE_ID", "DIHYA_AUDIT_TRACE_ID", "DIHYA_OPS_TRUST_DECLARED_USER")


@pytest.fixture
def controller_policy(tmp_path: pathlib.Path, monkeypatch: pytest.MonkeyPatch) -> t.Callable[[str], pathlib.Path]:
    """Give the controller the policy ``text`` (``DIHYA_OPS_POLICY``), with none of the run context's variables set."""
    def give(text: str) -> pathlib.Path:
        for name in CONTEXT_ENVIRONMENT:
            monkeypatch.delenv(name, raising=False)
        policy = tmp_path / "policy.yml"
        policy.write_text(text)
        monkeypatch.setenv("DIHYA_OPS_POLICY", str(policy))
        return policy
    return give
