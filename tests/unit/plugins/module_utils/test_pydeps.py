# Copyright (c) Dihya ops maintainers
# GNU General Public License v3.0+ (see LICENSES/GPL-3.0-or-later.txt or https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later

"""Tests of the Python dependency engine, against real virtual environments and real pip, offline.

The wheels of the test package ``dihya-demo-ext`` (1.0.0, 1.1.0, 2.0.0) and of a dependency
``dihya-demo-dep`` are built locally; pip never sees an index (``--no-index``).
"""

from __future__ import annotations

import json
import os
import sys

import pytest

from ansible_collections.dihya.ops.plugins.module_utils import _pydeps
from ansible_collections.dihya.ops.plugins.module_utils._pydeps import (
    Pip,
    PyDepsError,
    Sources,
    apply,
    canonical_name,
    compare_versions,
    freeze_differences,
    load_snapshot,
    make_plan,
    parse_freeze,
    parse_freeze_lenient,
    parse_report,
    rollback,
    take_snapshot,
    validate_source,
    validate_spec,
)
from ansible_collections.dihya.ops.tests.functional.wheelbuilder import build_wheel
from ansible_collections.dihya.ops.tests.unit.plugins.module_utils.pydeps_utils import install, make_venv, wheelhouse


@pytest.fixture
def wheels(tmp_path_factory):
    return wheelhouse(tmp_path_factory)


@pytest.fixture
def venv(tmp_path, tmp_path_factory):
    """A fresh real virtual environment per test (pip comes in through a .pth file, see pydeps_utils)."""
    return make_venv(tmp_path / 'venv', tmp_path_factory)


def test_validate_spec_accepts_requirements():
    assert validate_spec(' flask==3.1.3 ') == 'flask==3.1.3'
    assert validate_spec('Flask[async]>=3.1,<4') == 'Flask[async]>=3.1,<4'
    assert validate_spec('dihya-demo-ext!=2.0.0') == 'dihya-demo-ext!=2.0.0'
    assert validate_spec('name @ https://example.org/name-1.0-py3-none-any.whl', allow_urls=True).startswith('name @')


@pytest.mark.parametrize('spec, message', [
    ('flask; touch /tmp/x', 'forbidden characters'),
    ('flask && id', 'forbidden characters'),
    ('$(id)', 'forbidden characters'),
    ('`id`', 'forbidden characters'),
    ("flask'", 'forbidden characters'),
    ('flask==1.0 ; python_version < "3"', 'forbidden characters'),
    ('-r /etc/passwd', 'pip option'),
    ('--index-url=http://evil', 'pip option'),
    ('../evil', 'not a valid PEP 508'),
    ('./pkg', 'not a valid PEP 508'),
    ('/tmp/pkg.whl', 'not a valid PEP 508'),
    ('name @ https://example.org/x.whl', 'allow_urls'),
    ('name @ file:///tmp/x.whl', 'allow_urls'),
    ('flask===', 'not a valid PEP 508'),
    ('', 'non-empty string'),
    (42, 'non-empty string'),
])
def test_validate_spec_refuses_hostile_input(spec, message):
    with pytest.raises(PyDepsError, match=message):
        validate_spec(spec)


def test_sources_and_their_validation():
    assert Sources().argv() == []
    assert Sources(index_url='https://pypi.example/simple', find_links=('/srv/wh',)).argv() == [
        '--index-url', 'https://pypi.example/simple', '--find-links', '/srv/wh']
    assert Sources(find_links=('/srv/wh',), no_index=True).argv() == ['--no-index', '--find-links', '/srv/wh']
    with pytest.raises(PyDepsError, match='needs at least one find_links'):
        Sources(no_index=True)
    for bad in ('relative/dir', 'ftp://x', '/srv/a b', ' /srv', '--find-links=/x'):
        with pytest.raises(PyDepsError):
            validate_source(bad, 'find-links entry')


def test_versions_and_names():
    assert canonical_name('Flask_Login.x') == 'flask-login-x'
    assert compare_versions('1.0.0', '1.1.0') == 'upgrade'
    assert compare_versions('2.0', '1.10') == 'downgrade'
    assert compare_versions('1.0', '1.0.0') == 'reinstall'
    assert compare_versions('weird', 'other') == 'change'
    assert compare_versions('weird', 'weird') == 'reinstall'


def test_parse_report_and_freeze_helpers():
    before = {'flask': ('Flask', '3.1.3'), 'dihya-demo-ext': ('dihya-demo-ext', '1.0.0')}
    report = {'install': [
        {'metadata': {'name': 'dihya_demo_ext', 'version': '1.1.0'}, 'requested': True},
        {'metadata': {'name': 'Flask', 'version': '3.1.3'}, 'requested': False},
        {'metadata': {'name': 'newdep', 'version': '0.1'}},
    ]}
    changes = parse_report(report, before)
    assert [change.summary for change in changes] == ['dihya_demo_ext 1.0.0 -> 1.1.0', 'newdep (new) -> 0.1']
    assert changes[0].action == 'upgrade' and changes[0].requested and changes[1].action == 'install'
    assert changes[1].as_dict()['pin'] == 'newdep==0.1'
    for bad in ({}, {'install': [{'metadata': {}}]}, {'install': ['x']}, []):
        with pytest.raises(PyDepsError):
            parse_report(bad, before)
    assert parse_freeze(['Flask==3.1.3']) == {'flask': ('Flask', '3.1.3')}
    with pytest.raises(PyDepsError, match='cannot be snapshotted'):
        parse_freeze(['-e git+https://example.org/x.git#egg=x'])
    lenient = parse_freeze_lenient(['-e /src/thing', 'pkg @ file:///x.whl', 'a==1'])
    assert lenient['a'] == ('a', '1') and lenient['pkg'] == ('pkg', '?') and ('/src/thing', '?') in lenient.values()
    assert freeze_differences({'a': ('a', '1'), 'b': ('b', '1')}, {'a': ('a', '2'), 'c': ('c', '1')}) == [
        'a is 2 instead of 1', 'b==1 is missing', 'c==1 is extra']


def test_pip_refuses_what_is_not_a_venv(tmp_path):
    with pytest.raises(PyDepsError, match='absolute path'):
        Pip('relative/venv')
    with pytest.raises(PyDepsError, match='not a virtual environment'):
        Pip(str(tmp_path))


def test_pip_errors_are_reported(tmp_path, venv):
    pip = Pip(str(venv), runner=lambda argv, timeout: (2, '', 'line one\nERROR: boom\n'))
    with pytest.raises(PyDepsError, match=r'pip freeze failed \(rc=2\): line one \| ERROR: boom'):
        pip.freeze()
    pip = Pip(str(venv), runner=lambda argv, timeout: (0, 'not json', ''))
    with pytest.raises(PyDepsError, match='did not return JSON'):
        pip.installed()
    assert _pydeps.subprocess_runner(['/nonexistent/binary'], 5)[0] == 127
    assert _pydeps.subprocess_runner([sys.executable, '-c', 'import time; time.sleep(5)'], 0.2)[0] == 124


def test_plan_against_a_real_dry_run_changes_nothing(venv, wheels):
    install(venv, wheels, 'dihya-demo-ext==1.0.0')
    pip = Pip(str(venv))
    sources = Sources(find_links=(str(wheels),), no_index=True)
    before = pip.freeze()
    plan = make_plan(pip, ['dihya-demo-ext==1.1.0', 'dihya-demo-app==3.0.0'], sources)
    assert pip.freeze() == before
    assert [change.summary for change in plan.changes] == [
        'dihya-demo-app (new) -> 3.0.0', 'dihya-demo-dep (new) -> 1.0.0', 'dihya-demo-ext 1.0.0 -> 1.1.0']
    assert [change.requested for change in plan.changes] == [True, False, True]
    assert plan.result['dihya-demo-ext'] == '1.1.0' and plan.result['dihya-demo-dep'] == '1.0.0' and 'pip' in plan.result
    assert plan.changed
    # Every pip call is an argument vector through the venv's interpreter.
    assert all(argv[:3] == [str(venv / 'bin' / 'python'), '-m', 'pip'] for argv in pip.commands)
    satisfied = make_plan(pip, ['dihya-demo-ext==1.0.0'], sources)
    assert satisfied.changes == [] and not satisfied.changed
    assert make_plan(pip, ['dihya-demo-ext'], sources).changes == []
    assert [change.new for change in make_plan(pip, ['dihya-demo-ext'], sources, upgrade=True).changes] == ['2.0.0']
    with pytest.raises(PyDepsError, match='pip install failed'):
        make_plan(pip, ['dihya-demo-ext==9.9'], sources)
    with pytest.raises(PyDepsError, match='no packages'):
        make_plan(pip, [], sources)


def test_snapshot_apply_and_rollback_offline(venv, wheels, tmp_path):
    install(venv, wheels, 'dihya-demo-ext==1.0.0', 'dihya-demo-dep==1.0.0')
    pip = Pip(str(venv))
    sources = Sources(find_links=(str(wheels),), no_index=True)
    snapshot_dir = str(tmp_path / 'state' / 'snapshot')
    assert take_snapshot(pip, snapshot_dir, sources, check_mode=True).wheels == []
    assert not os.path.exists(snapshot_dir)
    snapshot = take_snapshot(pip, snapshot_dir, sources)
    frozen = pip.freeze()
    assert snapshot.freeze == frozen == ['dihya-demo-dep==1.0.0', 'dihya-demo-ext==1.0.0']
    assert sorted(snapshot.wheels) == ['dihya_demo_dep-1.0.0-py3-none-any.whl', 'dihya_demo_ext-1.0.0-py3-none-any.whl']
    manifest = json.loads((tmp_path / 'state' / 'snapshot' / 'snapshot.json').read_text())
    assert manifest['freeze'] == frozen and manifest['venv'] == str(venv)

    plan = make_plan(pip, ['dihya-demo-ext==2.0.0', 'dihya-demo-app==3.0.0'], sources)
    assert apply(pip, plan, sources, check_mode=True) == plan.changes
    assert pip.freeze() == frozen
    apply(pip, plan, sources)
    assert pip.freeze() == ['dihya-demo-app==3.0.0', 'dihya-demo-dep==1.0.0', 'dihya-demo-ext==2.0.0']
    assert apply(pip, make_plan(pip, ['dihya-demo-ext==2.0.0'], sources), sources) == []

    # The rollback works with the wheel folder of the update gone: only the snapshot is used.
    loaded = load_snapshot(snapshot_dir)
    planned = rollback(pip, loaded, check_mode=True)
    assert planned.removed == ['dihya-demo-app'] and [change.summary for change in planned.reinstalled] == ['dihya-demo-ext 2.0.0 -> 1.0.0']
    done = rollback(pip, loaded)
    assert done.changed and pip.freeze() == frozen == done.freeze
    assert not rollback(pip, loaded).changed

    # A new snapshot keeps working from the previous snapshot's wheels when the sources lack them.
    again = take_snapshot(pip, snapshot_dir, Sources(find_links=(str(tmp_path / 'empty'),), no_index=True))
    assert again.freeze == frozen and len(again.wheels) == 2
    assert not [entry for entry in os.listdir(tmp_path / 'state') if entry.startswith('.snapshot')]


def test_incomplete_snapshot_fails_and_keeps_the_previous_one(venv, wheels, tmp_path):
    install(venv, wheels, 'dihya-demo-ext==1.1.0')
    pip = Pip(str(venv))
    empty = tmp_path / 'empty'
    empty.mkdir()
    with pytest.raises(PyDepsError, match='pip wheel failed'):
        take_snapshot(pip, str(tmp_path / 'snap'), Sources(find_links=(str(empty),), no_index=True))
    assert not (tmp_path / 'snap').exists()
    assert not [entry for entry in os.listdir(tmp_path) if entry.startswith('.snapshot')]
    # A snapshot whose wheel is gone is refused before any rollback.
    take_snapshot(pip, str(tmp_path / 'snap'), Sources(find_links=(str(wheels),), no_index=True))
    for wheel in (tmp_path / 'snap' / 'wheels').iterdir():
        wheel.unlink()
    with pytest.raises(PyDepsError, match='lacks the wheels of dihya-demo-ext==1.1.0'):
        load_snapshot(str(tmp_path / 'snap'))
    with pytest.raises(PyDepsError, match='not a readable snapshot'):
        load_snapshot(str(tmp_path / 'nothing'))


def test_snapshot_target_must_be_safe(venv, tmp_path):
    pip = Pip(str(venv))
    for bad in ('relative', '/', '/etc', '/tmp'):
        with pytest.raises(PyDepsError):
            take_snapshot(pip, bad, Sources())
    (tmp_path / 'link').symlink_to(tmp_path)
    with pytest.raises(PyDepsError, match='symbolic link'):
        take_snapshot(pip, str(tmp_path / 'link'), Sources())


def test_apply_reports_install_errors_and_wrong_results(venv, wheels, tmp_path):
    pip = Pip(str(venv))
    unsafe = build_wheel(tmp_path / 'unsafe', '1.2.0', unsafe=True).parent
    sources = Sources(find_links=(str(wheels), str(unsafe)), no_index=True)
    # The dry run cannot see that the wheel writes outside the environment; the install refuses it.
    plan = make_plan(pip, ['dihya-demo-ext==1.2.0'], sources)
    assert plan.pins == ['dihya-demo-ext==1.2.0']
    with pytest.raises(PyDepsError, match='pip install failed .*outside the target directory'):
        apply(pip, plan, sources)
    plan = make_plan(pip, ['dihya-demo-ext==1.1.0'], sources)
    real_installed = pip.installed
    pip.installed = lambda: {**real_installed(), 'dihya-demo-ext': ('dihya-demo-ext', '1.0.0')}
    with pytest.raises(PyDepsError, match=r'does not hold the planned versions: dihya-demo-ext \(wanted 1.1.0, found 1.0.0\)'):
        apply(pip, plan, sources)


def test_rollback_reports_a_freeze_that_differs(venv, wheels, tmp_path):
    install(venv, wheels, 'dihya-demo-ext==1.0.0')
    pip = Pip(str(venv))
    snapshot = take_snapshot(pip, str(tmp_path / 'snap'), Sources(find_links=(str(wheels),), no_index=True))
    install(venv, wheels, 'dihya-demo-ext==1.1.0')
    real_run = pip.run

    def no_install(*args, **kwargs):
        if args[0] == 'install':
            return 0, '', ''
        return real_run(*args, **kwargs)

    pip.run = no_install
    with pytest.raises(PyDepsError, match='differs from the snapshot: dihya-demo-ext is 1.1.0 instead of 1.0.0'):
        rollback(pip, snapshot)


def test_packaging_missing_is_reported(monkeypatch):
    monkeypatch.setattr(_pydeps, 'HAS_PACKAGING', False)
    with pytest.raises(PyDepsError, match='packaging'):
        validate_spec('flask')
