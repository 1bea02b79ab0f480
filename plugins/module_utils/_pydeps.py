# Copyright (c) Dihya ops maintainers
# GNU General Public License v3.0+ (see LICENSES/GPL-3.0-or-later.txt or https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later

# This module utility is PRIVATE to the collection. It can change at any time.
"""Python dependency engine: plan, snapshot, apply and roll back the packages of a virtual environment.

The engine knows nothing about Ansible. Every pip call goes through the virtual environment's own
interpreter (``<venv>/bin/python -m pip``) as an argument vector, never through a shell, and every
package specification is validated first (:func:`._pydeps_specs.validate_spec`, where specifications,
versions, ``pip freeze`` and pip's report are parsed).

* :func:`make_plan` asks ``pip install --dry-run --report`` what an install would do and compares
  the JSON report with the installed versions: exactly the packages that would change.
* :func:`take_snapshot` records ``pip freeze`` and a wheel of every frozen version in a snapshot
  folder, from local sources only, so that :func:`rollback` can restore the set with no index.
* :func:`apply` installs the exact versions of a plan (``--no-deps``: the plan already resolved them)
  and checks that the environment then holds them.
* :func:`rollback` reinstalls, offline from the snapshot, every package whose version differs,
  removes the packages the snapshot did not have, and checks that ``pip freeze`` equals the snapshot.
"""

from __future__ import annotations

import dataclasses
import datetime
import json
import os
import shutil
import stat
import subprocess
import tempfile
import typing as t

from ansible_collections.dihya.ops.plugins.module_utils._pydeps_specs import (
    ARCHIVE_SUFFIXES,
    FORBIDDEN_CHARACTERS,
    HAS_PACKAGING,
    PACKAGING_IMPORT_ERROR,
    Change,
    PyDepsError,
    Sources,
    canonical_name,
    compare_versions,
    direct_urls,
    freeze_differences,
    missing_wheels,
    parse_freeze,
    parse_freeze_lenient,
    parse_report,
    parse_version,
    require_packaging,
    validate_source,
    validate_spec,
)
from ansible_collections.dihya.ops.plugins.module_utils._safe_write import UnsafeDestination, describe, lstat_at, open_dir, write_bytes


ACTIONS = ('snapshot', 'plan', 'apply', 'rollback')
FREEZE_FILE = 'freeze.txt'
MANIFEST_FILE = 'snapshot.json'
WHEELS_DIR = 'wheels'
# Every pip command that can fetch a distribution gets this: wheels only, so nothing is ever built (a
# source distribution's build backend is arbitrary code), in a plan as in an install or a snapshot.
BINARY_ONLY = ('--only-binary', ':all:')
_FETCHING_COMMANDS = frozenset(('install', 'wheel', 'download'))
# Environment variables that would change where pip looks or what it may build behind the argument vector's back.
_DROPPED_ENVIRONMENT = frozenset(('PIP_NO_BINARY', 'PIP_ONLY_BINARY', 'PIP_PREFER_BINARY', 'PIP_REQUIREMENT', 'PIP_EDITABLE',
                                  'PIP_CONSTRAINT', 'PIP_SRC', 'PIP_NO_BUILD_ISOLATION', 'PIP_USE_PEP517'))

Runner = t.Callable[[t.Sequence[str], float], 'tuple[int, str, str]']


def subprocess_runner(argv: t.Sequence[str], timeout: float) -> tuple[int, str, str]:
    """Run ``argv`` without a shell, in an empty private working directory; ``(rc, stdout, stderr)``.

    The working directory is made for this one command (mode 0700) and removed after it: pip reads
    an argument naming an existing file or folder of its working directory as that local file, so
    the caller's directory (whatever lies in it) must never be pip's.
    """
    env = {key: value for key, value in os.environ.items() if key not in _DROPPED_ENVIRONMENT}
    env.update(PIP_NO_INPUT='1', PIP_DISABLE_PIP_VERSION_CHECK='1', PYTHONDONTWRITEBYTECODE='1')
    workdir = tempfile.mkdtemp(prefix='dihya-pydeps-cwd-')
    try:
        completed = subprocess.run(list(argv), capture_output=True, text=True, timeout=timeout, check=False, env=env, cwd=workdir)
    except subprocess.TimeoutExpired:
        return 124, '', f'timed out after {timeout:g} s'
    except OSError as exc:
        return 127, '', str(exc)
    finally:
        shutil.rmtree(workdir, ignore_errors=True)
    return completed.returncode, completed.stdout, completed.stderr


def _tail(text: str, lines: int = 8) -> str:
    kept = [line for line in text.strip().splitlines() if line.strip()][-lines:]
    return ' | '.join(kept)


class Pip:
    """pip of one virtual environment, run as ``<venv>/bin/python -m pip``."""

    def __init__(self, venv: str, runner: Runner = subprocess_runner, timeout: float = 600) -> None:
        if not isinstance(venv, str) or not os.path.isabs(venv):
            raise PyDepsError(f'virtual environment {venv!r} must be an absolute path')
        self.venv = os.path.normpath(venv)
        self.python = os.path.join(self.venv, 'bin', 'python')
        if not os.path.isfile(os.path.join(self.venv, 'pyvenv.cfg')) or not os.access(self.python, os.X_OK):
            raise PyDepsError(f'{self.venv} is not a virtual environment (no pyvenv.cfg or bin/python)')
        self.runner = runner
        self.timeout = timeout
        self.commands: list[list[str]] = []

    def run(self, *args: str, check: bool = True) -> tuple[int, str, str]:
        """Run one pip command; commands that fetch distributions accept wheels only (:data:`BINARY_ONLY`)."""
        extra = BINARY_ONLY if args and args[0] in _FETCHING_COMMANDS else ()
        argv = [self.python, '-m', 'pip', '--disable-pip-version-check', '--no-input', *args[:1], *extra, *args[1:]]
        self.commands.append(argv)
        rc, out, err = self.runner(argv, self.timeout)
        if check and rc != 0:
            raise PyDepsError(f'pip {args[0]} failed (rc={rc}): {_tail(err) or _tail(out)}')
        return rc, out, err

    def freeze(self) -> list[str]:
        """``pip freeze`` lines, comments and blank lines dropped."""
        dummy, out, dummy_err = self.run('freeze')
        return [line.strip() for line in out.splitlines() if line.strip() and not line.startswith('#')]

    def installed(self) -> dict[str, tuple[str, str]]:
        """Every installed distribution (pip and setuptools included): canonical name -> (name, version)."""
        dummy, out, dummy_err = self.run('list', '--format', 'json')
        try:
            items = json.loads(out)
        except ValueError:
            raise PyDepsError('pip list did not return JSON') from None
        return {canonical_name(item['name']): (item['name'], item['version']) for item in items}


@dataclasses.dataclass
class Plan:
    """What an install would change, and the set of versions the environment would then hold."""

    specs: list[str]
    changes: list[Change]
    before: dict[str, tuple[str, str]]

    @property
    def changed(self) -> bool:
        return bool(self.changes)

    @property
    def result(self) -> dict[str, str]:
        """Name -> version after the install (every installed distribution)."""
        after = dict(self.before)
        for change in self.changes:
            after[canonical_name(change.name)] = (change.name, change.new)
        return dict(sorted(after.values(), key=lambda item: canonical_name(item[0])))

    @property
    def pins(self) -> list[str]:
        return [change.pin for change in self.changes]


def make_plan(pip: Pip, specs: t.Sequence[str], sources: Sources, upgrade: bool = False, allow_urls: bool = False,
              no_deps: bool = False) -> Plan:
    """Ask pip what installing ``specs`` would do, without installing anything."""
    checked = [validate_spec(spec, allow_urls=allow_urls) for spec in specs]
    if not checked:
        raise PyDepsError('no packages to plan')
    before = pip.installed()
    with tempfile.TemporaryDirectory(prefix='dihya-pydeps-') as workdir:
        report_path = os.path.join(workdir, 'report.json')
        argv = ['install', '--dry-run', '--quiet', '--report', report_path, *sources.argv()]
        if upgrade:
            argv.append('--upgrade')
        if no_deps:
            argv.append('--no-deps')
        pip.run(*argv, '--', *checked)
        try:
            with open(report_path, encoding='utf-8') as handle:
                report = json.load(handle)
        except (OSError, ValueError) as exc:
            raise PyDepsError(f'pip wrote no readable installation report: {exc}') from None
    # A package asked for as ``name @ URL`` is installed from that URL (see Change.pin), where the plan found it.
    return Plan(specs=checked, changes=parse_report(report, before, direct_urls(checked)), before=before)


@dataclasses.dataclass
class Snapshot:
    """A recorded package set and the wheels that restore it."""

    path: str
    freeze: list[str]
    pins: dict[str, tuple[str, str]]
    wheels: list[str]
    created: str = ''

    def as_dict(self) -> dict[str, t.Any]:
        return {'path': self.path, 'created': self.created, 'freeze': list(self.freeze),
                'packages': dict(self.pins.values()), 'wheels': list(self.wheels)}


def _safe_target(path: str, what: str) -> str:
    if not isinstance(path, str) or not os.path.isabs(path):
        raise PyDepsError(f'{what} {path!r} must be an absolute path')
    path = os.path.normpath(path)
    if path in ('/', '/etc', '/usr', '/var', '/tmp', '/home', '/root', '/opt', '/srv'):
        raise PyDepsError(f'{what} {path} is a system directory')
    if os.path.islink(path):
        raise PyDepsError(f'{what} {path} is a symbolic link')
    return path


SNAPSHOT_ENTRIES = frozenset((FREEZE_FILE, MANIFEST_FILE, WHEELS_DIR))


def _snapshot_folder(parent_fd: int, name: str, dest: str) -> os.stat_result | None:
    """What is at ``dest`` (``name`` in ``parent_fd``): None, or a snapshot folder written by :func:`take_snapshot`.

    Anything else (a file, a symbolic link, a FIFO, a device, a directory that is not a snapshot) raises
    :class:`PyDepsError`: a new snapshot replaces only an older snapshot, never something it did not write.
    """
    info = lstat_at(parent_fd, name)
    if info is None:
        return None
    if not stat.S_ISDIR(info.st_mode):
        raise PyDepsError(f'snapshot folder {dest} {describe(info.st_mode)}; refusing to replace it (it must be missing or a snapshot folder)')
    fd = os.open(name, os.O_RDONLY | os.O_DIRECTORY | os.O_NOFOLLOW, dir_fd=parent_fd)
    try:
        manifest = lstat_at(fd, MANIFEST_FILE)
        extra = sorted(set(os.listdir(fd)) - SNAPSHOT_ENTRIES)
    finally:
        os.close(fd)
    if manifest is None or not stat.S_ISREG(manifest.st_mode):
        raise PyDepsError(f'snapshot folder {dest} is a directory without {MANIFEST_FILE}, not a snapshot; refusing to replace it')
    if extra:
        raise PyDepsError(f'snapshot folder {dest} holds {", ".join(extra[:5])}, which a snapshot does not; refusing to replace it')
    return info


def _snapshot_parent(dest: str, check_mode: bool) -> int | None:
    """A descriptor of the folder holding ``dest`` (reached without symbolic links), checked to be fit for a snapshot."""
    try:
        parent_fd = open_dir(os.path.dirname(dest))
    except FileNotFoundError:
        if check_mode:
            return None
        raise
    except UnsafeDestination as exc:
        raise PyDepsError(f'snapshot folder {dest}: {exc}') from None
    try:
        _snapshot_folder(parent_fd, os.path.basename(dest), dest)
    except BaseException:
        os.close(parent_fd)
        raise
    return parent_fd


def take_snapshot(pip: Pip, dest: str, sources: Sources, check_mode: bool = False) -> Snapshot:
    """Record ``pip freeze`` and a wheel of every frozen version into ``dest``.

    The wheels come from ``sources`` (typically the wheelhouse the environment was installed from,
    ``--no-index``) and from the wheels of the snapshot already in ``dest``, so a chain of updates keeps
    working offline. The new snapshot is built next to ``dest`` and only replaces it once complete.

    ``dest`` must be missing or hold a snapshot (:data:`SNAPSHOT_ENTRIES` only); anything else there, or a
    symbolic link on its way, is refused before pip runs, in check mode too.
    """
    dest = _safe_target(dest, 'snapshot folder')
    if check_mode:
        parent_fd = _snapshot_parent(dest, check_mode=True)
        if parent_fd is not None:
            os.close(parent_fd)
    freeze = pip.freeze()
    pins = parse_freeze(freeze)
    created = datetime.datetime.now(datetime.timezone.utc).strftime('%Y-%m-%dT%H:%M:%SZ')  # noqa: UP017 - datetime.UTC is Python 3.11+
    if check_mode:
        return Snapshot(path=dest, freeze=freeze, pins=pins, wheels=[], created=created)
    parent = os.path.dirname(dest)
    os.makedirs(parent, mode=0o750, exist_ok=True)
    parent_fd = t.cast(int, _snapshot_parent(dest, check_mode=False))
    try:
        wheels = _build_snapshot(pip, dest, parent, parent_fd, freeze, pins, created, sources)
    finally:
        os.close(parent_fd)
    return Snapshot(path=dest, freeze=freeze, pins=pins, wheels=wheels, created=created)


def _build_snapshot(pip: Pip, dest: str, parent: str, parent_fd: int, freeze: list[str], pins: dict[str, tuple[str, str]],
                    created: str, sources: Sources) -> list[str]:
    """Build the snapshot in a new folder next to ``dest``, then swap it in place of the previous snapshot, if any."""
    name = os.path.basename(dest)
    building = tempfile.mkdtemp(prefix='.snapshot-', dir=parent)
    try:
        wheels_dir = os.path.join(building, WHEELS_DIR)
        os.mkdir(wheels_dir)
        freeze_path = os.path.join(building, FREEZE_FILE)
        write_bytes(freeze_path, ''.join(f'{line}\n' for line in freeze).encode('utf-8'), mode=0o640)
        previous = os.path.join(dest, WHEELS_DIR)
        find_links = sources.find_links + ((previous,) if os.path.isdir(previous) else ())
        snapshot_sources = Sources(index_url=sources.index_url, find_links=find_links, no_index=sources.no_index)
        if pins:
            pip.run('wheel', '--quiet', '--no-deps', '--wheel-dir', wheels_dir, *snapshot_sources.argv(),
                    '--requirement', freeze_path)
        missing = missing_wheels(pins, wheels_dir)
        if missing:
            raise PyDepsError(f'no wheel could be stored for {", ".join(missing)}; the snapshot is incomplete')
        wheels = sorted(entry for entry in os.listdir(wheels_dir) if entry.endswith('.whl'))
        manifest = {'created': created, 'venv': pip.venv, 'freeze': freeze, 'wheels': wheels}
        write_bytes(os.path.join(building, MANIFEST_FILE), (json.dumps(manifest, indent=2, sort_keys=True) + '\n').encode('utf-8'), mode=0o640)
        os.chmod(building, 0o750)
        _swap_in(parent, parent_fd, os.path.basename(building), name, dest)
    except BaseException:
        shutil.rmtree(building, ignore_errors=True)
        raise
    return wheels


def _swap_in(parent: str, parent_fd: int, building: str, name: str, dest: str) -> None:
    """Replace the snapshot ``name`` by the folder ``building`` (both in ``parent_fd``); only a snapshot is ever moved away."""
    previous = _snapshot_folder(parent_fd, name, dest)
    old = None
    if previous is not None:
        old = tempfile.mkdtemp(prefix='.snapshot-old-', dir=parent)
        old_fd = open_dir(old)
        try:
            os.rename(name, 'snapshot', src_dir_fd=parent_fd, dst_dir_fd=old_fd)
            moved = lstat_at(old_fd, 'snapshot')
            if moved is None or (moved.st_dev, moved.st_ino) != (previous.st_dev, previous.st_ino):
                # Something else was put at dest since it was checked: it goes back, nothing is removed.
                _put_back(old, parent_fd, name)
                raise PyDepsError(f'snapshot folder {dest} was replaced by something else during the snapshot; refusing to remove it')
        finally:
            os.close(old_fd)
    try:
        if lstat_at(parent_fd, name) is not None:
            raise PyDepsError(f'snapshot folder {dest} appeared during the snapshot; refusing to replace it')
        os.rename(building, name, src_dir_fd=parent_fd, dst_dir_fd=parent_fd)
    except BaseException:
        if old is not None and not _put_back(old, parent_fd, name):
            raise PyDepsError(f'the snapshot could not replace {dest}; the previous snapshot is kept in {old}') from None
        raise
    os.fsync(parent_fd)
    if old is not None:
        shutil.rmtree(old, ignore_errors=True)


def _put_back(old: str, parent_fd: int, name: str) -> bool:
    """Move ``old``/snapshot back to ``name`` if nothing took its place; True when done (``old`` is then removed)."""
    if lstat_at(parent_fd, name) is not None:
        return False
    os.rename(os.path.join(old, 'snapshot'), name, dst_dir_fd=parent_fd)
    os.rmdir(old)
    return True


def load_snapshot(path: str) -> Snapshot:
    """Read a snapshot written by :func:`take_snapshot` and check its wheels are all there."""
    path = _safe_target(path, 'snapshot folder')
    try:
        with open(os.path.join(path, MANIFEST_FILE), encoding='utf-8') as handle:
            manifest = json.load(handle)
        with open(os.path.join(path, FREEZE_FILE), encoding='utf-8') as handle:
            freeze = [line.strip() for line in handle if line.strip()]
    except (OSError, ValueError) as exc:
        raise PyDepsError(f'{path} is not a readable snapshot: {exc}') from None
    pins = parse_freeze(freeze)
    missing = missing_wheels(pins, os.path.join(path, WHEELS_DIR))
    if missing:
        raise PyDepsError(f'snapshot {path} lacks the wheels of {", ".join(missing)}')
    return Snapshot(path=path, freeze=freeze, pins=pins, wheels=list(manifest.get('wheels', [])),
                    created=str(manifest.get('created', '')))


def apply(pip: Pip, plan: Plan, sources: Sources, check_mode: bool = False) -> list[Change]:
    """Install exactly the versions of ``plan`` and check the environment holds them.

    Each change is installed by its pin: ``name==version`` from ``sources``, or ``name @ URL`` for a package the
    plan found at the URL it was asked for at (the pin is validated again, as a URL of a wheel over http or https).
    """
    if not plan.changes or check_mode:
        return plan.changes
    pins = [validate_spec(change.pin, allow_urls=change.url is not None) for change in plan.changes]
    pip.run('install', '--quiet', '--no-deps', *sources.argv(), '--', *pins)
    installed = pip.installed()
    wrong = [f'{change.name} (wanted {change.new}, found {installed.get(canonical_name(change.name), ("", "nothing"))[1]})'
             for change in plan.changes
             if installed.get(canonical_name(change.name), ('', ''))[1] != change.new]
    if wrong:
        raise PyDepsError(f'after the install the environment does not hold the planned versions: {", ".join(wrong)}')
    return plan.changes


@dataclasses.dataclass
class RollbackResult:
    """What a rollback did (or would do, in check mode)."""

    reinstalled: list[Change]
    removed: list[str]
    freeze: list[str]

    @property
    def changed(self) -> bool:
        return bool(self.reinstalled or self.removed)


def rollback(pip: Pip, snapshot: Snapshot, check_mode: bool = False) -> RollbackResult:
    """Bring the environment back to ``snapshot``, offline, and check ``pip freeze`` equals it."""
    current = parse_freeze_lenient(pip.freeze())
    removed = sorted((current[key][0] for key in current if key not in snapshot.pins), key=canonical_name)
    reinstalled = [
        Change(name=name, current=current[key][1] if key in current else None, new=version,
               action='install' if key not in current else compare_versions(current[key][1], version), requested=True)
        for key, (name, version) in sorted(snapshot.pins.items())
        if key not in current or current[key][1] != version
    ]
    if check_mode or not (removed or reinstalled):
        return RollbackResult(reinstalled=reinstalled, removed=removed, freeze=list(snapshot.freeze))
    if removed:
        pip.run('uninstall', '--yes', '--quiet', '--', *removed)
    if reinstalled:
        pip.run('install', '--quiet', '--no-deps', '--no-index', '--find-links', os.path.join(snapshot.path, WHEELS_DIR),
                '--', *[change.pin for change in reinstalled])
    after = pip.freeze()
    differences = freeze_differences(snapshot.pins, parse_freeze_lenient(after))
    if differences:
        raise PyDepsError(f'after the rollback pip freeze differs from the snapshot: {"; ".join(differences)}')
    return RollbackResult(reinstalled=reinstalled, removed=removed, freeze=after)


__all__ = [
    'ACTIONS', 'ARCHIVE_SUFFIXES', 'BINARY_ONLY', 'FORBIDDEN_CHARACTERS', 'FREEZE_FILE', 'HAS_PACKAGING', 'MANIFEST_FILE',
    'PACKAGING_IMPORT_ERROR', 'SNAPSHOT_ENTRIES', 'WHEELS_DIR', 'Change', 'Pip', 'Plan', 'PyDepsError', 'RollbackResult', 'Runner',
    'Snapshot', 'Sources', 'apply', 'canonical_name', 'compare_versions', 'direct_urls', 'freeze_differences', 'load_snapshot', 'make_plan',
    'parse_freeze', 'parse_freeze_lenient', 'parse_report', 'parse_version', 'require_packaging', 'rollback', 'subprocess_runner',
    'take_snapshot', 'validate_source', 'validate_spec',
]
