# Copyright (c) Dihya ops maintainers
# GNU General Public License v3.0+ (see LICENSES/GPL-3.0-or-later.txt or https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later

# This module utility is PRIVATE to the collection. It can change at any time.

"""Which top-level paths may be purged, and reaching them (again) from their allowed root without following a link.

:meth:`TopLevelPaths.prepare` validates every top-level path before anything is removed: it must be
absolute, must not be (by name or by identity, ``st_dev``/``st_ino``) one of the critical system
directories (:data:`CRITICAL_PATHS`, :data:`CRITICAL_PATTERNS`), must not be a symbolic link, must lie
inside one of the allowed roots once every symbolic link and ``..`` is resolved, and must be neither one
of the protected paths nor an ancestor of one (unless forced).

Every allowed root is opened once from ``/`` and every top-level path from the descriptor of its allowed
root, one component at a time with the directory opener of :mod:`._fs_chain` (``O_NOFOLLOW |
O_DIRECTORY``), never by its name. The identity of each component is recorded at validation and checked
again by :meth:`TopLevelPaths.reopen` when the path is purged, so a component swapped for a symbolic link
or another directory in between is refused (:class:`Unreachable`) and nothing below it is touched.
"""

from __future__ import annotations

import contextlib
import dataclasses
import fnmatch
import glob
import os
import stat
import typing as t

from ansible_collections.dihya.ops.plugins.module_utils._fs_chain import (
    ERROR,
    MISSING,
    NOT_A_DIRECTORY,
    REPLACED,
    SYMLINK,
    ChainError,
    Identity,
    close_all,
    components,
    identities,
    identity,
    open_chain,
    open_path,
)
from ansible_collections.dihya.ops.plugins.module_utils._purge_spec import PurgeError, describe_error, display


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


def _resolved(path: str, what: str) -> str:
    """``path`` with every symbolic link resolved; a link changing while it is read is a refusal, not a crash."""
    try:
        return os.path.realpath(_normalise(path))
    except OSError as exc:
        raise PurgeError(f'refusing {what} {path}: it changed while its symbolic links were resolved ({describe_error(exc)})') from None


def allowed_root_names(allowed_roots: t.Sequence[str]) -> list[str]:
    """The allowed roots, each normalised and with every symbolic link resolved; raise :class:`PurgeError` if one is unusable."""
    if not allowed_roots:
        raise PurgeError('allowed_roots must list at least one directory')
    roots = []
    for root in allowed_roots:
        if not isinstance(root, str) or not os.path.isabs(root):
            raise PurgeError(f'allowed root {root!r} must be absolute')
        roots.append(_resolved(root, 'the allowed root'))
    return roots


def resolve_path(path: str, allowed_roots: t.Sequence[str]) -> str:
    """Validate a top-level path and return it with every symbolic link resolved.

    Raise :class:`PurgeError` with a message for humans if the path must not be purged.
    This checks names only; :meth:`TopLevelPaths.prepare` then opens the path from its allowed root and checks identities.
    A path that does not exist is returned as resolved; the purge reports it as missing.
    """
    if not allowed_roots:
        raise PurgeError('allowed_roots must list at least one directory')
    if not isinstance(path, str) or not os.path.isabs(path):
        raise PurgeError(f'path {path!r} must be absolute')
    normalised = _normalise(path)
    resolved = _resolved(normalised, 'to purge')
    for candidate in (normalised, resolved):
        if is_critical(candidate):
            raise PurgeError(f'refusing to purge {path}: {candidate} is a critical system directory')
    if os.path.islink(normalised):
        raise PurgeError(f'refusing to purge {path}: it is a symbolic link (links are never followed)')
    roots = allowed_root_names(allowed_roots)
    if not any(_inside(resolved, root) for root in roots):
        raise PurgeError(f"refusing to purge {path}: it resolves to {resolved}, which is not inside any of allowed_roots ({', '.join(roots)})")
    return resolved


class Unreachable(Exception):
    """A top-level path (or its allowed root) cannot be reached as the directory it must be.

    ``kind`` is one of :mod:`._fs_chain`'s (missing, symlink, not-a-directory, replaced or error), ``component``
    the path of the component that failed and ``message`` the sentence for the user.
    """

    def __init__(self, kind: str, component: str, message: str) -> None:
        super().__init__(message)
        self.kind = kind
        self.component = component
        self.message = message


_WORDING = {
    MISSING: '{path} does not exist',
    SYMLINK: '{path} is a symbolic link',
    NOT_A_DIRECTORY: '{path} is not a directory',
    REPLACED: '{path} is not the directory that was checked',
}


def _unreachable(exc: ChainError) -> Unreachable:
    """The purge's wording of a refusal of the directory opener."""
    path = display(exc.component)
    if exc.kind == ERROR:
        return Unreachable(exc.kind, exc.component, f'cannot open {path}: {describe_error(exc.cause or OSError(exc.errno, ""))}')
    return Unreachable(exc.kind, exc.component, _WORDING[exc.kind].format(path=path))


def _open_chain(base_fd: int, base_path: str, parts: t.Sequence[str], expected: t.Sequence[Identity] | None = None) -> list[int]:
    """:func:`._fs_chain.open_chain`, its refusals worded as :class:`Unreachable`."""
    try:
        return open_chain(base_fd, base_path, parts, expected)
    except ChainError as exc:
        raise _unreachable(exc) from None


def _open_path(path: str) -> list[int]:
    """:func:`._fs_chain.open_path`, its refusals worded as :class:`Unreachable`."""
    try:
        return open_path(path)
    except ChainError as exc:
        raise _unreachable(exc) from None


@dataclasses.dataclass
class Root:
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


@dataclasses.dataclass
class _Protected:
    """For each protected path: its resolved name; identities of the paths themselves; identities of their ancestors."""

    names: list[tuple[str, str]] = dataclasses.field(default_factory=list)
    themselves: dict[Identity, str] = dataclasses.field(default_factory=dict)
    ancestors: dict[Identity, str] = dataclasses.field(default_factory=dict)


def _protected_identities(protected_paths: t.Sequence[str]) -> _Protected:
    protected = _Protected()
    for path in protected_paths:
        if not isinstance(path, str) or not os.path.isabs(path):
            raise PurgeError(f'protected path {path!r} must be absolute')
        resolved = _resolved(path, 'the protected path')
        protected.names.append((path, resolved))
        with contextlib.suppress(OSError):
            protected.themselves.setdefault(identity(os.stat(resolved)), path)
        parent = resolved
        while parent != '/':
            parent = os.path.dirname(parent)
            try:
                protected.ancestors.setdefault(identity(os.stat(parent)), path)
            except OSError:
                continue
    return protected


class TopLevelPaths:
    """The allowed roots (open from validation to :meth:`close`) and the validated top-level paths of one purge.

    After :meth:`prepare`: ``targets`` are the validated paths, ``guarded`` the identities of the directories
    never entered (critical ones and, unless forced, protected ones), ``keep`` those of the top-level
    directories (never removed), and ``overlapping`` tells whether some top-level paths overlap (one inside
    another, or the same one twice).
    """

    def __init__(self) -> None:
        self.targets: list[Target] = []
        self.guarded: dict[Identity, str] = {}
        self.keep: set[Identity] = set()
        self.overlapping = False
        self._roots: dict[str, Root] = {}

    def close(self) -> None:
        """Close the descriptors of the allowed roots."""
        roots, self._roots = self._roots, {}
        close_all(root.fd for root in roots.values())

    def prepare(
        self,
        paths: t.Sequence[str],
        allowed_roots: t.Sequence[str],
        protected_paths: t.Sequence[str] = (),
        force: bool = False,
    ) -> list[Target]:
        """Validate every path and open its chain of directories; raise :class:`PurgeError` if any is refused.

        Nothing is removed here, so a refusal leaves every path untouched (and closes the roots).
        """
        roots = allowed_root_names(allowed_roots)
        protected = _protected_identities(protected_paths)
        critical = critical_identities()
        self.guarded.update(critical)
        if not force:
            for key, name in protected.themselves.items():
                self.guarded.setdefault(key, name)
        problems: list[str] = []
        targets: list[Target] = []
        for path in paths:
            try:
                targets.append(self._validate(path, roots, critical, protected, force))
            except PurgeError as exc:
                problems.append(str(exc))
        if problems:
            self.close()
            raise PurgeError('; '.join(problems))
        found = [target for target in targets if target.exists]
        tops = [target.chain[-1] if target.chain else self._roots[target.root].identity for target in found]
        self.keep.update(tops)
        # Overlapping paths (the same directory twice, or one inside another): every directory is to be walked once.
        chains = [set(target.chain) | {self._roots[target.root].identity} for target in found]
        if any(top in chain for index, top in enumerate(tops) for other, chain in enumerate(chains) if other != index):
            self.overlapping = True
        self.targets.extend(targets)
        return targets

    def _validate(self, path: str, roots: list[str], critical: dict[Identity, str], protected: _Protected, force: bool) -> Target:
        resolved = resolve_path(path, roots)
        if not force:
            for name, protected_name in protected.names:
                if resolved == protected_name:
                    raise PurgeError(f'refusing to purge {path}: it is the protected path {name} (force overrides this)')
                if _inside(protected_name, resolved):
                    raise PurgeError(f'refusing to purge {path}: it contains the protected path {name} (force overrides this)')
        root_path = max((root for root in roots if _inside(resolved, root)), key=len)
        parts = components(resolved[len(root_path):])
        try:
            root = self._open_root(root_path)
        except Unreachable as exc:
            if exc.kind == MISSING:
                return Target(path=path, resolved=resolved, root=root_path, parts=parts, exists=False)
            raise PurgeError(f'refusing to purge {path}: cannot open the allowed root {root_path}: {exc.message}') from None
        try:
            fds = _open_chain(root.fd, root_path, parts)
        except Unreachable as exc:
            if exc.kind == MISSING:
                return Target(path=path, resolved=resolved, root=root_path, parts=parts, exists=False)
            if exc.kind == NOT_A_DIRECTORY and exc.component == resolved:
                raise PurgeError(f'refusing to purge {path}: it is not a directory') from None
            raise PurgeError(f'refusing to purge {path}: {exc.message}') from None
        try:
            chain = identities(fds)
        finally:
            close_all(fds)
        top = chain[-1] if chain else root.identity
        if top in critical:
            raise PurgeError(f'refusing to purge {path}: it is the critical system directory {critical[top]}')
        if not force:
            if top in protected.themselves:
                raise PurgeError(f'refusing to purge {path}: it is the protected path {protected.themselves[top]} (force overrides this)')
            if top in protected.ancestors:
                raise PurgeError(f'refusing to purge {path}: it contains the protected path {protected.ancestors[top]} (force overrides this)')
        return Target(path=path, resolved=resolved, root=root_path, parts=parts, chain=chain)

    def _open_root(self, root_path: str) -> Root:
        """Open an allowed root once, from ``/`` one component at a time, and check it is the directory validated."""
        if root_path in self._roots:
            return self._roots[root_path]
        try:
            validated = identity(os.stat(root_path))
        except FileNotFoundError:
            raise Unreachable(MISSING, root_path, f'{root_path} does not exist') from None
        except OSError as exc:
            raise Unreachable(ERROR, root_path, f'cannot examine {root_path}: {describe_error(exc)}') from None
        fds = _open_path(root_path)
        fd = fds.pop()
        close_all(fds)
        opened = identity(os.fstat(fd))
        if opened != validated:
            os.close(fd)
            raise Unreachable(REPLACED, root_path, f'{root_path} changed while it was being opened')
        root = Root(path=root_path, fd=fd, identity=opened)
        self._roots[root_path] = root
        return root

    def root(self, target: Target) -> Root:
        """The allowed root of a validated target."""
        return self._roots[target.root]

    def reopen(self, target: Target) -> tuple[int, str, list[int]]:
        """Open the target again from its root's descriptor, checking every component is the one validated.

        Return the descriptor of the target's parent, the target's name in it and the descriptors to close (the
        target's last). The root itself must still be reachable by its name as the same directory. Raise
        :class:`Unreachable` naming the component that changed.
        """
        root = self._roots[target.root]
        try:
            fds = _open_path(root.path)
        except Unreachable as exc:
            raise Unreachable(REPLACED if exc.kind == MISSING else exc.kind, exc.component,
                              f'the allowed root {root.path} was replaced ({exc.message})') from None
        slash = fds[0]
        try:
            if identity(os.fstat(fds[-1])) != root.identity:
                raise Unreachable(REPLACED, root.path, f'the allowed root {root.path} was replaced by another directory')
            if not target.parts:
                # The target is the root: keep its parent (as reached now) for check mode's permission checks.
                name = components(root.path)[-1] if root.path != '/' else ''
                return (fds[-2] if len(fds) > 1 else slash), name, fds
            chain = _open_chain(root.fd, root.path, target.parts, target.chain)
        except BaseException:
            close_all(fds)
            raise
        close_all(fds)
        # The root's own descriptor stays open (and is not handed back to be closed).
        return (chain[-2] if len(chain) > 1 else root.fd), target.parts[-1], chain
