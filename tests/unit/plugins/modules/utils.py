# Copyright (c) Dihya ops maintainers
# GNU General Public License v3.0+ (see LICENSES/GPL-3.0-or-later.txt or https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later

"""Shared harness for module unit tests.

Run a module's ``main()`` in-process with given arguments and catch what it would have
printed: ``exit_json`` and ``fail_json`` raise :class:`AnsibleExitJson` and
:class:`AnsibleFailJson`, whose ``result`` holds the keyword arguments.

    with set_module_args({'name': 'x'}), patch_module_exits():
        with pytest.raises(AnsibleExitJson) as exc:
            my_module.main()
    assert exc.value.result['changed'] is False

or, shorter, ``result = run_module(my_module.main, {'name': 'x'}, check_mode=True)``.
"""

from __future__ import annotations

import contextlib
import os
import pathlib
import shutil
import subprocess
import time
import typing as t
from unittest.mock import patch

import pytest

from ansible.module_utils import basic
from ansible.module_utils.testing import patch_module_args


class AnsibleExitJson(Exception):
    """Raised in place of ``AnsibleModule.exit_json``."""

    def __init__(self, result: dict[str, t.Any]) -> None:
        super().__init__(result)
        self.result = result


class AnsibleFailJson(Exception):
    """Raised in place of ``AnsibleModule.fail_json``."""

    def __init__(self, result: dict[str, t.Any]) -> None:
        super().__init__(result)
        self.result = result


@contextlib.contextmanager
def set_module_args(args: dict[str, t.Any] | None = None, check_mode: bool = False, diff: bool = False) -> t.Iterator[None]:
    """Make ``args`` the arguments of every ``AnsibleModule`` created inside the block."""
    args = dict(args or {})
    if check_mode:
        args['_ansible_check_mode'] = True
    if diff:
        args['_ansible_diff'] = True
    with patch_module_args(args):
        yield


def exit_json(module: basic.AnsibleModule, **kwargs: t.Any) -> t.NoReturn:
    kwargs.setdefault('changed', False)
    raise AnsibleExitJson(kwargs)


def fail_json(module: basic.AnsibleModule, msg: str = '', **kwargs: t.Any) -> t.NoReturn:
    kwargs['failed'] = True
    kwargs['msg'] = msg
    raise AnsibleFailJson(kwargs)


@contextlib.contextmanager
def patch_module_exits() -> t.Iterator[list[str]]:
    """Replace ``exit_json``/``fail_json`` with the exceptions above; collect ``module.warn()`` messages.

    The warnings are yielded as a list and also added to the result under ``warnings``.
    """
    warnings: list[str] = []

    def warn(module: basic.AnsibleModule, warning: str) -> None:
        warnings.append(warning)

    def with_warnings(handler: t.Callable[..., t.NoReturn]) -> t.Callable[..., t.NoReturn]:
        def wrapped(module: basic.AnsibleModule, *args: t.Any, **kwargs: t.Any) -> t.NoReturn:
            if warnings:
                kwargs['warnings'] = list(warnings)
            handler(module, *args, **kwargs)
        return wrapped

    with patch.multiple(basic.AnsibleModule, exit_json=with_warnings(exit_json), fail_json=with_warnings(fail_json), warn=warn):
        yield warnings


def run_module(main: t.Callable[[], None], args: dict[str, t.Any], check_mode: bool = False, diff: bool = False) -> dict[str, t.Any]:
    """Run ``main()`` with ``args``; return the result, which has ``failed: true`` if the module failed."""
    with set_module_args(args, check_mode=check_mode, diff=diff), patch_module_exits():
        try:
            main()
        except (AnsibleExitJson, AnsibleFailJson) as exc:
            return exc.result
    raise AssertionError('the module returned without calling exit_json or fail_json')


def promtool_check(path: str) -> None:
    """Fail unless ``promtool check metrics`` accepts the file."""
    promtool = shutil.which('promtool')
    if promtool is None:
        pytest.fail('promtool is not installed; it comes with the Debian package prometheus (see bindep.txt)')
    with open(path, 'rb') as handle:
        completed = subprocess.run([promtool, 'check', 'metrics'], stdin=handle, capture_output=True, timeout=30, check=False)
    assert completed.returncode == 0, (completed.stdout + completed.stderr).decode()


# A time stamp well past any age the purge tests use (ten days ago).
OLD = time.time() - 10 * 86400


def make(path: pathlib.Path, content: bytes = b'x', old: bool = True) -> pathlib.Path:
    """Write a file (and its parents); back-date it to :data:`OLD` unless ``old`` is false."""
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(content)
    if old:
        os.utime(path, (OLD, OLD))
    return path
