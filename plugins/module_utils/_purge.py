# Copyright (c) Dihya ops maintainers
# GNU General Public License v3.0+ (see LICENSES/GPL-3.0-or-later.txt or https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later

# This module utility is PRIVATE to the collection. It can change at any time.

"""Purge engine: remove old files below a set of directories, safely.

The engine knows nothing about Ansible. A caller builds a :class:`PurgeSpec`, hands every top-level
path to :meth:`Purger.prepare` (which validates all of them before anything is removed) and then runs
:meth:`Purger.run`.

Safety rules:

* A top-level path must be absolute, must not be (by name or by identity, ``st_dev``/``st_ino``) one of
  the critical system directories (:data:`CRITICAL_PATHS`, :data:`CRITICAL_PATTERNS`), must not be a
  symbolic link, must lie inside one of the allowed roots once every symbolic link and ``..`` is
  resolved, and must be neither one of the protected paths nor an ancestor of one (unless forced).
* Every allowed root is opened once, component by component from ``/`` with
  ``O_NOFOLLOW | O_DIRECTORY``, and checked to be the directory that was validated. Every top-level
  path is opened the same way from the descriptor of its allowed root, never by its name; the
  identity of each component is recorded when the paths are validated and checked again when the
  path is purged, so a component swapped for a symbolic link or another directory in between (for
  instance while an earlier path is being walked) is reported and nothing below it is touched.
* The walk goes through directory file descriptors only: every entry is examined, removed or
  opened relative to the descriptor of its parent, and directories are opened with
  ``O_NOFOLLOW``. A directory swapped for a symbolic link during the walk therefore cannot
  redirect a removal outside the tree: opening it fails and it is reported as an error.
* Symbolic links are never followed, and the walk never crosses into another file system or mount
  (bind mounts included, where the kernel reports mount roots).
* Overlapping top-level paths (one inside another, or the same one twice) are walked once: every
  directory is visited once. The top-level directories themselves are never removed.
* Check mode walks the same tree and predicts the removals the kernel would refuse (read-only
  mount, no write permission on the directory, sticky directory, immutable or append-only
  attributes), so it reports what a real run would remove, and the same errors.
* Nothing is collected in memory beyond counters, a bounded sample of removed paths and a
  bounded list of errors (plus one entry per directory when top-level paths overlap).
"""

from __future__ import annotations

import ctypes
import dataclasses
import errno
import fnmatch
import glob
import os
import re
import stat
import time
import typing as t


AGE_STAMPS = ('mtime', 'atime')
FILE_TYPES = ('file', 'any')

DEFAULT_SAMPLE_SIZE = 20
# At most this many errors are reported in detail; all of them are counted.
MAX_ERRORS = 50

# Paths that are never purged themselves, whatever the allowed roots say. They are compared by name and, for those
# that exist, by identity (st_dev, st_ino), so /bin and /usr/bin are both caught where one is a link to the other.
CRITICAL_PATHS = frozenset((
    '/', '/bin', '/boot', '/dev', '/etc', '/home', '/lib', '/lib32', '/lib64', '/libx32', '/media', '/mnt', '/opt',
    '/proc', '/root', '/run', '/sbin', '/srv', '/sys', '/usr', '/usr/bin', '/usr/games', '/usr/include', '/usr/lib',
    '/usr/lib32', '/usr/lib64', '/usr/libexec', '/usr/libx32', '/usr/local', '/usr/local/bin', '/usr/local/etc',
    '/usr/local/games', '/usr/local/include', '/usr/local/lib', '/usr/local/man', '/usr/local/sbin', '/usr/local/share',
    '/usr/local/src', '/usr/sbin', '/usr/share', '/usr/src', '/var', '/var/backups', '/var/lib', '/var/local',
    '/var/log', '/var/mail', '/var/opt', '/var/spool',
))
# Patterns matched against whole paths with as many components as the pattern: every /lib* directory, every
# directory directly in /usr and /usr/local (merged-/usr systems included).
CRITICAL_PATTERNS = ('/lib*', '/usr/*', '/usr/local/*')

AGE_UNITS = {'s': 1, 'm': 60, 'h': 3600, 'd': 86400, 'w': 604800}
_AGE_PART = re.compile(r'(\d+)([smhdw])')
_AGE_FULL = re.compile(r'(?:\d+[smhdw])+')

_DIR_FLAGS = os.O_RDONLY | os.O_DIRECTORY | os.O_NOFOLLOW | getattr(os, 'O_CLOEXEC', 0)


class PurgeError(ValueError):
    """Unusable input: a bad option or a path the engine refuses to purge."""


def parse_age(value: t.Any) -> int:
    """Turn ``7d``, ``12h``, ``30m``, ``90s``, ``1d12h``, ``3600`` or an int into seconds."""
    if isinstance(value, bool):
        raise PurgeError(f'age must be a number of seconds or a duration such as 7d, 12h, 30m or 90s (got {value!r})')
    if isinstance(value, int):
        if value < 0:
            raise PurgeError(f'age must not be negative (got {value})')
        return value
    text = str(value).strip().lower() if isinstance(value, str) else ''
    if text.isdigit():
        return int(text)
    if not _AGE_FULL.fullmatch(text):
        raise PurgeError(
            f'invalid age {value!r}: use a number of seconds or a duration such as 7d, 12h, 30m, 90s or 1d12h (units: s, m, h, d, w)'
        )
    return sum(int(number) * AGE_UNITS[unit] for number, unit in _AGE_PART.findall(text))


def is_critical(path: str) -> bool:
    """Whether ``path`` (normalised and absolute) is, by name, a system directory that is never purged."""
    if path in CRITICAL_PATHS:
        return True
    return any(fnmatch.fnmatchcase(path, pattern) and path.count('/') == pattern.count('/') for pattern in CRITICAL_PATTERNS)


def critical_identities() -> dict[tuple[int, int], str]:
    """The identity (st_dev, st_ino) of every critical directory that exists here, symbolic links followed."""
    names = set(CRITICAL_PATHS)
    for pattern in CRITICAL_PATTERNS:
        names.update(glob.glob(pattern))
    identities: dict[tuple[int, int], str] = {}
    for name in sorted(names, key=lambda name: (name.count('/'), name), reverse=True):
        try:
            info = os.stat(name)
        except OSError:
            continue
        if stat.S_ISDIR(info.st_mode):
            # Where two names are the same directory (/bin and /usr/bin), keep the shorter, more familiar one.
            identities[(info.st_dev, info.st_ino)] = name
    return identities


def _normalise(path: str) -> str:
    # normpath() keeps a leading '//' (POSIX allows it a special meaning); Linux does not use it.
    normalised = os.path.normpath(path)
    return '/' + normalised.lstrip('/') if normalised.startswith('/') else normalised


def _inside(path: str, root: str) -> bool:
    return path == root or path.startswith(root.rstrip('/') + '/')


def resolve_path(path: str, allowed_roots: t.Sequence[str]) -> str:
    """Validate a top-level path and return it with every symbolic link resolved.

    Raise :class:`PurgeError` with a message for humans if the path must not be purged.
    This checks names only; :meth:`Purger.prepare` then opens the path from its allowed root and checks identities.
    A path that does not exist is returned as resolved; :meth:`Purger.run` reports it as missing.
    """
    if not allowed_roots:
        raise PurgeError('allowed_roots must list at least one directory')
    if not isinstance(path, str) or not os.path.isabs(path):
        raise PurgeError(f'path {path!r} must be absolute')
    normalised = _normalise(path)
    resolved = os.path.realpath(normalised)
    for candidate in (normalised, resolved):
        if is_critical(candidate):
            raise PurgeError(f'refusing to purge {path}: {candidate} is a critical system directory')
    if os.path.islink(normalised):
        raise PurgeError(f'refusing to purge {path}: it is a symbolic link (links are never followed)')
    roots = []
    for root in allowed_roots:
        if not isinstance(root, str) or not os.path.isabs(root):
            raise PurgeError(f'allowed root {root!r} must be absolute')
        roots.append(os.path.realpath(_normalise(root)))
    if not any(_inside(resolved, root) for root in roots):
        raise PurgeError(f"refusing to purge {path}: it resolves to {resolved}, which is not inside any of allowed_roots ({', '.join(roots)})")
    return resolved


@dataclasses.dataclass(frozen=True)
class PurgeSpec:
    """What to remove below each top-level path."""

    age: int
    age_stamp: str = 'mtime'
    include: tuple[str, ...] = ('*',)
    exclude: tuple[str, ...] = ()
    min_size: int = 0
    file_type: str = 'file'
    max_depth: int | None = None
    remove_empty_dirs: bool = False
    sample_size: int = DEFAULT_SAMPLE_SIZE
    check_mode: bool = False
    now: float | None = None

    def validate(self) -> list[str]:
        """Return one message per invalid setting (empty when all are valid)."""
        errors = []
        if isinstance(self.age, bool) or not isinstance(self.age, int) or self.age < 0:
            errors.append(f'age must be 0 or more seconds (got {self.age!r})')
        if self.age_stamp not in AGE_STAMPS:
            errors.append(f"age_stamp must be one of {', '.join(AGE_STAMPS)} (got {self.age_stamp!r})")
        if self.file_type not in FILE_TYPES:
            errors.append(f"file_type must be one of {', '.join(FILE_TYPES)} (got {self.file_type!r})")
        if not self.include:
            errors.append('include must list at least one pattern')
        if self.min_size < 0:
            errors.append(f'min_size must be 0 or more (got {self.min_size})')
        if self.max_depth is not None and self.max_depth < 0:
            errors.append(f'max_depth must be 0 or more (got {self.max_depth})')
        if self.sample_size < 0:
            errors.append(f'sample_size must be 0 or more (got {self.sample_size})')
        return errors


@dataclasses.dataclass
class PathSummary:
    """What happened below one top-level path."""

    path: str
    exists: bool = True
    files_removed: int = 0
    bytes_freed: int = 0
    dirs_removed: int = 0
    skipped_symlinks: int = 0
    other_filesystems: int = 0
    errors: int = 0

    def to_dict(self) -> dict[str, t.Any]:
        """Plain data, ready to be serialised."""
        return dataclasses.asdict(self)


def display(path: str) -> str:
    """A path as text that survives JSON: undecodable bytes become U+FFFD."""
    return os.fsencode(path).decode('utf-8', errors='replace')


def describe_error(exc: OSError) -> str:
    """A short description of a file system error, without the file name."""
    text = exc.strerror or type(exc).__name__
    return text[:1].lower() + text[1:]


def _compile(patterns: t.Sequence[str]) -> t.Callable[[str], t.Any]:
    """One matcher for a list of shell patterns (case-sensitive, like :func:`fnmatch.fnmatchcase`)."""
    return re.compile('|'.join(f'(?:{fnmatch.translate(pattern)})' for pattern in patterns)).match


# -- kernel facts ------------------------------------------------------------

_AT_SYMLINK_NOFOLLOW = 0x100
_AT_STATX_DONT_SYNC = 0x4000
_AT_EMPTY_PATH = 0x1000
STATX_ATTR_IMMUTABLE = 0x10
STATX_ATTR_APPEND = 0x20
STATX_ATTR_MOUNT_ROOT = 0x2000
# An immutable or append-only entry cannot be removed, whoever asks.
_UNREMOVABLE = STATX_ATTR_IMMUTABLE | STATX_ATTR_APPEND
_STATX_BUFFER_SIZE = 256
_STATX_ATTRIBUTES_OFFSET = 8
_STATX_ATTRIBUTES_MASK_OFFSET = 56
_CAP_FOWNER = 3


def _load_statx() -> t.Any:
    try:
        function = ctypes.CDLL(None, use_errno=True).statx
    except (AttributeError, OSError):
        return None
    function.argtypes = [ctypes.c_int, ctypes.c_char_p, ctypes.c_int, ctypes.c_uint, ctypes.c_void_p]
    function.restype = ctypes.c_int
    return function


_STATX = _load_statx()


class AttributeReader:
    """Read statx(2) attributes (immutable, append-only, mount root...) of entries, links not followed.

    Each reader owns its buffer (one per :class:`Purger`, which is not shared between threads): check mode
    calls it once per file it would remove, so it allocates nothing per call.
    """

    def __init__(self) -> None:
        self._buffer = ctypes.create_string_buffer(_STATX_BUFFER_SIZE)
        self._attributes = ctypes.c_uint64.from_buffer(self._buffer, _STATX_ATTRIBUTES_OFFSET)
        self._supported = ctypes.c_uint64.from_buffer(self._buffer, _STATX_ATTRIBUTES_MASK_OFFSET)

    def __call__(self, dir_fd: int, name: str) -> int:
        """The attributes of ``name`` in ``dir_fd`` (``''``: the directory itself) that the file system reports.

        ``0`` where the C library has no statx or the call fails.
        """
        if _STATX is None:
            return 0
        flags = _AT_SYMLINK_NOFOLLOW | _AT_STATX_DONT_SYNC | (0 if name else _AT_EMPTY_PATH)
        if _STATX(dir_fd, os.fsencode(name), flags, 0, self._buffer) != 0:
            return 0
        return self._attributes.value & self._supported.value


def entry_attributes(dir_fd: int, name: str) -> int:
    """The statx(2) attributes of ``name`` in ``dir_fd`` (see :class:`AttributeReader`)."""
    return AttributeReader()(dir_fd, name)


def _has_fowner() -> bool:
    """Whether this process may remove other users' files from sticky directories (CAP_FOWNER)."""
    try:
        with open('/proc/self/status', 'rb') as handle:
            for line in handle:
                if line.startswith(b'CapEff:'):
                    return bool(int(line.split()[1], 16) >> _CAP_FOWNER & 1)
    except (OSError, ValueError, IndexError):
        pass
    return os.geteuid() == 0


def _strerror(code: int) -> str:
    return describe_error(OSError(code, os.strerror(code)))


_EPERM = _strerror(errno.EPERM)
_EACCES = _strerror(errno.EACCES)
_EROFS = _strerror(errno.EROFS)


# -- top-level paths -------------------------------------------------------------

Identity = t.Tuple[int, int]


def _identity(info: os.stat_result) -> Identity:
    return (info.st_dev, info.st_ino)


def _components(path: str) -> tuple[str, ...]:
    return tuple(part for part in path.split('/') if part)


def _join(parent: str, name: str) -> str:
    return parent.rstrip('/') + '/' + name


class _ChainError(Exception):
    """A component of a path could not be opened as the directory it must be."""

    def __init__(self, kind: str, component: str, message: str) -> None:
        super().__init__(message)
        self.kind = kind  # missing, symlink, not-a-directory, replaced or error
        self.component = component
        self.message = message


def _close_all(fds: t.Iterable[int]) -> None:
    for fd in fds:
        os.close(fd)


def _open_chain(base_fd: int, base_path: str, parts: t.Sequence[str], expected: t.Sequence[Identity] | None = None) -> list[int]:
    """Open ``parts`` one directory at a time below ``base_fd`` with ``O_NOFOLLOW | O_DIRECTORY``.

    Return the descriptors of every component, in order (the caller closes them). With ``expected``, each
    component must still be the directory it was (same st_dev and st_ino). Raise :class:`_ChainError`,
    naming the first component that is missing, a symbolic link, not a directory or a different directory.
    """
    fds: list[int] = []
    current = base_fd
    path = base_path
    try:
        for index, name in enumerate(parts):
            path = _join(path, name)
            try:
                fd = os.open(name, _DIR_FLAGS, dir_fd=current)
            except FileNotFoundError:
                raise _ChainError('missing', path, f'{display(path)} does not exist') from None
            except (NotADirectoryError, OSError) as exc:
                if not isinstance(exc, NotADirectoryError) and exc.errno != errno.ELOOP:
                    raise _ChainError('error', path, f'cannot open {display(path)}: {describe_error(exc)}') from None
                try:
                    is_link = stat.S_ISLNK(os.lstat(name, dir_fd=current).st_mode)
                except OSError:
                    is_link = False
                if is_link:
                    raise _ChainError('symlink', path, f'{display(path)} is a symbolic link') from None
                raise _ChainError('not-a-directory', path, f'{display(path)} is not a directory') from None
            fds.append(fd)
            current = fd
            if expected is not None and _identity(os.fstat(fd)) != expected[index]:
                raise _ChainError('replaced', path, f'{display(path)} is not the directory that was checked')
        return fds
    except BaseException:
        _close_all(fds)
        raise


@dataclasses.dataclass
class _Root:
    """An allowed root, open since the paths were validated."""

    path: str
    fd: int
    identity: Identity


@dataclasses.dataclass
class Target:
    """A validated top-level path: where it is below its allowed root and what each component was."""

    path: str
    resolved: str
    root: str
    parts: tuple[str, ...]
    # Identity of each component below the root, in order; empty when the path does not exist.
    chain: tuple[Identity, ...] = ()
    exists: bool = True


def _protected_identities(protected_paths: t.Sequence[str]) -> tuple[list[tuple[str, str]], dict[Identity, str], dict[Identity, str]]:
    """For each protected path: its resolved name; identities of the paths themselves; identities of their ancestors."""
    names: list[tuple[str, str]] = []
    themselves: dict[Identity, str] = {}
    ancestors: dict[Identity, str] = {}
    for path in protected_paths:
        if not isinstance(path, str) or not os.path.isabs(path):
            raise PurgeError(f'protected path {path!r} must be absolute')
        resolved = os.path.realpath(_normalise(path))
        names.append((path, resolved))
        try:
            themselves.setdefault(_identity(os.stat(resolved)), path)
        except OSError:
            pass
        parent = resolved
        while parent != '/':
            parent = os.path.dirname(parent)
            try:
                ancestors.setdefault(_identity(os.stat(parent)), path)
            except OSError:
                continue
    return names, themselves, ancestors


# -- the purge ------------------------------------------------------------------

_UNSEEN = object()


class Purger:
    """Validate top-level paths, then walk them and remove (or, in check mode, count) what :class:`PurgeSpec` selects.

    ``before_descend`` is called with the parent directory descriptor, the entry name and its
    display path right before a subdirectory is opened; ``before_path`` is called with each
    :class:`Target` right before it is opened again to be purged. Both exist so the swap races can be tested.
    """

    def __init__(
        self,
        spec: PurgeSpec,
        before_descend: t.Callable[[int, str, str], None] | None = None,
        before_path: t.Callable[[Target], None] | None = None,
    ) -> None:
        errors = spec.validate()
        if errors:
            raise PurgeError('; '.join(errors))
        self.spec = spec
        self.before_descend = before_descend
        self.before_path = before_path
        self.now = spec.now if spec.now is not None else time.time()
        # A file is old enough when its stamp is at or before this instant.
        self._oldest = self.now - spec.age
        # Each pattern list becomes one compiled regular expression; ``*`` alone matches every name.
        self._include_match = None if '*' in spec.include else _compile(spec.include)
        self._exclude_match = _compile(spec.exclude) if spec.exclude else None
        self.files_removed = 0
        self.bytes_freed = 0
        self.dirs_removed = 0
        self.skipped_symlinks = 0
        self.error_count = 0
        self.sample: list[str] = []
        self.errors: list[dict[str, str]] = []
        self.summaries: list[PathSummary] = []
        # Top-level paths that could not be purged because a component was swapped after validation.
        self.swapped: list[str] = []
        self.targets: list[Target] = []
        self._roots: dict[str, _Root] = {}
        # Directories never entered: critical ones and (unless forced) protected ones, by identity.
        self._guarded: dict[Identity, str] = {}
        # Top-level directories, never removed.
        self._keep: set[Identity] = set()
        # Directories walked so far and the depth left below each (None: unlimited); only when paths overlap.
        self._visited: dict[Identity, int | None] | None = None
        self._fowner = _has_fowner()
        self._attributes = AttributeReader()
        self._euid = os.geteuid()

    def __enter__(self) -> Purger:
        return self

    def __exit__(self, *exc_info: t.Any) -> None:
        self.close()

    def close(self) -> None:
        """Close the descriptors of the allowed roots."""
        roots, self._roots = self._roots, {}
        _close_all(root.fd for root in roots.values())

    @property
    def changed(self) -> bool:
        """Whether something was removed (or would be, in check mode)."""
        return bool(self.files_removed or self.dirs_removed)

    def result(self) -> dict[str, t.Any]:
        """Totals over every path purged so far."""
        return dict(
            changed=self.changed,
            files_removed=self.files_removed,
            bytes_freed=self.bytes_freed,
            dirs_removed=self.dirs_removed,
            skipped_symlinks=self.skipped_symlinks,
            error_count=self.error_count,
            sample=list(self.sample),
            errors=list(self.errors),
            paths=[summary.to_dict() for summary in self.summaries],
        )

    # -- validation ----------------------------------------------------------

    def prepare(
        self,
        paths: t.Sequence[str],
        allowed_roots: t.Sequence[str],
        protected_paths: t.Sequence[str] = (),
        force: bool = False,
    ) -> list[Target]:
        """Validate every path and open its chain of directories; raise :class:`PurgeError` if any is refused.

        Nothing is removed here, so a refusal leaves every path untouched. The targets are also kept for :meth:`run`.
        """
        if not allowed_roots:
            raise PurgeError('allowed_roots must list at least one directory')
        roots = []
        for root in allowed_roots:
            if not isinstance(root, str) or not os.path.isabs(root):
                raise PurgeError(f'allowed root {root!r} must be absolute')
            roots.append(os.path.realpath(_normalise(root)))
        protected_names, protected_self, protected_ancestors = _protected_identities(protected_paths)
        critical = critical_identities()
        self._guarded.update(critical)
        if not force:
            for identity, name in protected_self.items():
                self._guarded.setdefault(identity, name)
        problems: list[str] = []
        targets: list[Target] = []
        for path in paths:
            try:
                targets.append(self._validate(path, roots, critical, protected_names, protected_self, protected_ancestors, force))
            except PurgeError as exc:
                problems.append(str(exc))
        if problems:
            self.close()
            raise PurgeError('; '.join(problems))
        found = [target for target in targets if target.exists]
        identities = [target.chain[-1] if target.chain else self._roots[target.root].identity for target in found]
        self._keep.update(identities)
        # Overlapping paths (the same directory twice, or one inside another): walk every directory once.
        chains = [set(target.chain) | {self._roots[target.root].identity} for target in found]
        if self._visited is None and any(
            identity in chain for index, identity in enumerate(identities) for other, chain in enumerate(chains) if other != index
        ):
            self._visited = {}
        self.targets.extend(targets)
        return targets

    def _validate(
        self,
        path: str,
        roots: list[str],
        critical: dict[Identity, str],
        protected_names: list[tuple[str, str]],
        protected_self: dict[Identity, str],
        protected_ancestors: dict[Identity, str],
        force: bool,
    ) -> Target:
        resolved = resolve_path(path, roots)
        if not force:
            for name, protected in protected_names:
                if resolved == protected:
                    raise PurgeError(f'refusing to purge {path}: it is the protected path {name} (force overrides this)')
                if _inside(protected, resolved):
                    raise PurgeError(f'refusing to purge {path}: it contains the protected path {name} (force overrides this)')
        root_path = max((root for root in roots if _inside(resolved, root)), key=len)
        parts = _components(resolved[len(root_path):])
        try:
            root = self._open_root(root_path)
        except _ChainError as exc:
            if exc.kind == 'missing':
                return Target(path=path, resolved=resolved, root=root_path, parts=parts, exists=False)
            raise PurgeError(f'refusing to purge {path}: cannot open the allowed root {root_path}: {exc.message}') from None
        try:
            fds = _open_chain(root.fd, root_path, parts)
        except _ChainError as exc:
            if exc.kind == 'missing':
                return Target(path=path, resolved=resolved, root=root_path, parts=parts, exists=False)
            if exc.kind == 'not-a-directory' and exc.component == resolved:
                raise PurgeError(f'refusing to purge {path}: it is not a directory') from None
            raise PurgeError(f'refusing to purge {path}: {exc.message}') from None
        try:
            chain = tuple(_identity(os.fstat(fd)) for fd in fds)
        finally:
            _close_all(fds)
        identity = chain[-1] if chain else root.identity
        if identity in critical:
            raise PurgeError(f'refusing to purge {path}: it is the critical system directory {critical[identity]}')
        if not force:
            if identity in protected_self:
                raise PurgeError(f'refusing to purge {path}: it is the protected path {protected_self[identity]} (force overrides this)')
            if identity in protected_ancestors:
                raise PurgeError(f'refusing to purge {path}: it contains the protected path {protected_ancestors[identity]} (force overrides this)')
        return Target(path=path, resolved=resolved, root=root_path, parts=parts, chain=chain)

    def _open_root(self, root_path: str) -> _Root:
        """Open an allowed root once, from ``/`` one component at a time, and check it is the directory validated."""
        if root_path in self._roots:
            return self._roots[root_path]
        try:
            validated = _identity(os.stat(root_path))
        except FileNotFoundError:
            raise _ChainError('missing', root_path, f'{root_path} does not exist') from None
        except OSError as exc:
            raise _ChainError('error', root_path, f'cannot examine {root_path}: {describe_error(exc)}') from None
        slash = os.open('/', _DIR_FLAGS)
        try:
            fds = [slash] + _open_chain(slash, '/', _components(root_path))
        except BaseException:
            os.close(slash)
            raise
        fd = fds.pop()
        _close_all(fds)
        identity = _identity(os.fstat(fd))
        if identity != validated:
            os.close(fd)
            raise _ChainError('replaced', root_path, f'{root_path} changed while it was being opened')
        root = _Root(path=root_path, fd=fd, identity=identity)
        self._roots[root_path] = root
        return root

    # -- top level -----------------------------------------------------------

    def purge(self, path: str, allowed_roots: t.Sequence[str] | None = None) -> PathSummary:
        """Validate and purge one path (its own allowed root unless given). The path itself is never removed."""
        try:
            targets = self.prepare([path], allowed_roots or [path])
            self.run(targets)
        finally:
            self.close()
        return self.summaries[-1]

    def run(self, targets: t.Sequence[Target] | None = None) -> None:
        """Purge each validated target, in order."""
        for target in self.targets if targets is None else targets:
            if self.before_path is not None:
                self.before_path(target)
            self._purge_target(target)

    def _purge_target(self, target: Target) -> None:
        summary = PathSummary(path=display(target.resolved))
        self.summaries.append(summary)
        if not target.exists:
            summary.exists = False
            return
        root = self._roots[target.root]
        try:
            parent_fd, name, fds = self._reopen(root, target)
        except _ChainError as exc:
            if exc.kind == 'missing':
                summary.exists = False
                return
            message = f'not purged: {exc.message} (it changed after the paths were checked); nothing below it was touched'
            self.swapped.append(f'{display(target.path)}: {exc.message}')
            self._error(exc.component, message, summary)
            return
        try:
            fd = fds[-1]
            info = os.fstat(fd)
            deny = self._denied(parent_fd, name, fd, self._attributes(fd, '')) if self.spec.check_mode else None
            self._enter(fd, target.resolved, 0, info.st_dev, summary, info, deny)
        except OSError as exc:
            self._error(target.resolved, describe_error(exc), summary)
        finally:
            _close_all(fds)

    def _reopen(self, root: _Root, target: Target) -> tuple[int, str, list[int]]:
        """Open the target again from its root's descriptor, checking every component is the one validated.

        Return the descriptor of the target's parent, the target's name in it and the descriptors to close (the
        target's last). The root itself must still be reachable by its name as the same directory.
        """
        slash = os.open('/', _DIR_FLAGS)
        fds = [slash]
        try:
            try:
                fds.extend(_open_chain(slash, '/', _components(root.path)))
            except _ChainError as exc:
                raise _ChainError('replaced' if exc.kind == 'missing' else exc.kind, exc.component,
                                  f'the allowed root {root.path} was replaced ({exc.message})') from None
            if _identity(os.fstat(fds[-1])) != root.identity:
                raise _ChainError('replaced', root.path, f'the allowed root {root.path} was replaced by another directory')
            if not target.parts:
                # The target is the root: keep its parent (as reached now) for check mode's permission checks.
                name = _components(root.path)[-1] if root.path != '/' else ''
                return (fds[-2] if len(fds) > 1 else slash), name, fds
            chain = _open_chain(root.fd, root.path, target.parts, target.chain)
        except BaseException:
            _close_all(fds)
            raise
        _close_all(fds)
        # The root's own descriptor stays open (and is not handed back to be closed).
        return (chain[-2] if len(chain) > 1 else root.fd), target.parts[-1], chain

    # -- walk ----------------------------------------------------------------

    def _enter(self, dir_fd: int, dir_path: str, depth: int, device: int, summary: PathSummary, info: os.stat_result, deny: str | None) -> bool:
        """Walk one directory unless an overlapping path already walked it (as deep); return whether it is (would be) empty."""
        if self._visited is None:
            return self._walk(dir_fd, dir_path, depth, device, summary, info, deny)
        identity = _identity(info)
        budget = None if self.spec.max_depth is None else self.spec.max_depth - depth
        previous = self._visited.get(identity, _UNSEEN)
        if previous is not _UNSEEN and (previous is None or (budget is not None and previous >= budget)):
            return False
        self._visited[identity] = budget
        if previous is _UNSEEN:
            return self._walk(dir_fd, dir_path, depth, device, summary, info, deny)
        # Walked before, less deep: only its subdirectories have more to give; its own entries were dealt with.
        self._walk(dir_fd, dir_path, depth, device, summary, info, deny, revisit=True)
        return False

    def _walk(
        self,
        dir_fd: int,
        dir_path: str,
        depth: int,
        device: int,
        summary: PathSummary,
        dir_info: os.stat_result,
        deny: str | None,
        revisit: bool = False,
    ) -> bool:
        """Purge one directory, open as ``dir_fd``; return whether it is (or would be) empty afterwards.

        Regular files, the bulk of any tree, are handled inline with local names: this loop is the
        engine's hot path. Anything else goes through :meth:`_handle`. In check mode, ``deny`` is the error
        the kernel would give for any removal in this directory (None when removals would be allowed).
        """
        empty = True
        selected_name = self._name_selected
        oldest = self._oldest
        use_atime = self.spec.age_stamp == 'atime'
        min_size = self.spec.min_size
        check_mode = self.spec.check_mode
        is_regular = stat.S_ISREG
        is_dir = stat.S_ISDIR
        read_attributes = self._attributes
        # Check mode: in a sticky directory of another user, only our own entries can be removed (without CAP_FOWNER).
        sticky = check_mode and dir_info.st_mode & stat.S_ISVTX and not self._fowner and dir_info.st_uid != self._euid
        euid = self._euid
        with os.scandir(dir_fd) as entries:
            for entry in entries:
                name = entry.name
                try:
                    # fstatat(2) relative to dir_fd, as scandir was given a descriptor.
                    info = entry.stat(follow_symlinks=False)
                except FileNotFoundError:
                    continue
                except OSError as exc:
                    self._error(_join(dir_path, name), describe_error(exc), summary)
                    empty = False
                    continue
                if revisit and not is_dir(info.st_mode):
                    empty = False
                    continue
                if not is_regular(info.st_mode):
                    if not self._handle(dir_fd, name, _join(dir_path, name), info, depth, device, summary, dir_info, deny):
                        empty = False
                    continue
                if (info.st_atime if use_atime else info.st_mtime) > oldest or info.st_size < min_size or not selected_name(name):
                    empty = False
                    continue
                if check_mode:
                    if deny:
                        refused = deny
                    elif sticky and info.st_uid != euid:
                        refused = _EPERM
                    else:
                        refused = _EPERM if read_attributes(dir_fd, name) & _UNREMOVABLE else None
                    if refused:
                        self._error(_join(dir_path, name), refused, summary)
                        empty = False
                        continue
                else:
                    try:
                        os.unlink(name, dir_fd=dir_fd)
                    except FileNotFoundError:
                        continue
                    except OSError as exc:
                        self._error(_join(dir_path, name), describe_error(exc), summary)
                        empty = False
                        continue
                self._count_file(_join(dir_path, name) if len(self.sample) < self.spec.sample_size else '', info.st_size, summary)
        return empty

    def _handle(
        self,
        dir_fd: int,
        name: str,
        path: str,
        info: os.stat_result,
        depth: int,
        device: int,
        summary: PathSummary,
        dir_info: os.stat_result,
        deny: str | None,
    ) -> bool:
        """Deal with an entry that is not a regular file; return whether it is gone (or would be, in check mode)."""
        mode = info.st_mode
        if stat.S_ISDIR(mode):
            return self._handle_directory(dir_fd, name, path, info, depth, device, summary, dir_info, deny)
        if self.spec.file_type != 'any':
            if stat.S_ISLNK(mode):
                self.skipped_symlinks += 1
                summary.skipped_symlinks += 1
            return False
        if not (self._name_selected(name) and self._old(info)):
            if stat.S_ISLNK(mode):
                self.skipped_symlinks += 1
                summary.skipped_symlinks += 1
            return False
        refused = (deny or self._entry_denied(dir_fd, name, info, dir_info)) if self.spec.check_mode else None
        removed = self._remove(os.unlink, dir_fd, name, path, refused, summary)
        if removed:
            self._count_file(path, 0, summary)
        return removed is not False

    def _remove(self, remove: t.Callable[..., None], dir_fd: int, name: str, path: str, refused: str | None,
                summary: PathSummary) -> bool | None:
        """Remove one entry with ``remove`` (unlink or rmdir), or in check mode tell whether it would go.

        ``refused`` is check mode's prediction of the kernel's refusal. Returns True when the entry was
        removed (or would be), False when it was refused (the error is recorded), None when it was already gone.
        """
        if self.spec.check_mode:
            if refused:
                self._error(path, refused, summary)
                return False
            return True
        try:
            remove(name, dir_fd=dir_fd)
        except FileNotFoundError:
            return None
        except OSError as exc:
            self._error(path, describe_error(exc), summary)
            return False
        return True

    def _count_file(self, path: str, size: int, summary: PathSummary) -> None:
        self.files_removed += 1
        self.bytes_freed += size
        summary.files_removed += 1
        summary.bytes_freed += size
        if path:
            self._record(path)

    def _handle_directory(
        self,
        dir_fd: int,
        name: str,
        path: str,
        info: os.stat_result,
        depth: int,
        device: int,
        summary: PathSummary,
        dir_info: os.stat_result,
        deny: str | None,
    ) -> bool:
        if info.st_dev != device:
            summary.other_filesystems += 1
            return False
        if self._excluded(name):
            return False
        if self.spec.max_depth is not None and depth >= self.spec.max_depth:
            return False
        identity = _identity(info)
        if identity in self._guarded:
            self._error(path, f'not descended: it is {self._guarded[identity]}, which is never purged', summary)
            return False
        attributes = self._attributes(dir_fd, name)
        if attributes & STATX_ATTR_MOUNT_ROOT:
            # A mount point on the same device (a bind mount): another file system as far as the walk goes.
            summary.other_filesystems += 1
            return False
        if self.before_descend is not None:
            self.before_descend(dir_fd, name, path)
        try:
            child_fd = os.open(name, _DIR_FLAGS, dir_fd=dir_fd)
        except FileNotFoundError:
            return True
        except OSError as exc:
            self._error(path, f'not descended: {describe_error(exc)}', summary)
            return False
        try:
            opened = os.fstat(child_fd)
            if _identity(opened) != identity:
                self._error(path, 'not descended: the directory was replaced during the walk', summary)
                return False
            child_deny = self._denied(dir_fd, name, child_fd, attributes) if self.spec.check_mode else None
            empty = self._enter(child_fd, path, depth + 1, device, summary, opened, child_deny)
        except OSError as exc:
            self._error(path, describe_error(exc), summary)
            return False
        finally:
            os.close(child_fd)
        if not (empty and self.spec.remove_empty_dirs and self._old(info)) or identity in self._keep:
            return False
        refused = (deny or self._sticky_denied(info, dir_info) or self._attributes_denied(attributes)) if self.spec.check_mode else None
        removed = self._remove(os.rmdir, dir_fd, name, path, refused, summary)
        if removed:
            self.dirs_removed += 1
            summary.dirs_removed += 1
            self._record(path + '/')
        return removed is not False

    # -- check mode's view of what the kernel would refuse ---------------------

    def _denied(self, parent_fd: int, name: str, fd: int, attributes: int) -> str | None:
        """The error any removal inside the directory ``fd`` (``name`` in ``parent_fd``) would fail with, or None.

        The kernel wants write and search permission on the directory (refused on a read-only mount, on an
        immutable directory, or by its permissions) and refuses any removal from an append-only directory.
        """
        allowed = os.access(name, os.W_OK | os.X_OK, dir_fd=parent_fd, effective_ids=True, follow_symlinks=False) if name else True
        read_only = bool(os.fstatvfs(fd).f_flag & os.ST_RDONLY)
        if read_only:
            return _EROFS
        if attributes & STATX_ATTR_IMMUTABLE:
            return _EPERM
        if not allowed:
            return _EACCES
        if attributes & STATX_ATTR_APPEND:
            return _EPERM
        return None

    def _entry_denied(self, dir_fd: int, name: str, info: os.stat_result, dir_info: os.stat_result) -> str | None:
        """The error removing one entry of a directory that allows removals would fail with, or None."""
        return self._sticky_denied(info, dir_info) or self._attributes_denied(self._attributes(dir_fd, name))

    def _sticky_denied(self, info: os.stat_result, dir_info: os.stat_result) -> str | None:
        """In a sticky directory only the owner of an entry or of the directory (or CAP_FOWNER) may remove it."""
        if not dir_info.st_mode & stat.S_ISVTX or self._fowner:
            return None
        if self._euid in (info.st_uid, dir_info.st_uid):
            return None
        return _EPERM

    @staticmethod
    def _attributes_denied(attributes: int) -> str | None:
        return _EPERM if attributes & _UNREMOVABLE else None

    # -- helpers -------------------------------------------------------------

    def _excluded(self, name: str) -> bool:
        return self._exclude_match is not None and self._exclude_match(name) is not None

    def _name_selected(self, name: str) -> bool:
        """Whether a name matches an include pattern and no exclude pattern."""
        if self._include_match is not None and self._include_match(name) is None:
            return False
        return not self._excluded(name)

    def _old(self, info: os.stat_result) -> bool:
        return (info.st_atime if self.spec.age_stamp == 'atime' else info.st_mtime) <= self._oldest

    def _record(self, path: str) -> None:
        if len(self.sample) < self.spec.sample_size:
            self.sample.append(display(path))

    def _error(self, path: str, message: str, summary: PathSummary) -> None:
        self.error_count += 1
        summary.errors += 1
        if len(self.errors) < MAX_ERRORS:
            self.errors.append({'path': display(path), 'error': message})
