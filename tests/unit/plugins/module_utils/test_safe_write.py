# Copyright (c) Dihya ops maintainers
# GNU General Public License v3.0+ (see LICENSES/GPL-3.0-or-later.txt or https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later

"""The write primitive: every kind of destination, with and without force, races, failures, directory chains."""

from __future__ import annotations

import errno
import os
import stat
import threading

import pytest

from ansible_collections.dihya.ops.plugins.module_utils import _fs_chain, _safe_write
from ansible_collections.dihya.ops.plugins.module_utils._safe_write import (
    UnsafeDestination,
    append_open,
    atomic_write,
    check_destination,
    fsync_directory,
    open_dir,
    write_bytes,
)
from ansible_collections.dihya.ops.tests.unit.plugins.module_utils.safe_write_utils import (
    EXISTING,
    FOUND,
    KINDS,
    NOT_REGULAR,
    PRECIOUS,
    leftovers,
)

NEW = b'new content\n'


# ---------------------------------------------------------------------------
# atomic_write: every kind of destination x force
# ---------------------------------------------------------------------------

@pytest.mark.parametrize('force', [False, True], ids=['no-force', 'force'])
@pytest.mark.parametrize('kind', KINDS)
def test_atomic_write_every_destination(place, kind, force):
    thing = place(kind)
    before = thing.state()
    if kind == 'missing' or (kind == 'file' and force):
        old_inode = os.lstat(thing.path).st_ino if kind == 'file' else None
        write_bytes(str(thing.path), NEW, force=force)
        assert thing.path.read_bytes() == NEW
        info = os.lstat(thing.path)
        assert stat.S_ISREG(info.st_mode) and stat.S_IMODE(info.st_mode) == 0o600
        assert info.st_ino != old_inode, 'an existing file is replaced by a new one (rename), never rewritten in place'
    else:
        with pytest.raises(UnsafeDestination, match=FOUND[kind]) as caught:
            write_bytes(str(thing.path), NEW, force=force)
        assert str(thing.path) in str(caught.value) and caught.value.filename == str(thing.path)
        assert thing.state() == before, 'what was at the destination must be left exactly as it was'
        if kind == 'file':
            assert 'force' in str(caught.value)
    assert leftovers(thing.path.parent, 'dest') == [], 'no temporary file stays behind'


@pytest.mark.parametrize('kind', KINDS)
def test_check_destination_agrees_with_atomic_write(place, kind):
    thing = place(kind)
    for force in (False, True):
        accepted = kind == 'missing' or (kind == 'file' and force)
        if accepted:
            check_destination(str(thing.path), force=force)
        else:
            with pytest.raises(UnsafeDestination, match=FOUND[kind]):
                check_destination(str(thing.path), force=force)


def test_check_destination_missing_directory(tmp_path):
    with pytest.raises(FileNotFoundError):
        check_destination(str(tmp_path / 'absent' / 'dest'))
    check_destination(str(tmp_path / 'absent' / 'dest'), missing_dir_ok=True)


def test_the_error_is_an_oserror_with_a_clear_message(place):
    thing = place('fifo')
    with pytest.raises(OSError) as caught:
        write_bytes(str(thing.path), NEW, force=True)
    assert str(caught.value) == f'{thing.path} is a FIFO; refusing to write through or over it (only a regular file can be replaced, and only with force)'


# ---------------------------------------------------------------------------
# Mode, temporary files, failures
# ---------------------------------------------------------------------------

@pytest.mark.parametrize('umask', [0o000, 0o022, 0o077])
@pytest.mark.parametrize('mode', [0o600, 0o644])
def test_mode_whatever_the_umask(tmp_path, umask, mode):
    old = os.umask(umask)
    try:
        write_bytes(str(tmp_path / 'dest'), NEW, mode=mode)
    finally:
        os.umask(old)
    assert stat.S_IMODE(os.lstat(tmp_path / 'dest').st_mode) == mode


def test_default_mode_is_0600(tmp_path):
    with atomic_write(str(tmp_path / 'dest')) as handle:
        handle.write(NEW)
    assert stat.S_IMODE(os.lstat(tmp_path / 'dest').st_mode) == 0o600


@pytest.mark.parametrize('kind', ['missing', 'file'])
def test_temp_removed_when_the_writer_fails(place, kind):
    thing = place(kind)
    before = thing.state()
    with pytest.raises(RuntimeError, match='boom'), atomic_write(str(thing.path), force=True) as handle:
        handle.write(NEW)
        assert len(leftovers(thing.path.parent, 'dest')) == 1, 'the data goes to a temporary file first'
        raise RuntimeError('boom')
    assert thing.state() == before
    assert leftovers(thing.path.parent, 'dest') == []


def test_nothing_visible_before_the_end(tmp_path):
    dest = tmp_path / 'dest'
    with atomic_write(str(dest)) as handle:
        handle.write(NEW)
        handle.flush()
        assert not dest.exists()
        (temp,) = leftovers(tmp_path)
        assert temp.startswith('.dest.tmp-') and stat.S_IMODE(os.lstat(tmp_path / temp).st_mode) == 0o600
    assert dest.read_bytes() == NEW


def test_temp_name_marker_and_length(tmp_path):
    name = 'n' * 250
    with atomic_write(str(tmp_path / name), temp_marker='.rgpd-tmp-') as handle:
        (temp,) = leftovers(tmp_path)
        assert temp.startswith('.nnn') and f'.rgpd-tmp-{os.getpid()}-' in temp and len(temp) <= 255
        handle.write(NEW)
    assert (tmp_path / name).read_bytes() == NEW


def test_a_temp_name_taken_by_something_else_is_not_used(tmp_path, monkeypatch):
    victim = tmp_path / 'victim'
    victim.write_bytes(PRECIOUS)
    (tmp_path / '.dest.tmp-fixed').symlink_to(victim)
    monkeypatch.setattr(_safe_write, 'temp_name', lambda name, marker='.tmp-': '.dest.tmp-fixed')
    with pytest.raises(FileExistsError):
        write_bytes(str(tmp_path / 'dest'), NEW)
    assert victim.read_bytes() == PRECIOUS and (tmp_path / '.dest.tmp-fixed').is_symlink()
    assert not (tmp_path / 'dest').exists()


# ---------------------------------------------------------------------------
# Races: the destination changes while the file is being written
# ---------------------------------------------------------------------------

@pytest.mark.parametrize('force', [False, True], ids=['no-force', 'force'])
@pytest.mark.parametrize('appears', EXISTING)
def test_something_appears_while_writing(place, tmp_path, appears, force):
    """Nothing at dest when the write starts; a file, link, FIFO, device... is put there before the end."""
    dest = tmp_path / 'out' / 'dest'
    with pytest.raises(UnsafeDestination, match='appeared while the file was being written'), atomic_write(str(dest), force=force) as handle:
        handle.write(NEW)
        thing = place(appears)
        before = thing.state()
    assert thing.state() == before
    assert leftovers(dest.parent, 'dest') == []


@pytest.mark.parametrize('swapped_for', (*NOT_REGULAR, 'file'))
def test_existing_file_swapped_while_writing_with_force(place, tmp_path, swapped_for):
    """force replaces the regular file that was checked, not what was put in its place meanwhile."""
    dest = tmp_path / 'out' / 'dest'
    dest.write_bytes(b'old\n')
    with pytest.raises(UnsafeDestination), atomic_write(str(dest), force=True) as handle:
        handle.write(NEW)
        dest.unlink()
        thing = place(swapped_for)
        before = thing.state()
    assert thing.state() == before
    assert leftovers(dest.parent, 'dest') == []


@pytest.mark.parametrize('no_link_errno', [errno.EPERM, errno.EXDEV, errno.EOPNOTSUPP])
def test_without_hard_links_the_destination_is_checked_again(place, tmp_path, monkeypatch, no_link_errno):
    """On a file system without hard links, the check right before rename() catches what appeared."""
    def no_link(*args, **kwargs):
        raise OSError(no_link_errno, os.strerror(no_link_errno))

    monkeypatch.setattr(_safe_write.os, 'link', no_link)
    write_bytes(str(tmp_path / 'ok'), NEW)
    assert (tmp_path / 'ok').read_bytes() == NEW
    dest = tmp_path / 'out' / 'dest'
    with pytest.raises(UnsafeDestination, match='is a symbolic link'), atomic_write(str(dest)) as handle:
        handle.write(NEW)
        thing = place('symlink-file')
        before = thing.state()
    assert thing.state() == before
    assert leftovers(dest.parent, 'dest') == []


def test_concurrent_writers_never_overwrite_each_other(tmp_path):
    dest = str(tmp_path / 'dest')
    barrier = threading.Barrier(8)
    outcomes = []

    def writer(number):
        try:
            with atomic_write(dest) as handle:
                handle.write(f'{number}\n'.encode())
                barrier.wait(timeout=10)
            outcomes.append(('ok', number))
        except UnsafeDestination:
            outcomes.append(('refused', number))

    threads = [threading.Thread(target=writer, args=(number,)) for number in range(8)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=20)
    winners = [number for outcome, number in outcomes if outcome == 'ok']
    assert len(outcomes) == 8 and len(winners) == 1
    assert (tmp_path / 'dest').read_text() == f'{winners[0]}\n'
    assert leftovers(tmp_path, 'dest') == []


# ---------------------------------------------------------------------------
# The directory chain
# ---------------------------------------------------------------------------

@pytest.mark.parametrize('position', ['first', 'middle', 'last'])
def test_symlinked_directory_on_the_way_is_refused(tmp_path, position):
    real = tmp_path / 'real' / 'a' / 'b'
    real.mkdir(parents=True)
    parts = ['a', 'b', 'c']
    (real / 'c').mkdir()
    index = {'first': 0, 'middle': 1, 'last': 2}[position]
    # tmp/linked/<real directories before index>/<link at index> -> the real directory of that component
    base = tmp_path / 'linked'
    base.mkdir()
    here = base
    for part in parts[:index]:
        here = here / part
        here.mkdir()
    link = here / parts[index]
    link.symlink_to(tmp_path / 'real' / '/'.join(parts[:index + 1]))
    dest = base / '/'.join(parts) / 'dest'
    for attempt in (lambda: write_bytes(str(dest), NEW), lambda: write_bytes(str(dest), NEW, force=True),
                    lambda: os.close(append_open(str(dest))), lambda: check_destination(str(dest)),
                    lambda: os.close(open_dir(str(dest.parent)))):
        with pytest.raises(UnsafeDestination, match='is a symbolic link') as caught:
            attempt()
        assert str(caught.value).startswith(f'{link} is a symbolic link')
    assert not list((tmp_path / 'real').rglob('dest'))


def test_a_file_on_the_way_is_refused(tmp_path):
    (tmp_path / 'file').write_bytes(PRECIOUS)
    with pytest.raises(UnsafeDestination, match='is an existing file'):
        write_bytes(str(tmp_path / 'file' / 'dest'), NEW)
    assert (tmp_path / 'file').read_bytes() == PRECIOUS


@pytest.mark.parametrize('path', ['relative/dest', 'dest', '', '/tmp/../etc/dest', '/'])
def test_bad_paths(path):
    with pytest.raises(UnsafeDestination):
        write_bytes(path, NEW)


def test_missing_directory(tmp_path):
    with pytest.raises(FileNotFoundError) as caught:
        write_bytes(str(tmp_path / 'absent' / 'dest'), NEW)
    assert caught.value.filename == str(tmp_path / 'absent')
    assert not (tmp_path / 'absent').exists()


def test_open_dir_and_fsync(tmp_path):
    fd = open_dir(str(tmp_path))
    try:
        assert os.path.samestat(os.fstat(fd), os.stat(tmp_path))
        fsync_directory(fd)
    finally:
        os.close(fd)
    fsync_directory(str(tmp_path))
    with pytest.raises(UnsafeDestination):
        (tmp_path / 'link').symlink_to(tmp_path)
        fsync_directory(str(tmp_path / 'link'))


def open_fds():
    return set(os.listdir('/proc/self/fd'))


def test_chain_opens_every_component_and_checks_identities(tmp_path):
    """The one directory opener: a descriptor per component, and a component swapped for another directory is refused."""
    (tmp_path / 'a' / 'b').mkdir(parents=True)
    before = open_fds()
    fds = _fs_chain.open_path(str(tmp_path / 'a' / 'b'))
    try:
        assert len(fds) == len(_fs_chain.components(str(tmp_path))) + 3
        assert os.path.samestat(os.fstat(fds[0]), os.stat('/'))
        assert os.path.samestat(os.fstat(fds[-1]), os.stat(tmp_path / 'a' / 'b'))
        recorded = _fs_chain.identities(fds[1:])
    finally:
        _fs_chain.close_all(fds)
    os.rename(tmp_path / 'a' / 'b', tmp_path / 'a' / 'old-b')
    (tmp_path / 'a' / 'b').mkdir()
    with pytest.raises(_fs_chain.ChainError) as caught:
        _fs_chain.open_path(str(tmp_path / 'a' / 'b'), recorded)
    assert (caught.value.kind, caught.value.component) == (_fs_chain.REPLACED, str(tmp_path / 'a' / 'b'))
    assert caught.value.errno == errno.ESTALE
    fd = _fs_chain.open_directory(str(tmp_path / 'a' / 'old-b'), recorded)
    os.close(fd)
    assert open_fds() == before


@pytest.mark.parametrize('kind, expected', [
    ('symlink', _fs_chain.SYMLINK), ('file', _fs_chain.NOT_A_DIRECTORY), ('fifo', _fs_chain.NOT_A_DIRECTORY), ('missing', _fs_chain.MISSING),
])
def test_chain_refusals_name_the_component(tmp_path, kind, expected):
    (tmp_path / 'real' / 'below').mkdir(parents=True)
    middle = tmp_path / 'middle'
    if kind == 'symlink':
        middle.symlink_to(tmp_path / 'real')
    elif kind == 'file':
        middle.write_bytes(PRECIOUS)
    elif kind == 'fifo':
        os.mkfifo(middle)
    before = open_fds()
    with pytest.raises(_fs_chain.ChainError) as caught:
        _fs_chain.open_path(str(middle / 'below'))
    assert (caught.value.kind, caught.value.component) == (expected, str(middle))
    if kind == 'missing':
        assert caught.value.mode is None and caught.value.errno == errno.ENOENT
    else:
        assert caught.value.mode == os.lstat(middle).st_mode
    assert open_fds() == before


def test_chain_refuses_names_that_would_leave_it(tmp_path):
    base = os.open(tmp_path, os.O_RDONLY | os.O_DIRECTORY)
    try:
        for part in ('..', '.', '', 'a/b'):
            with pytest.raises(ValueError, match='not a directory name'):
                _fs_chain.open_chain(base, str(tmp_path), [part])
        with pytest.raises(ValueError, match='identities'):
            _fs_chain.open_chain(base, str(tmp_path), ['x'], [])
    finally:
        os.close(base)
    with pytest.raises(ValueError, match='not an absolute path'):
        _fs_chain.open_path('relative')


def test_open_dir_words_the_chain_refusals(tmp_path, monkeypatch):
    """open_dir keeps its contract: UnsafeDestination for a link or a non-directory, the original error otherwise."""
    (tmp_path / 'file').write_bytes(PRECIOUS)
    with pytest.raises(UnsafeDestination, match='is an existing file; refusing') as caught:
        open_dir(str(tmp_path / 'file' / 'below'))
    assert caught.value.filename == str(tmp_path / 'file') and caught.value.errno == errno.ENOTDIR
    (tmp_path / 'sub').mkdir()
    real_open = os.open

    def refuse(path, flags, mode=0o777, *, dir_fd=None):
        if path == 'sub':
            raise PermissionError(errno.EACCES, 'Permission denied')
        return real_open(path, flags, mode, dir_fd=dir_fd)

    monkeypatch.setattr(_fs_chain.os, 'open', refuse)
    with pytest.raises(PermissionError):
        open_dir(str(tmp_path / 'sub'))


# ---------------------------------------------------------------------------
# append_open
# ---------------------------------------------------------------------------

@pytest.mark.parametrize('kind', KINDS)
def test_append_open_every_destination(place, kind):
    thing = place(kind)
    before = thing.state()
    if kind in ('missing', 'file'):
        inode = os.lstat(thing.path).st_ino if kind == 'file' else None
        fd = append_open(str(thing.path))
        try:
            os.write(fd, NEW)
        finally:
            os.close(fd)
        assert thing.path.read_bytes() == (PRECIOUS if kind == 'file' else b'') + NEW
        if kind == 'file':
            assert os.lstat(thing.path).st_ino == inode, 'an append-only file is appended to in place'
        else:
            assert stat.S_IMODE(os.lstat(thing.path).st_mode) == 0o600
    else:
        with pytest.raises(UnsafeDestination, match=FOUND[kind]):
            os.close(append_open(str(thing.path)))
        assert thing.state() == before


def test_append_open_mode(tmp_path):
    os.close(append_open(str(tmp_path / 'log'), 0o640))
    assert stat.S_IMODE(os.lstat(tmp_path / 'log').st_mode) == 0o640


def test_append_open_never_blocks_on_a_fifo_swapped_in(tmp_path, monkeypatch):
    """A FIFO that appears between the check and the open is refused, not waited on."""
    path = tmp_path / 'ledger'
    real_lstat_at = _safe_write.lstat_at
    calls = []

    def lstat_then_swap(dir_fd, name):
        result = real_lstat_at(dir_fd, name)
        if not calls:
            os.mkfifo(path)
        calls.append(name)
        return result

    monkeypatch.setattr(_safe_write, 'lstat_at', lstat_then_swap)
    with pytest.raises(UnsafeDestination, match='is a FIFO'):
        os.close(append_open(str(path)))
    assert stat.S_ISFIFO(os.lstat(path).st_mode)
