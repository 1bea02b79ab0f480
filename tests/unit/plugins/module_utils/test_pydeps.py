# Copyright (c) Dihya ops maintainers
# GNU General Public License v3.0+ (see LICENSES/GPL-3.0-or-later.txt or https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later

"""Tests of the Python dependency engine, against real virtual environments and real pip, offline.

The wheels of the test package ``dihya-demo-ext`` (1.0.0, 1.1.0, 2.0.0) and of a dependency
``dihya-demo-dep`` are built locally; pip never sees an index (``--no-index``).
"""

from __future__ import annotations

import http.server
import io
import json
import os
import pathlib
import sys
import tarfile
import textwrap
import threading
import zipfile

import pytest

from ansible_collections.dihya.ops.plugins.module_utils import _pydeps, _pydeps_specs
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
from ansible_collections.dihya.ops.tests.support.wheelbuilder import build_wheel
from ansible_collections.dihya.ops.tests.unit.plugins.module_utils.pydeps_utils import install, make_venv, wheelhouse
from ansible_collections.dihya.ops.tests.unit.plugins.modules.utils import run_module


@pytest.fixture
def wheels(tmp_path_factory):
    return wheelhouse(tmp_path_factory)


@pytest.fixture
def venv(tmp_path, tmp_path_factory):
    """A fresh real virtual environment per test (pip comes in through a .pth file, see pydeps_utils)."""
    return make_venv(tmp_path / 'venv', tmp_path_factory)


def test_validate_spec_accepts_requirements():
    assert validate_spec(' flask==3.1.3 ') == 'flask==3.1.3'
    # pip gets the canonical form packaging parsed, nothing else.
    assert validate_spec('Flask[async]>=3.1,<4') == 'Flask[async]<4,>=3.1'
    assert validate_spec('flask >= 3.1') == 'flask>=3.1'
    assert validate_spec('dihya-demo-ext!=2.0.0') == 'dihya-demo-ext!=2.0.0'
    assert validate_spec('dihya_demo.ext==1.1.*') == 'dihya_demo.ext==1.1.*'
    assert validate_spec('name @ https://example.org/name-1.0-py3-none-any.whl', allow_urls=True).startswith('name @ https://')


@pytest.mark.parametrize('spec, message', [
    # Shell and requirement-file syntax
    ('flask; touch /tmp/x', 'forbidden characters'),
    ('flask && id', 'forbidden characters'),
    ('$(id)', 'forbidden characters'),
    ('`id`', 'forbidden characters'),
    ("flask'", 'forbidden characters'),
    ('flask==1.0 ; python_version < "3"', 'forbidden characters'),
    ('flask; os_name == "posix"', 'forbidden characters'),
    ('flask\n-r /etc/passwd', 'forbidden characters'),
    ('flask==1.0 --hash=sha256:abc', 'not a valid PEP 508'),
    ('evil pkg', 'not a valid PEP 508'),
    ('evil pkg-1.0.tar.gz', 'archive or wheel file name'),
    # Options
    ('-r /etc/passwd', 'pip option'),
    ('-rrequirements.txt', 'pip option'),
    ('--requirement=requirements.txt', 'pip option'),
    ('-e .', 'pip option'),
    ('--editable=git+https://example.org/x.git', 'pip option'),
    ('--index-url=http://evil', 'pip option'),
    ('-i http://evil/simple', 'pip option'),
    ('--find-links /tmp', 'pip option'),
    # Archive and wheel file names, which pip reads as files of its working directory
    ('evilpkg-1.0.tar.gz', 'archive or wheel file name'),
    ('evilpkg-1.0.zip', 'archive or wheel file name'),
    ('evilpkg-1.0.tar.bz2', 'archive or wheel file name'),
    ('evilpkg-1.0.tgz', 'archive or wheel file name'),
    ('evilpkg-1.0.tar.xz', 'archive or wheel file name'),
    ('evilpkg-1.0.tar', 'archive or wheel file name'),
    ('EVILPKG-1.0.TAR.GZ', 'archive or wheel file name'),
    ('x-1.0-py3-none-any.whl', 'archive or wheel file name'),
    ('evilpkg===1.0.tar.gz', 'archive or wheel file name'),
    ('evilpkg[extra]-1.0.zip', 'archive or wheel file name'),
    ('evilpkg===1.0', 'arbitrary equality'),
    ('evilpkg==1.0.x', 'not a valid PEP 508'),
    # Paths
    ('../evil', 'looks like a path'),
    ('./pkg', 'looks like a path'),
    ('./evilpkg-1.0.tar.gz', 'looks like a path'),
    ('/tmp/pkg.whl', 'looks like a path'),
    ('~/pkg', 'looks like a path'),
    ('src/pkg', 'looks like a path'),
    ('pkg\\sub', 'forbidden characters'),
    # URLs and direct references
    ('file:///tmp/evilpkg-1.0.tar.gz', 'is a URL'),
    ('https://example.org/evilpkg-1.0.tar.gz', 'is a URL'),
    ('git+https://example.org/evil.git', 'is a URL'),
    ('name @ https://example.org/x.whl', 'allow_urls'),
    ('name@https://example.org/x.whl', 'allow_urls'),
    ('name @ file:///tmp/x.whl', 'allow_urls'),
    ('flask===', 'not a valid PEP 508'),
    ('', 'non-empty string'),
    (42, 'non-empty string'),
])
def test_validate_spec_refuses_hostile_input(spec, message):
    with pytest.raises(PyDepsError, match=message):
        validate_spec(spec)


@pytest.mark.parametrize('spec', [
    'evil @ file:///tmp/evilpkg-1.0-py3-none-any.whl',
    'evil @ https://example.org/evilpkg-1.0.tar.gz',
    'evil @ https://example.org/evilpkg-1.0.zip',
    'evil @ git+https://example.org/evil.git',
    'evil @ ftp://example.org/evil-1.0-py3-none-any.whl',
    'evil @ ../evilpkg-1.0-py3-none-any.whl',
])
def test_allowed_urls_are_wheels_over_http_only(spec):
    with pytest.raises(PyDepsError):
        validate_spec(spec, allow_urls=True)


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
    with pytest.raises(PyDepsError, match=r'lacks the wheels of dihya-demo-ext==1\.1\.0'):
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
    with pytest.raises(PyDepsError, match=r'pip install failed .*outside the target directory'):
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
    with pytest.raises(PyDepsError, match=r'differs from the snapshot: dihya-demo-ext is 1\.1\.0 instead of 1\.0\.0'):
        rollback(pip, snapshot)


def test_packaging_missing_is_reported(monkeypatch):
    monkeypatch.setattr(_pydeps_specs, 'HAS_PACKAGING', False)
    with pytest.raises(PyDepsError, match='packaging'):
        validate_spec('flask')


# ---------------------------------------------------------------------------
# Nothing is ever built: no source distribution's build backend runs, in a plan or anywhere else
# ---------------------------------------------------------------------------

def evil_sdist(folder: pathlib.Path, canary: pathlib.Path, fmt: str = 'tar.gz', name: str = 'evilpkg', version: str = '1.0') -> pathlib.Path:
    """A real source distribution whose in-tree build backend writes ``canary`` as soon as pip loads it."""
    base = f'{name}-{version}'
    backend = textwrap.dedent(f"""
        import pathlib
        pathlib.Path({str(canary)!r}).write_text('the build backend ran')


        def get_requires_for_build_wheel(config_settings=None):
            return []


        def prepare_metadata_for_build_wheel(metadata_directory, config_settings=None):
            raise RuntimeError('a build backend ran')


        def build_wheel(wheel_directory, config_settings=None, metadata_directory=None):
            raise RuntimeError('a build backend ran')
    """)
    files = {
        'pyproject.toml': f'[build-system]\nrequires = []\nbuild-backend = "evil_backend"\nbackend-path = ["."]\n\n'
                          f'[project]\nname = "{name}"\nversion = "{version}"\n',
        'evil_backend.py': backend,
        'setup.py': f'import pathlib\npathlib.Path({str(canary)!r}).write_text("setup.py ran")\n',
        'PKG-INFO': f'Metadata-Version: 2.1\nName: {name}\nVersion: {version}\n',
    }
    folder.mkdir(parents=True, exist_ok=True)
    path = folder / f'{base}.{fmt}'
    if fmt == 'zip':
        with zipfile.ZipFile(path, 'w') as archive:
            for relative, text in files.items():
                archive.writestr(f'{base}/{relative}', text)
    else:
        with tarfile.open(path, {'tar.gz': 'w:gz', 'tar.bz2': 'w:bz2', 'tar.xz': 'w:xz', 'tar': 'w'}[fmt]) as archive:
            for relative, text in files.items():
                data = text.encode()
                info = tarfile.TarInfo(f'{base}/{relative}')
                info.size = len(data)
                archive.addfile(info, io.BytesIO(data))
    return path


@pytest.fixture
def evil_dir(tmp_path):
    """A folder holding a hostile sdist in several formats, the canary it would write, and a source folder next to them."""
    folder = tmp_path / 'cwd'
    canary = tmp_path / 'CANARY'
    for fmt in ('tar.gz', 'zip', 'tar.bz2', 'tar.xz', 'tar'):
        evil_sdist(folder, canary, fmt)
    # An unpacked source tree too, as pip would take ./evilpkg or a folder named like the spec.
    (folder / 'evilpkg').mkdir()
    for name in ('pyproject.toml', 'setup.py'):
        with tarfile.open(folder / 'evilpkg-1.0.tar') as archive:
            member = archive.extractfile(f'evilpkg-1.0/{name}')
            (folder / 'evilpkg' / name).write_bytes(member.read())
    (folder / 'evilpkg' / 'evil_backend.py').write_text(f'import pathlib\npathlib.Path({str(canary)!r}).write_text("ran")\n')
    return folder, canary


ARCHIVE_SPECS = ['evilpkg-1.0.tar.gz', 'evilpkg-1.0.zip', 'evilpkg-1.0.tar.bz2', 'evilpkg-1.0.tar.xz', 'evilpkg-1.0.tar',
                 './evilpkg-1.0.tar.gz', './evilpkg', 'evilpkg===1.0.tar.gz']


@pytest.mark.parametrize('spec', ARCHIVE_SPECS)
def test_plan_refuses_archive_names_and_builds_nothing(venv, evil_dir, spec, monkeypatch):
    folder, canary = evil_dir
    monkeypatch.chdir(folder)
    with pytest.raises(PyDepsError, match=r'archive or wheel file name|looks like a path'):
        make_plan(Pip(str(venv)), [spec], Sources(find_links=(str(folder),), no_index=True))
    assert not canary.exists()


@pytest.mark.parametrize('spec', ['evilpkg-1.0.tar.gz', 'evilpkg-1.0.zip', './evilpkg', 'evilpkg'])
def test_pip_never_sees_the_callers_working_directory(venv, evil_dir, spec, monkeypatch):
    """With the spec check bypassed, pip still runs from an empty private folder: the caller's files are not there."""
    folder, canary = evil_dir
    monkeypatch.chdir(folder)
    monkeypatch.setattr(_pydeps, 'validate_spec', lambda spec, allow_urls=False: spec)
    empty = folder.parent / 'empty'
    empty.mkdir()
    with pytest.raises(PyDepsError):
        make_plan(Pip(str(venv)), [spec], Sources(find_links=(str(empty),), no_index=True))
    assert not canary.exists()


def test_sdists_in_the_sources_are_never_built(venv, evil_dir, tmp_path, wheels):
    """A proper name whose only distribution is a source archive: the plan, the install and the snapshot all refuse to build it."""
    folder, canary = evil_dir
    pip = Pip(str(venv))
    sources = Sources(find_links=(str(folder),), no_index=True)
    with pytest.raises(PyDepsError, match='pip install failed'):
        make_plan(pip, ['evilpkg==1.0'], sources)
    assert not canary.exists()
    # The install of a plan (made elsewhere, or tampered with) refuses to build too.
    forged = _pydeps.Plan(specs=['evilpkg==1.0'], changes=[_pydeps.Change('evilpkg', None, '1.0', 'install', True)], before={})
    with pytest.raises(PyDepsError, match='pip install failed'):
        apply(pip, forged, sources)
    assert not canary.exists()
    # A snapshot whose sources hold only the sdist of an installed version does not build its wheel.
    build_wheel(tmp_path / 'evil-wheel', '1.0', name='evilpkg')
    install(venv, tmp_path / 'evil-wheel', 'evilpkg==1.0')
    with pytest.raises(PyDepsError, match=r'pip wheel failed|no wheel could be stored'):
        take_snapshot(pip, str(tmp_path / 'snap'), sources)
    assert not canary.exists()
    fetching = [argv for argv in pip.commands if argv[5] in ('install', 'wheel')]
    assert len(fetching) == 3 and all(argv[6:8] == ['--only-binary', ':all:'] for argv in fetching), pip.commands


def test_real_installs_are_wheels_only(venv, wheels):
    pip = Pip(str(venv))
    sources = Sources(find_links=(str(wheels),), no_index=True)
    apply(pip, make_plan(pip, ['dihya-demo-ext==1.1.0'], sources), sources)
    assert pip.freeze() == ['dihya-demo-ext==1.1.0']
    fetching = [argv for argv in pip.commands if argv[5] in ('install', 'wheel', 'download')]
    assert len(fetching) == 2 and all(argv[6:8] == ['--only-binary', ':all:'] for argv in fetching)


def test_the_runner_uses_an_empty_private_working_directory(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    (tmp_path / 'evilpkg-1.0.tar.gz').write_text('x')
    monkeypatch.setenv('PIP_NO_BINARY', ':all:')
    code = 'import json, os, stat; print(json.dumps([os.getcwd(), os.listdir(), stat.S_IMODE(os.stat(".").st_mode), os.environ.get("PIP_NO_BINARY")]))'
    rc, out, _err = _pydeps.subprocess_runner([sys.executable, '-c', code], 30)
    cwd, listing, mode, no_binary = json.loads(out)
    assert rc == 0 and cwd != str(tmp_path) and listing == [] and mode == 0o700 and no_binary is None
    assert not os.path.exists(cwd)


@pytest.mark.parametrize('packages', [['evilpkg-1.0.tar.gz'], ['x-1.0-py3-none-any.whl'], ['./evilpkg'], ['evilpkg==1.0']])
def test_module_check_mode_plan_builds_nothing(venv, evil_dir, packages, monkeypatch):
    from ansible_collections.dihya.ops.plugins.modules import python_deps  # pylint: disable=import-outside-toplevel

    folder, canary = evil_dir
    monkeypatch.chdir(folder)
    for action in ('plan', 'apply'):
        args = {'venv': str(venv), 'action': action, 'packages': packages, 'find_links': [str(folder)], 'no_index': True}
        result = run_module(python_deps.main, args, check_mode=True)
        assert result['failed'] is True, result
        assert not canary.exists()


# ---------------------------------------------------------------------------
# Direct references: a package only available at the URL given for it
# ---------------------------------------------------------------------------

@pytest.fixture
def served_wheel(tmp_path, monkeypatch):
    """A wheel of ``dihya-demo-url`` 4.0.0 served by a loopback HTTP server (in this process), and the requests it saw."""
    folder = tmp_path / 'served'
    wheel = build_wheel(folder, '4.0.0', name='dihya-demo-url')
    seen: list[str] = []

    class Handler(http.server.SimpleHTTPRequestHandler):
        def __init__(self, *args, **kwargs):
            super().__init__(*args, directory=str(folder), **kwargs)

        def log_message(self, format, *args):  # pylint: disable=redefined-builtin
            seen.append(self.path)

    server = http.server.ThreadingHTTPServer(('127.0.0.1', 0), Handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    for variable in ('http_proxy', 'HTTP_PROXY', 'https_proxy', 'HTTPS_PROXY', 'all_proxy', 'ALL_PROXY', 'PIP_PROXY'):
        monkeypatch.delenv(variable, raising=False)
    try:
        yield f'http://127.0.0.1:{server.server_port}/{wheel.name}', seen
    finally:
        server.shutdown()
        server.server_close()
        thread.join(5)


def test_a_direct_reference_installs_the_package_from_its_url(venv, wheels, served_wheel):
    """``name @ URL``: the plan, its pins and the install all use the URL, where the only copy of the package is."""
    url, seen = served_wheel
    install(venv, wheels, 'dihya-demo-ext==1.0.0')
    pip = Pip(str(venv))
    # The other sources do not have the package: only the URL does.
    sources = Sources(find_links=(str(wheels),), no_index=True)
    spec = f'dihya-demo-url @ {url}'
    plan = make_plan(pip, [spec, 'dihya-demo-ext==1.1.0'], sources, allow_urls=True)
    by_name = {change.name: change for change in plan.changes}
    assert by_name['dihya-demo-url'].url == url and by_name['dihya-demo-url'].new == '4.0.0'
    assert by_name['dihya-demo-url'].as_dict()['url'] == url
    assert by_name['dihya-demo-ext'].url is None
    assert plan.pins == ['dihya-demo-ext==1.1.0', spec]
    assert plan.result['dihya-demo-url'] == '4.0.0'
    assert apply(pip, plan, sources) == plan.changes
    assert pip.freeze()[0] == 'dihya-demo-ext==1.1.0'
    assert pip.installed()['dihya-demo-url'] == ('dihya-demo-url', '4.0.0')
    assert any(path.endswith(pathlib.PurePosixPath(url).name) for path in seen)
    # The pins of a plan are what apply is given again (the role does so): the URL is kept, and nothing is left to change.
    assert make_plan(pip, plan.pins, sources, allow_urls=True).changes == []


def test_a_direct_reference_in_the_pins_still_needs_allow_urls(venv, served_wheel):
    url, dummy_seen = served_wheel
    pip = Pip(str(venv))
    with pytest.raises(PyDepsError, match='set allow_urls'):
        make_plan(pip, [f'dihya-demo-url @ {url}'], Sources())
    forged = _pydeps.Plan(specs=[], changes=[_pydeps.Change('dihya-demo-url', None, '4.0.0', 'install', True, url='file:///etc/x.whl')],
                          before={})
    with pytest.raises(PyDepsError, match='only http:// or https:// URLs of wheels'):
        apply(pip, forged, Sources())
    assert 'dihya-demo-url' not in pip.installed()
