# Copyright (c) Dihya ops maintainers
# GNU General Public License v3.0+ (see LICENSES/GPL-3.0-or-later.txt or https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later

# This module utility is PRIVATE to the collection. It can change at any time.

"""Python dependency engine: plan, snapshot, apply and roll back the packages of a virtual environment.

The engine knows nothing about Ansible. Every pip call goes through the virtual environment's own
interpreter (``<venv>/bin/python -m pip``) as an argument vector, never through a shell, and every
package specification is validated first (:func:`validate_spec`).

* :func:`make_plan` asks ``pip install --dry-run --report`` what an install would do and compares
  the JSON report with the installed versions: exactly the packages that would change.
* :func:`take_snapshot` records ``pip freeze`` and a wheel of every frozen version in a snapshot
  folder, from local sources only, so that :func:`rollback` can restore the set with no index.
* :func:`apply` installs the exact versions of a plan (``--no-deps``: the plan already resolved them)
  and checks that the environment then holds them.
* :func:`rollback` reinstalls, offline from the snapshot, every package whose version differs,
  removes the packages the snapshot did not have, and checks that ``pip freeze`` equals the snapshot.

Versions are compared with the ``packaging`` library (PEP 440). The module runs under the managed
host's Ansible interpreter, not under the virtual environment's, so pip's vendored copy
(``pip._vendor.packaging``) is not importable from here, and it is a private part of pip that may be
removed or changed at any release; ``packaging`` is the public, maintained library and is imported
as an optional dependency (see :data:`HAS_PACKAGING`).
"""

from __future__ import annotations

import dataclasses
import datetime
import json
import os
import re
import shutil
import stat
import subprocess
import tempfile
import traceback
import typing as t
import urllib.parse

from ansible_collections.dihya.ops.plugins.module_utils._safe_write import UnsafeDestination, describe, lstat_at, open_dir, write_bytes

try:
    from packaging.requirements import InvalidRequirement, Requirement
    from packaging.utils import InvalidWheelFilename, parse_wheel_filename
    from packaging.version import InvalidVersion, Version
except ImportError:
    HAS_PACKAGING = False
    PACKAGING_IMPORT_ERROR: str | None = traceback.format_exc()
else:
    HAS_PACKAGING = True
    PACKAGING_IMPORT_ERROR = None


ACTIONS = ('snapshot', 'plan', 'apply', 'rollback')
FREEZE_FILE = 'freeze.txt'
MANIFEST_FILE = 'snapshot.json'
WHEELS_DIR = 'wheels'
# Characters a package specification never needs; refusing them keeps specs from smuggling
# environment markers, options or shell syntax into anything that reads them later.
FORBIDDEN_CHARACTERS = frozenset(';|&$`\'"\\\n\r\t{}()#%')
_NAME_CANON = re.compile(r'[-_.]+')
_PIN = re.compile(r'^([A-Za-z0-9][A-Za-z0-9._-]*)==([^=\s;]+)$')
# pip reads an argument ending like this as a local archive file (relative to its working directory)
# when such a file exists, and builds it: names and versions never end like this.
ARCHIVE_SUFFIXES = ('.whl', '.zip', '.tar', '.tar.gz', '.tgz', '.tar.bz2', '.tbz', '.tbz2', '.tar.xz', '.txz', '.tar.lz', '.tlz',
                    '.tar.lzma', '.tar.zst', '.egg', '.exe', '.msi', '.pybundle')
# Every pip command that can fetch a distribution gets this: wheels only, so nothing is ever built (a
# source distribution's build backend is arbitrary code), in a plan as in an install or a snapshot.
BINARY_ONLY = ('--only-binary', ':all:')
_FETCHING_COMMANDS = frozenset(('install', 'wheel', 'download'))
# Environment variables that would change where pip looks or what it may build behind the argument vector's back.
_DROPPED_ENVIRONMENT = frozenset(('PIP_NO_BINARY', 'PIP_ONLY_BINARY', 'PIP_PREFER_BINARY', 'PIP_REQUIREMENT', 'PIP_EDITABLE',
                                  'PIP_CONSTRAINT', 'PIP_SRC', 'PIP_NO_BUILD_ISOLATION', 'PIP_USE_PEP517'))

Runner = t.Callable[[t.Sequence[str], float], 'tuple[int, str, str]']


class PyDepsError(Exception):
    """Bad input, or a pip command that failed; the message is meant for the user."""


def canonical_name(name: str) -> str:
    """PEP 503 normalised name (``Flask_Login`` -> ``flask-login``)."""
    return _NAME_CANON.sub('-', name).lower()


def require_packaging() -> None:
    if not HAS_PACKAGING:
        raise PyDepsError('the Python library "packaging" is required on the managed host')


def parse_version(value: str) -> t.Any:
    """A :class:`packaging.version.Version`, or ``None`` when ``value`` is not a PEP 440 version."""
    require_packaging()
    try:
        return Version(value)
    except InvalidVersion:
        return None


def compare_versions(old: str, new: str) -> str:
    """``upgrade``, ``downgrade`` or ``reinstall``; ``change`` when either side is not PEP 440."""
    old_v, new_v = parse_version(old), parse_version(new)
    if old_v is None or new_v is None:
        return 'reinstall' if old == new else 'change'
    if new_v > old_v:
        return 'upgrade'
    if new_v < old_v:
        return 'downgrade'
    return 'reinstall'


def validate_spec(spec: t.Any, allow_urls: bool = False) -> str:
    """Check one package specification and return it in its canonical PEP 508 form, as pip gets it.

    Accepted: a distribution name, optional extras, and version specifiers with PEP 440 versions
    (``flask``, ``Flask[async]>=3.1,<4``, ``dihya-demo-ext==1.1.*``). Refused: anything that is not a
    string, options (``-r``, ``-e``, ``--index-url``), shell metacharacters and whitespace inside a
    name, environment markers, local paths, anything that ends like an archive or wheel file name
    (``evilpkg-1.0.tar.gz``, which pip would read as a file), arbitrary equality (``===``) and, unless
    ``allow_urls``, direct references (``name @ URL``). With ``allow_urls``, only ``https://`` or
    ``http://`` URLs of wheels are accepted: a source archive would have to be built.
    """
    require_packaging()
    if not isinstance(spec, str) or not spec.strip():
        raise PyDepsError(f'package specification {spec!r} is not a non-empty string')
    text = spec.strip()
    bad = sorted(set(text) & FORBIDDEN_CHARACTERS)
    if bad:
        raise PyDepsError(f'package specification {text!r} holds forbidden characters {"".join(bad)!r}')
    if text.startswith('-'):
        raise PyDepsError(f'package specification {text!r} looks like a pip option; options are not accepted')
    if '://' in text.split('@', 1)[0] or text.lower().startswith(('git+', 'hg+', 'svn+', 'bzr+', 'file:')):
        raise PyDepsError(f'package specification {text!r} is a URL; use "name @ URL" with allow_urls, or better a name and version')
    if text.startswith(('.', '/', '~')) or '\\' in text or ('/' in text and '@' not in text):
        raise PyDepsError(f'package specification {text!r} looks like a path; only package names and versions are accepted')
    if '@' not in text and text.lower().endswith(ARCHIVE_SUFFIXES):
        raise PyDepsError(f'package specification {text!r} looks like an archive or wheel file name; '
                          'give the package name and version (name==1.0) and the folder in find_links')
    try:
        requirement = Requirement(text)
    except InvalidRequirement as exc:
        raise PyDepsError(f'package specification {text!r} is not a valid PEP 508 requirement: {exc}') from None
    if requirement.marker is not None:
        raise PyDepsError(f'package specification {text!r} has an environment marker; markers are not accepted')
    for specifier in requirement.specifier:
        if specifier.operator == '===':
            raise PyDepsError(f'package specification {text!r} uses arbitrary equality (===); use == with a PEP 440 version')
        version = specifier.version[:-2] if specifier.version.endswith('.*') else specifier.version
        if parse_version(version) is None:
            raise PyDepsError(f'package specification {text!r} has {specifier.version!r}, which is not a PEP 440 version')
    if requirement.url:
        if not allow_urls:
            raise PyDepsError(f'package specification {text!r} is a URL; set allow_urls to install from URLs')
        url = urllib.parse.urlsplit(requirement.url)
        if url.scheme not in ('https', 'http') or not url.netloc or not url.path.lower().endswith('.whl'):
            raise PyDepsError(f'package specification {text!r}: only http:// or https:// URLs of wheels (.whl) are accepted; '
                              'nothing is ever built from source')
    canonical = str(requirement)
    if canonical.lower().endswith(ARCHIVE_SUFFIXES) and not requirement.url:  # pragma: no cover - refused above
        raise PyDepsError(f'package specification {text!r} looks like an archive or wheel file name')
    return canonical


def validate_source(value: t.Any, what: str) -> str:
    """An index URL or find-links entry: an absolute local path, or a file, http or https URL."""
    if not isinstance(value, str) or not value or value != value.strip() or any(char in value for char in '\n\r\t '):
        raise PyDepsError(f'{what} {value!r} is not a valid absolute path or URL')
    if value.startswith(('http://', 'https://', 'file://')) or (value.startswith('/') and '\x00' not in value):
        return value
    raise PyDepsError(f'{what} {value!r} must be an absolute path or a file://, http:// or https:// URL')


@dataclasses.dataclass(frozen=True)
class Sources:
    """Where pip finds packages: an index, find-links folders or pages, or no index at all."""

    index_url: str | None = None
    find_links: tuple[str, ...] = ()
    no_index: bool = False

    def __post_init__(self) -> None:
        if self.index_url is not None:
            validate_source(self.index_url, 'index URL')
        for item in self.find_links:
            validate_source(item, 'find-links entry')
        if self.no_index and not self.find_links:
            raise PyDepsError('no_index needs at least one find_links entry to install from')

    def argv(self) -> list[str]:
        argv: list[str] = []
        if self.no_index:
            argv.append('--no-index')
        elif self.index_url:
            argv += ['--index-url', self.index_url]
        for item in self.find_links:
            argv += ['--find-links', item]
        return argv


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


def parse_freeze(lines: t.Iterable[str]) -> dict[str, tuple[str, str]]:
    """``name==version`` lines -> canonical name -> (name, version). Other forms cannot be snapshotted."""
    pins: dict[str, tuple[str, str]] = {}
    for line in lines:
        match = _PIN.match(line.strip())
        if not match:
            raise PyDepsError(
                f'{line.strip()!r} is not a plain name==version pin (editable or direct-URL install): '
                'it cannot be snapshotted for an offline rollback'
            )
        pins[canonical_name(match.group(1))] = (match.group(1), match.group(2))
    return pins


@dataclasses.dataclass(frozen=True)
class Change:
    """One package an install changes."""

    name: str
    current: str | None
    new: str
    action: str
    requested: bool

    @property
    def pin(self) -> str:
        return f'{self.name}=={self.new}'

    def as_dict(self) -> dict[str, t.Any]:
        return {'name': self.name, 'current': self.current, 'new': self.new, 'action': self.action,
                'requested': self.requested, 'pin': self.pin, 'summary': self.summary}

    @property
    def summary(self) -> str:
        return f'{self.name} {self.current} -> {self.new}' if self.current else f'{self.name} (new) -> {self.new}'


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


def parse_report(report: t.Any, before: dict[str, tuple[str, str]]) -> list[Change]:
    """Changes from a ``pip install --report`` document, against the installed versions.

    Entries that would reinstall the version already there are not changes.
    """
    if not isinstance(report, dict) or not isinstance(report.get('install'), list):
        raise PyDepsError('the pip installation report has no "install" list')
    changes: list[Change] = []
    for entry in report['install']:
        metadata = entry.get('metadata') if isinstance(entry, dict) else None
        if not isinstance(metadata, dict) or not isinstance(metadata.get('name'), str) or not isinstance(metadata.get('version'), str):
            raise PyDepsError('the pip installation report has an entry without metadata name and version')
        name, new = metadata['name'], metadata['version']
        current = before.get(canonical_name(name))
        if current is None:
            action = 'install'
        else:
            action = compare_versions(current[1], new)
            if action == 'reinstall':
                continue
        changes.append(Change(name=name, current=current[1] if current else None, new=new, action=action,
                              requested=bool(entry.get('requested', False))))
    return sorted(changes, key=lambda change: canonical_name(change.name))


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
    return Plan(specs=checked, changes=parse_report(report, before), before=before)


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


def _wheel_index(folder: str) -> dict[tuple[str, str], str]:
    """(canonical name, normalised version) -> wheel file name, for the wheels in ``folder``."""
    found: dict[tuple[str, str], str] = {}
    for entry in sorted(os.listdir(folder)):
        if not entry.endswith('.whl'):
            continue
        try:
            name, version, dummy_build, dummy_tags = parse_wheel_filename(entry)
        except InvalidWheelFilename:
            continue
        found[(canonical_name(str(name)), str(version))] = entry
    return found


def _normal_version(value: str) -> str:
    parsed = parse_version(value)
    return str(parsed) if parsed is not None else value


def _missing_wheels(pins: dict[str, tuple[str, str]], folder: str) -> list[str]:
    index = _wheel_index(folder) if os.path.isdir(folder) else {}
    return [f'{name}=={version}' for key, (name, version) in sorted(pins.items())
            if (key, _normal_version(version)) not in index]


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
    created = datetime.datetime.now(datetime.timezone.utc).strftime('%Y-%m-%dT%H:%M:%SZ')
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
        missing = _missing_wheels(pins, wheels_dir)
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
    missing = _missing_wheels(pins, os.path.join(path, WHEELS_DIR))
    if missing:
        raise PyDepsError(f'snapshot {path} lacks the wheels of {", ".join(missing)}')
    return Snapshot(path=path, freeze=freeze, pins=pins, wheels=list(manifest.get('wheels', [])),
                    created=str(manifest.get('created', '')))


def apply(pip: Pip, plan: Plan, sources: Sources, check_mode: bool = False) -> list[Change]:
    """Install exactly the versions of ``plan`` and check the environment holds them."""
    if not plan.changes or check_mode:
        return plan.changes
    pins = [validate_spec(pin) for pin in plan.pins]
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


def freeze_differences(expected: dict[str, tuple[str, str]], actual: dict[str, tuple[str, str]]) -> list[str]:
    """Human-readable differences between two frozen sets."""
    differences = []
    for key in sorted(set(expected) | set(actual)):
        want, have = expected.get(key), actual.get(key)
        if want is None and have is not None:
            differences.append(f'{have[0]}=={have[1]} is extra')
        elif have is None and want is not None:
            differences.append(f'{want[0]}=={want[1]} is missing')
        elif want is not None and have is not None and want[1] != have[1]:
            differences.append(f'{want[0]} is {have[1]} instead of {want[1]}')
    return differences


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


def parse_freeze_lenient(lines: t.Iterable[str]) -> dict[str, tuple[str, str]]:
    """Like :func:`parse_freeze`, but a line that is not a pin is kept under its own text (version ``?``)."""
    pins: dict[str, tuple[str, str]] = {}
    for line in lines:
        match = _PIN.match(line.strip())
        if match:
            pins[canonical_name(match.group(1))] = (match.group(1), match.group(2))
        else:
            text = line.strip()
            text = text[3:].strip() if text.startswith('-e ') else text
            name = re.split(r'[\s@=<>!~\[]', text, maxsplit=1)[0] or text
            pins[canonical_name(name)] = (name, '?')
    return pins
