# Copyright (c) Dihya ops maintainers
# GNU General Public License v3.0+ (see LICENSES/GPL-3.0-or-later.txt or https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later

"""Tests of the metrics-path preflight every module runs, with a small stand-in for AnsibleModule."""

from __future__ import annotations

import os
import pathlib
import typing as t

import pytest

from ansible_collections.dihya.ops.plugins.module_utils import _metrics
from ansible_collections.dihya.ops.plugins.module_utils._metrics import preflight


class Failed(Exception):
    """fail_json was called (it never returns)."""

    def __init__(self, result: dict[str, t.Any]) -> None:
        super().__init__(result['msg'])
        self.result = result


class FakeModule:
    """What preflight uses of AnsibleModule: check_mode, warn() and fail_json()."""

    def __init__(self, check_mode: bool = False) -> None:
        self.check_mode = check_mode
        self.warnings: list[str] = []

    def warn(self, warning: str) -> None:
        self.warnings.append(warning)

    def fail_json(self, msg: str, **kwargs: t.Any) -> t.NoReturn:
        raise Failed({'msg': msg, 'failed': True, **kwargs})


@pytest.mark.parametrize('path', [None, ''])
def test_no_path_nothing_to_check(path: str | None, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(_metrics, 'HAS_PROMETHEUS_CLIENT', False)
    module = FakeModule()
    preflight(module, path, changed=False)
    assert module.warnings == []


def test_a_writable_path_passes_silently(tmp_path: pathlib.Path) -> None:
    module = FakeModule()
    preflight(module, str(tmp_path / 'health.prom'))
    (tmp_path / 'previous.prom').write_text('# previous run\n', encoding='utf-8')
    preflight(module, str(tmp_path / 'previous.prom'))
    assert module.warnings == []
    assert sorted(os.listdir(tmp_path)) == ['previous.prom']  # nothing written


def test_a_name_not_ending_in_prom_is_a_warning(tmp_path: pathlib.Path) -> None:
    module = FakeModule()
    preflight(module, str(tmp_path / 'health.txt'))
    assert len(module.warnings) == 1
    assert 'does not end in .prom' in module.warnings[0]
    assert 'textfile collector ignores' in module.warnings[0]


def test_the_library_is_required_even_in_check_mode(tmp_path: pathlib.Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(_metrics, 'HAS_PROMETHEUS_CLIENT', False)
    monkeypatch.setattr(_metrics, 'PROMETHEUS_CLIENT_IMPORT_ERROR', 'Traceback: No module named prometheus_client')
    for check_mode in (False, True):
        with pytest.raises(Failed) as info:
            preflight(FakeModule(check_mode), str(tmp_path / 'health.prom'), changed=False, checks=[])
        result = info.value.result
        assert 'prometheus_client' in result['msg']
        assert result['exception'] == 'Traceback: No module named prometheus_client'
        assert result['changed'] is False and result['checks'] == []


def test_a_missing_directory_fails_with_the_outcome(tmp_path: pathlib.Path) -> None:
    path = tmp_path / 'missing' / 'health.prom'
    with pytest.raises(Failed) as info:
        preflight(FakeModule(), str(path), changed=False, healthy=None)
    assert info.value.result['msg'] == f'the directory of metrics_path does not exist: {path.parent}'
    assert info.value.result['changed'] is False
    assert info.value.result['healthy'] is None
    assert not path.parent.exists()


def test_a_missing_directory_is_a_warning_in_check_mode(tmp_path: pathlib.Path) -> None:
    path = tmp_path / 'missing' / 'health.prom'
    module = FakeModule(check_mode=True)
    preflight(module, str(path))
    assert module.warnings == [f'the directory of metrics_path does not exist: {path.parent} (it must exist when the task runs outside check mode)']
    assert not path.parent.exists()


def test_a_directory_is_refused(tmp_path: pathlib.Path) -> None:
    (tmp_path / 'health.prom').mkdir()
    with pytest.raises(Failed, match='metrics_path is a directory'):
        preflight(FakeModule(), str(tmp_path / 'health.prom'))


def test_a_symbolic_link_is_refused_and_left_alone(tmp_path: pathlib.Path) -> None:
    victim = tmp_path / 'victim'
    victim.write_text('precious\n', encoding='utf-8')
    link = tmp_path / 'health.prom'
    link.symlink_to(victim)
    with pytest.raises(Failed, match='metrics_path'):
        preflight(FakeModule(), str(link))
    assert link.is_symlink()
    assert victim.read_text(encoding='utf-8') == 'precious\n'


def test_a_symbolic_link_on_the_way_is_refused(tmp_path: pathlib.Path) -> None:
    real = tmp_path / 'real'
    real.mkdir()
    (tmp_path / 'via').symlink_to(real)
    with pytest.raises(Failed, match='metrics_path'):
        preflight(FakeModule(), str(tmp_path / 'via' / 'health.prom'))
    assert list(real.iterdir()) == []


def test_a_fifo_is_refused(tmp_path: pathlib.Path) -> None:
    fifo = tmp_path / 'health.prom'
    os.mkfifo(fifo)
    with pytest.raises(Failed, match='metrics_path'):
        preflight(FakeModule(), str(fifo))


def test_an_unsafe_destination_is_a_warning_in_check_mode(tmp_path: pathlib.Path) -> None:
    (tmp_path / 'health.prom').mkdir()
    module = FakeModule(check_mode=True)
    preflight(module, str(tmp_path / 'health.prom'))
    assert len(module.warnings) == 1
    assert module.warnings[0].startswith('metrics_path is a directory')


def test_a_relative_path_is_checked_from_the_working_directory(tmp_path: pathlib.Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.chdir(tmp_path)
    module = FakeModule()
    preflight(module, 'health.prom')
    with pytest.raises(Failed, match='does not exist'):
        preflight(module, 'missing/health.prom')


def test_an_outcome_may_hold_a_path_key(tmp_path: pathlib.Path) -> None:
    # module and path are positional-only so that these keys go to the outcome: what this test checks.
    path = str(tmp_path / 'missing' / 'health.prom')
    with pytest.raises(Failed) as info:
        preflight(FakeModule(), path, path='/the/result/path', module='rgpd')  # pylint: disable=kwarg-superseded-by-positional-arg
    assert info.value.result['path'] == '/the/result/path'
    assert info.value.result['module'] == 'rgpd'


def test_a_nul_character_fails_the_module_cleanly(tmp_path: pathlib.Path) -> None:
    with pytest.raises(Failed, match='metrics_path must not contain a NUL character'):
        preflight(FakeModule(), f'{tmp_path}/health\x00.prom', changed=False)
    module = FakeModule(check_mode=True)
    preflight(module, f'{tmp_path}/health\x00.prom')
    assert len(module.warnings) == 1


def test_a_path_with_lone_surrogates(tmp_path: pathlib.Path) -> None:
    module = FakeModule()
    preflight(module, f'{tmp_path}/caf\udce9.prom')
    assert module.warnings == []
