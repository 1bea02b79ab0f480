# Copyright (c) Dihya ops maintainers
# GNU General Public License v3.0+ (see LICENSES/GPL-3.0-or-later.txt or https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later

# This module utility is PRIVATE to the collection. It can change at any time.

"""Purge engine: remove old files below a set of directories, safely.

The engine knows nothing about Ansible. A caller builds a :class:`PurgeSpec`, hands every top-level
path to :meth:`Purger.prepare` (which validates all of them before anything is removed) and then runs
:meth:`Purger.run`. This module is the walk, the selection and the removal; the rest lives next to it:

* :mod:`._purge_spec`: the options (:class:`PurgeSpec`), durations (:func:`parse_age`) and per-path summaries;
* :mod:`._purge_paths`: which top-level paths may be purged (critical, protected and allowed roots), and
  reaching them again, component by component, as the very directories that were validated;
* :mod:`._purge_kernel`: statx(2) attributes and check mode's predictions of the kernel's refusals.

Safety rules of the walk:

* The walk goes through directory file descriptors only: every entry is examined, removed or
  opened relative to the descriptor of its parent, and directories are opened with
  ``O_NOFOLLOW``. A directory swapped for a symbolic link during the walk therefore cannot
  redirect a removal outside the tree: opening it fails and it is reported as an error; a directory
  swapped for another one is noticed (its identity changed) and not entered.
* Symbolic links are never followed, and the walk never crosses into another file system or mount
  (bind mounts included, where the kernel reports mount roots), nor into a critical or protected directory.
* Overlapping top-level paths (one inside another, or the same one twice) are walked once: every
  directory is visited once. The top-level directories themselves are never removed.
* Check mode walks the same tree and predicts the removals the kernel would refuse (read-only
  mount, no write permission on the directory, sticky directory, immutable or append-only
  attributes), so it reports what a real run would remove, and the same errors.
* Nothing is collected in memory beyond counters, a bounded sample of removed paths and a
  bounded list of errors (plus one entry per directory when top-level paths overlap).
"""

from __future__ import annotations

import fnmatch
import os
import re
import stat
import time
import typing as t

from ansible_collections.dihya.ops.plugins.module_utils._fs_chain import DIR_FLAGS, Identity, close_all, identity, join
from ansible_collections.dihya.ops.plugins.module_utils._purge_kernel import (
    EPERM,
    STATX_ATTR_MOUNT_ROOT,
    UNREMOVABLE,
    Refusals,
)
from ansible_collections.dihya.ops.plugins.module_utils._purge_paths import (
    CRITICAL_PATHS,
    CRITICAL_PATTERNS,
    Target,
    TopLevelPaths,
    Unreachable,
    critical_identities,
    is_critical,
    resolve_path,
)
from ansible_collections.dihya.ops.plugins.module_utils._purge_spec import (
    AGE_STAMPS,
    AGE_UNITS,
    DEFAULT_SAMPLE_SIZE,
    FILE_TYPES,
    MAX_ERRORS,
    PathSummary,
    PurgeError,
    PurgeSpec,
    describe_error,
    display,
    parse_age,
)


def _compile(patterns: t.Sequence[str]) -> t.Callable[[str], t.Any]:
    """One matcher for a list of shell patterns (case-sensitive, like :func:`fnmatch.fnmatchcase`)."""
    return re.compile('|'.join(f'(?:{fnmatch.translate(pattern)})' for pattern in patterns)).match


class _Here(t.NamedTuple):
    """The directory being walked, as the handling of one of its entries needs it."""

    fd: int
    path: str
    depth: int
    # The device of the top-level path: the walk stays on it.
    device: int
    summary: PathSummary
    info: os.stat_result
    # Check mode: the error the kernel would give for any removal in this directory (None: removals allowed).
    deny: str | None


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
        # The allowed roots, the validated paths, the directories never entered (critical ones and, unless
        # forced, protected ones) and the top-level directories (never removed).
        self._paths = TopLevelPaths()
        # Directories walked so far and the depth left below each (None: unlimited); only when paths overlap.
        self._visited: dict[Identity, int | None] | None = None
        self._refusals = Refusals()
        self._attributes = self._refusals.attributes
        self._fowner = self._refusals.fowner
        self._euid = self._refusals.euid

    def __enter__(self) -> Purger:
        return self

    def __exit__(self, *exc_info: t.Any) -> None:
        self.close()

    def close(self) -> None:
        """Close the descriptors of the allowed roots."""
        self._paths.close()

    @property
    def targets(self) -> list[Target]:
        """Every top-level path validated so far."""
        return self._paths.targets

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

    # -- top level -----------------------------------------------------------

    def prepare(
        self,
        paths: t.Sequence[str],
        allowed_roots: t.Sequence[str],
        protected_paths: t.Sequence[str] = (),
        force: bool = False,
    ) -> list[Target]:
        """Validate every path and open its chain of directories; raise :class:`PurgeError` if any is refused.

        Nothing is removed here, so a refusal leaves every path untouched (see :meth:`._purge_paths.TopLevelPaths.prepare`).
        The targets are also kept for :meth:`run`.
        """
        targets = self._paths.prepare(paths, allowed_roots, protected_paths, force)
        if self._visited is None and self._paths.overlapping:
            self._visited = {}
        return targets

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
        try:
            parent_fd, name, fds = self._paths.reopen(target)
        except Unreachable as exc:
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
            deny = self._refusals.in_directory(parent_fd, name, fd, self._attributes(fd, '')) if self.spec.check_mode else None
            self._enter(fd, target.resolved, 0, info.st_dev, summary, info, deny)
        except OSError as exc:
            self._error(target.resolved, describe_error(exc), summary)
        finally:
            close_all(fds)

    # -- walk ----------------------------------------------------------------

    def _enter(self, dir_fd: int, dir_path: str, depth: int, device: int, summary: PathSummary, info: os.stat_result, deny: str | None) -> bool:
        """Walk one directory unless an overlapping path already walked it (as deep); return whether it is (would be) empty."""
        if self._visited is None:
            return self._walk(dir_fd, dir_path, depth, device, summary, info, deny)
        key = identity(info)
        budget = None if self.spec.max_depth is None else self.spec.max_depth - depth
        seen = key in self._visited
        previous = self._visited.get(key)
        if seen and (previous is None or (budget is not None and previous >= budget)):
            return False
        self._visited[key] = budget
        if not seen:
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
        here = _Here(dir_fd, dir_path, depth, device, summary, dir_info, deny)
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
                    self._error(join(dir_path, name), describe_error(exc), summary)
                    empty = False
                    continue
                if revisit and not is_dir(info.st_mode):
                    empty = False
                    continue
                if not is_regular(info.st_mode):
                    if not self._handle(here, name, info):
                        empty = False
                    continue
                if (info.st_atime if use_atime else info.st_mtime) > oldest or info.st_size < min_size or not selected_name(name):
                    empty = False
                    continue
                if check_mode:
                    refused: str | None
                    if deny:
                        refused = deny
                    elif sticky and info.st_uid != euid:
                        refused = EPERM
                    else:
                        refused = EPERM if read_attributes(dir_fd, name) & UNREMOVABLE else None
                    if refused:
                        self._error(join(dir_path, name), refused, summary)
                        empty = False
                        continue
                else:
                    try:
                        os.unlink(name, dir_fd=dir_fd)
                    except FileNotFoundError:
                        continue
                    except OSError as exc:
                        self._error(join(dir_path, name), describe_error(exc), summary)
                        empty = False
                        continue
                self._count_file(join(dir_path, name) if len(self.sample) < self.spec.sample_size else '', info.st_size, summary)
        return empty

    def _handle(self, here: _Here, name: str, info: os.stat_result) -> bool:
        """Deal with an entry of ``here`` that is not a regular file; return whether it is gone (or would be, in check mode)."""
        mode = info.st_mode
        if stat.S_ISDIR(mode):
            return self._handle_directory(here, name, info)
        if self.spec.file_type != 'any' or not (self._name_selected(name) and self._old(info)):
            if stat.S_ISLNK(mode):
                self.skipped_symlinks += 1
                here.summary.skipped_symlinks += 1
            return False
        refused = (here.deny or self._refusals.of_entry(here.fd, name, info, here.info)) if self.spec.check_mode else None
        path = join(here.path, name)
        removed = self._remove(os.unlink, here.fd, name, path, refused, here.summary)
        if removed:
            self._count_file(path, 0, here.summary)
        return removed is not False

    def _handle_directory(self, here: _Here, name: str, info: os.stat_result) -> bool:
        """Walk a subdirectory of ``here`` (unless it must not be entered), then remove it if asked and it is empty."""
        summary = here.summary
        if info.st_dev != here.device:
            summary.other_filesystems += 1
            return False
        if self._excluded(name):
            return False
        if self.spec.max_depth is not None and here.depth >= self.spec.max_depth:
            return False
        path = join(here.path, name)
        key = identity(info)
        if key in self._paths.guarded:
            self._error(path, f'not descended: it is {self._paths.guarded[key]}, which is never purged', summary)
            return False
        attributes = self._attributes(here.fd, name)
        if attributes & STATX_ATTR_MOUNT_ROOT:
            # A mount point on the same device (a bind mount): another file system as far as the walk goes.
            summary.other_filesystems += 1
            return False
        if self.before_descend is not None:
            self.before_descend(here.fd, name, path)
        try:
            child_fd = os.open(name, DIR_FLAGS, dir_fd=here.fd)
        except FileNotFoundError:
            return True
        except OSError as exc:
            self._error(path, f'not descended: {describe_error(exc)}', summary)
            return False
        try:
            opened = os.fstat(child_fd)
            if identity(opened) != key:
                self._error(path, 'not descended: the directory was replaced during the walk', summary)
                return False
            child_deny = self._refusals.in_directory(here.fd, name, child_fd, attributes) if self.spec.check_mode else None
            empty = self._enter(child_fd, path, here.depth + 1, here.device, summary, opened, child_deny)
        except OSError as exc:
            self._error(path, describe_error(exc), summary)
            return False
        finally:
            os.close(child_fd)
        if not (empty and self.spec.remove_empty_dirs and self._old(info)) or key in self._paths.keep:
            return False
        refused = None
        if self.spec.check_mode:
            refused = here.deny or self._refusals.sticky(info, here.info) or self._refusals.of_attributes(attributes)
        removed = self._remove(os.rmdir, here.fd, name, path, refused, summary)
        if removed:
            self.dirs_removed += 1
            summary.dirs_removed += 1
            self._record(path + '/')
        return removed is not False

    # -- removal and bookkeeping ----------------------------------------------

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


__all__ = [
    'AGE_STAMPS', 'AGE_UNITS', 'CRITICAL_PATHS', 'CRITICAL_PATTERNS', 'DEFAULT_SAMPLE_SIZE', 'FILE_TYPES', 'MAX_ERRORS', 'PathSummary',
    'PurgeError', 'PurgeSpec', 'Purger', 'Target', 'critical_identities', 'display', 'is_critical', 'parse_age', 'resolve_path',
]
