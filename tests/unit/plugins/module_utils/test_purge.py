# Copyright (c) Dihya ops maintainers
# GNU General Public License v3.0+ (see LICENSES/GPL-3.0-or-later.txt or https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later

"""Tests of the purge engine, on real files below pytest's tmp_path."""

from __future__ import annotations

import contextlib
import json
import os
import pathlib
import shutil
import subprocess
import sys
import tempfile
import threading
import time

import pytest

from ansible_collections.dihya.ops.plugins.module_utils import _purge, _purge_paths
from ansible_collections.dihya.ops.plugins.module_utils._purge import (
    PurgeError,
    Purger,
    PurgeSpec,
    display,
    is_critical,
    parse_age,
    resolve_path,
)
from ansible_collections.dihya.ops.tests.unit.plugins.modules.utils import OLD, make

DAY = 86400


def age_dir(path):
    os.utime(path, (OLD, OLD))


def purge(root, **options):
    options.setdefault('age', 7 * DAY)
    purger = Purger(PurgeSpec(**options))
    purger.purge(str(root))
    return purger


@pytest.mark.parametrize('value, expected', [
    ('7d', 7 * DAY), ('12h', 43200), ('30m', 1800), ('90s', 90), ('1w', 604800), ('1d12h', DAY + 43200),
    (' 2H ', 7200), ('3600', 3600), (3600, 3600), (0, 0),
])
def test_parse_age(value, expected):
    assert parse_age(value) == expected


@pytest.mark.parametrize('value', ['', '7 days', 'd', '1.5h', '-1d', '7x', True, None, 1.5])
def test_parse_age_rejects(value):
    with pytest.raises(PurgeError, match='age'):
        parse_age(value)


def test_parse_age_negative_int():
    with pytest.raises(PurgeError, match='must not be negative'):
        parse_age(-5)


@pytest.mark.parametrize('path, critical', [
    ('/', True), ('/etc', True), ('/lib', True), ('/lib64', True), ('/var', True), ('/opt', True),
    ('/var/tmp', False), ('/lib/foo', False), ('/library', True), ('/tmp', False),
])
def test_is_critical(path, critical):
    assert is_critical(path) is critical


def test_resolve_path_inside_root(tmp_path):
    target = tmp_path / 'app'
    target.mkdir()
    assert resolve_path(str(target), [str(tmp_path)]) == os.path.realpath(target)
    assert resolve_path(str(tmp_path), [str(tmp_path)]) == os.path.realpath(tmp_path)


@pytest.mark.parametrize('path', ['/', '//', '/etc', '/etc/', '/usr/../etc', '/lib64', '/var'])
def test_resolve_path_refuses_critical(path):
    with pytest.raises(PurgeError, match='critical system directory'):
        resolve_path(path, ['/'])


def test_resolve_path_refuses_outside_and_dotdot(tmp_path):
    root = tmp_path / 'root'
    root.mkdir()
    (tmp_path / 'other').mkdir()
    with pytest.raises(PurgeError, match='not inside any of allowed_roots'):
        resolve_path(str(tmp_path / 'other'), [str(root)])
    with pytest.raises(PurgeError, match='not inside any of allowed_roots'):
        resolve_path(str(root / '..' / 'other'), [str(root)])
    with pytest.raises(PurgeError, match='not inside any of allowed_roots'):
        resolve_path(str(tmp_path / 'rootx'), [str(root)])


def test_resolve_path_refuses_symlinks(tmp_path):
    root = tmp_path / 'root'
    (root / 'real').mkdir(parents=True)
    (root / 'link').symlink_to(root / 'real')
    with pytest.raises(PurgeError, match='symbolic link'):
        resolve_path(str(root / 'link'), [str(root)])
    outside = tmp_path / 'outside'
    (outside / 'sub').mkdir(parents=True)
    (root / 'escape').symlink_to(outside)
    with pytest.raises(PurgeError, match='not inside'):
        resolve_path(str(root / 'escape' / 'sub'), [str(root)])


@pytest.mark.parametrize('path, roots, message', [
    ('relative/dir', ['/tmp'], 'must be absolute'),
    ('/tmp/x', [], 'at least one directory'),
    ('/tmp/x', ['tmp'], 'allowed root'),
])
def test_resolve_path_bad_input(path, roots, message):
    with pytest.raises(PurgeError, match=message):
        resolve_path(path, roots)


def test_spec_validation():
    with pytest.raises(PurgeError) as exc:
        Purger(PurgeSpec(age=-1, age_stamp='ctime', file_type='dir', include=(), min_size=-1, max_depth=-1, sample_size=-1))
    for word in ('age must', 'age_stamp', 'file_type', 'include', 'min_size', 'max_depth', 'sample_size'):
        assert word in str(exc.value)


def test_old_files_removed_new_kept(tmp_path):
    old = make(tmp_path / 'old.tmp', b'12345')
    new = make(tmp_path / 'new.tmp', old=False)
    deep = make(tmp_path / 'a' / 'b' / 'deep.tmp', b'123')
    purger = purge(tmp_path)
    assert not old.exists() and not deep.exists()
    assert new.exists()
    result = purger.result()
    assert result['changed'] is True
    assert result['files_removed'] == 2
    assert result['bytes_freed'] == 8
    assert result['dirs_removed'] == 0
    assert sorted(result['sample']) == sorted([str(old), str(deep)])
    assert result['paths'] == [dict(path=str(tmp_path), exists=True, files_removed=2, bytes_freed=8, dirs_removed=0,
                                    skipped_symlinks=0, other_filesystems=0, errors=0)]


def test_atime_stamp(tmp_path):
    path = make(tmp_path / 'f', old=False)
    os.utime(path, (OLD, time.time()))
    purge(tmp_path, age_stamp='mtime')
    assert path.exists()
    purge(tmp_path, age_stamp='atime')
    assert not path.exists()


def test_include_exclude(tmp_path):
    log = make(tmp_path / 'app.log')
    kept_log = make(tmp_path / 'keep.log')
    other = make(tmp_path / 'data.bin')
    protected = make(tmp_path / 'cache.keep' / 'inside.log')
    purge(tmp_path, include=('*.log',), exclude=('keep.*', '*.keep'))
    assert not log.exists()
    assert kept_log.exists() and other.exists() and protected.exists()


def test_min_size(tmp_path):
    small = make(tmp_path / 'small', b'x')
    big = make(tmp_path / 'big', b'x' * 100)
    purger = purge(tmp_path, min_size=50)
    assert small.exists() and not big.exists()
    assert purger.bytes_freed == 100


def test_max_depth(tmp_path):
    top = make(tmp_path / 'top')
    one = make(tmp_path / 'l1' / 'one')
    two = make(tmp_path / 'l1' / 'l2' / 'two')
    purge(tmp_path, max_depth=1)
    assert not top.exists() and not one.exists() and two.exists()
    purge(tmp_path, max_depth=0)
    assert two.exists()
    purge(tmp_path)
    assert not two.exists()


def test_remove_empty_dirs(tmp_path):
    make(tmp_path / 'a' / 'b' / 'f')
    make(tmp_path / 'keep' / 'new', old=False)
    (tmp_path / 'fresh').mkdir()
    for directory in ('a/b', 'a', 'keep'):
        age_dir(tmp_path / directory)
    purger = purge(tmp_path, remove_empty_dirs=True)
    assert not (tmp_path / 'a').exists()
    assert (tmp_path / 'keep' / 'new').exists()
    assert (tmp_path / 'fresh').is_dir()
    assert tmp_path.is_dir()
    assert purger.dirs_removed == 2
    assert str(tmp_path / 'a') + '/' in purger.sample


def test_empty_top_dir_is_kept(tmp_path):
    age_dir(tmp_path)
    purger = purge(tmp_path, remove_empty_dirs=True)
    assert tmp_path.is_dir()
    assert purger.changed is False


def test_check_mode_counts_like_a_real_run(tmp_path):
    make(tmp_path / 'x' / 'y' / 'f1', b'abc')
    make(tmp_path / 'x' / 'f2', b'de')
    make(tmp_path / 'f3', old=False)
    age_dir(tmp_path / 'x' / 'y')
    age_dir(tmp_path / 'x')
    before = sorted(str(path) for path in tmp_path.rglob('*'))
    checked = purge(tmp_path, check_mode=True, remove_empty_dirs=True).result()
    assert sorted(str(path) for path in tmp_path.rglob('*')) == before
    real = purge(tmp_path, remove_empty_dirs=True).result()
    assert checked == real
    assert real['files_removed'] == 2 and real['dirs_removed'] == 2 and real['bytes_freed'] == 5
    again = purge(tmp_path, remove_empty_dirs=True).result()
    assert again['changed'] is False


def test_sample_is_bounded(tmp_path):
    for index in range(5):
        make(tmp_path / f'f{index}')
    purger = purge(tmp_path, sample_size=2)
    assert purger.files_removed == 5
    assert len(purger.sample) == 2
    assert purge(tmp_path, sample_size=0).sample == []


def test_symlinks_not_followed(tmp_path):
    root = tmp_path / 'root'
    outside = tmp_path / 'outside'
    target = make(outside / 'precious')
    age_dir(outside)
    make(root / 'junk')
    (root / 'dirlink').symlink_to(outside)
    (root / 'filelink').symlink_to(target)
    purger = purge(root, remove_empty_dirs=True)
    assert target.exists()
    assert (root / 'dirlink').is_symlink() and (root / 'filelink').is_symlink()
    assert purger.skipped_symlinks == 2
    assert purger.files_removed == 1


def test_file_type_any_removes_links_not_targets(tmp_path):
    root = tmp_path / 'root'
    outside = tmp_path / 'outside'
    target = make(outside / 'precious')
    root.mkdir()
    (root / 'dirlink').symlink_to(outside)
    (root / 'newlink').symlink_to(target)
    fifo = root / 'fifo'
    os.mkfifo(fifo)
    for name in ('dirlink', 'fifo'):
        os.utime(root / name, (OLD, OLD), follow_symlinks=False)
    purger = purge(root, file_type='any')
    assert not os.path.lexists(root / 'dirlink') and not os.path.lexists(fifo)
    assert (root / 'newlink').is_symlink()
    assert target.exists()
    assert purger.files_removed == 2 and purger.bytes_freed == 0
    assert purger.skipped_symlinks == 1
    os.mkfifo(fifo)
    os.utime(fifo, (OLD, OLD))
    assert purge(root).files_removed == 0


@pytest.mark.parametrize('name', ['; rm -rf x', '$(touch y)', 'line\nbreak', '`id`', '-rf', '*', ' lead space', 'quote\'"'])
def test_hostile_names_are_plain_names(tmp_path, name, monkeypatch):
    monkeypatch.chdir(tmp_path)
    root = tmp_path / 'root'
    victim = make(tmp_path / 'x' / 'keep')
    hostile = make(root / name)
    bystander = make(root / 'bystander', old=False)
    purger = purge(root)
    assert not os.path.lexists(hostile)
    assert bystander.exists() and victim.exists()
    assert not (tmp_path / 'y').exists() and not (root / 'y').exists()
    assert purger.sample == [str(hostile)]


def test_undecodable_name(tmp_path):
    raw = os.path.join(os.fsencode(tmp_path), b'bad\xff')
    with open(raw, 'wb') as handle:
        handle.write(b'x')
    os.utime(raw, (OLD, OLD))
    purger = purge(tmp_path)
    assert not os.path.lexists(raw)
    assert purger.sample == [str(tmp_path) + '/bad\ufffd']
    assert display(str(tmp_path)) == str(tmp_path)


def test_swap_race_with_symlink(tmp_path):
    """A subdirectory replaced by a symbolic link after it was examined is not descended."""
    root = tmp_path / 'root'
    outside = tmp_path / 'outside'
    precious = make(outside / 'precious')
    make(root / 'sub' / 'junk')
    swapped = []

    def swap(dir_fd, name, path):
        assert os.path.basename(path) == name
        if name == 'sub':
            os.rename(root / 'sub', tmp_path / 'moved')
            (root / 'sub').symlink_to(outside)
            swapped.append(path)

    purger = Purger(PurgeSpec(age=DAY, remove_empty_dirs=True), before_descend=swap)
    purger.purge(str(root))
    assert swapped == [str(root / 'sub')]
    assert precious.exists()
    assert (tmp_path / 'moved' / 'junk').exists()
    result = purger.result()
    assert result['files_removed'] == 0
    assert result['error_count'] == 1
    assert result['errors'][0]['path'] == str(root / 'sub')
    assert result['errors'][0]['error'].startswith('not descended:')
    assert result['paths'][0]['errors'] == 1


def test_swap_race_with_other_directory(tmp_path):
    """A subdirectory replaced by another directory is detected by its inode and not descended."""
    root = tmp_path / 'root'
    make(root / 'sub' / 'junk')
    other = make(tmp_path / 'other' / 'keep')

    def swap(dir_fd, name, path):
        os.rename(root / 'sub', tmp_path / 'moved')
        os.rename(tmp_path / 'other', root / 'sub')

    purger = Purger(PurgeSpec(age=DAY), before_descend=swap)
    purger.purge(str(root))
    assert (root / 'sub' / 'keep').exists() and not other.exists()
    assert purger.errors == [{'path': str(root / 'sub'), 'error': 'not descended: the directory was replaced during the walk'}]


def test_entries_vanishing_during_the_walk(tmp_path):
    root = tmp_path / 'root'
    make(root / 'sub' / 'junk')
    age_dir(root / 'sub')

    def vanish(dir_fd, name, path):
        os.unlink(root / 'sub' / 'junk')
        os.rmdir(root / 'sub')

    purger = Purger(PurgeSpec(age=DAY), before_descend=vanish)
    purger.purge(str(root))
    assert purger.result()['error_count'] == 0


def test_missing_path_and_not_a_directory(tmp_path):
    purger = Purger(PurgeSpec(age=DAY))
    summary = purger.purge(str(tmp_path / 'missing'))
    assert summary.exists is False
    make(tmp_path / 'file')
    with pytest.raises(PurgeError, match='is not a directory'):
        purger.purge(str(tmp_path / 'file'))


def test_errors_are_recorded_not_raised(tmp_path, monkeypatch):
    """Permission errors cannot be produced as root; stand in for the kernel's refusal."""
    make(tmp_path / 'locked')
    make(tmp_path / 'sub' / 'inner')
    age_dir(tmp_path / 'sub')
    real_unlink = os.unlink

    def refuse_unlink(name, *, dir_fd=None):
        if name == 'locked':
            raise PermissionError(1, 'Operation not permitted')
        real_unlink(name, dir_fd=dir_fd)

    def refuse_rmdir(name, *, dir_fd=None):
        raise PermissionError(13, 'Permission denied')

    monkeypatch.setattr(_purge.os, 'unlink', refuse_unlink)
    monkeypatch.setattr(_purge.os, 'rmdir', refuse_rmdir)
    monkeypatch.setattr(_purge, 'MAX_ERRORS', 1)
    purger = purge(tmp_path, remove_empty_dirs=True)
    assert purger.files_removed == 1
    assert purger.error_count == 2
    assert len(purger.errors) == 1
    assert purger.errors[0]['error'] in ('operation not permitted', 'permission denied')


def test_vanished_entries_are_not_errors(tmp_path, monkeypatch):
    make(tmp_path / 'f')
    make(tmp_path / 'sub' / 'g')
    age_dir(tmp_path / 'sub')

    def gone(name, *, dir_fd=None):
        raise FileNotFoundError(2, 'No such file or directory')

    monkeypatch.setattr(_purge.os, 'unlink', gone)
    monkeypatch.setattr(_purge.os, 'rmdir', gone)
    purger = purge(tmp_path, remove_empty_dirs=True)
    assert purger.error_count == 0
    assert purger.files_removed == 0 and purger.dirs_removed == 0


def test_unreadable_directory_is_an_error(tmp_path, monkeypatch):
    make(tmp_path / 'sub' / 'g')
    real_scandir = os.scandir
    sub = os.stat(tmp_path / 'sub')

    def scandir(target):
        if isinstance(target, int) and (os.fstat(target).st_dev, os.fstat(target).st_ino) == (sub.st_dev, sub.st_ino):
            raise PermissionError(13, 'Permission denied')
        return real_scandir(target)

    monkeypatch.setattr(_purge.os, 'scandir', scandir)
    purger = purge(tmp_path)
    assert purger.errors == [{'path': str(tmp_path / 'sub'), 'error': 'permission denied'}]


def test_entry_vanishing_or_unusable_during_the_walk(tmp_path, monkeypatch):
    """An entry gone between listing and stat counts as gone; one that cannot be examined is an error."""
    (tmp_path / 'gone').write_text('x')
    (tmp_path / 'unusable').write_text('x')
    real_scandir = os.scandir
    failures = {'gone': FileNotFoundError(2, 'No such file or directory'), 'unusable': OSError(36, 'File name too long')}

    class RacingEntry:
        """A directory entry whose stat fails the way a racing change would make it fail."""

        def __init__(self, entry):
            self.name = entry.name
            self._entry = entry

        def stat(self, follow_symlinks=True):
            if self.name in failures:
                raise failures[self.name]
            return self._entry.stat(follow_symlinks=follow_symlinks)

    @contextlib.contextmanager
    def racing_scandir(fd):
        with real_scandir(fd) as entries:
            yield [RacingEntry(entry) for entry in entries]

    monkeypatch.setattr(_purge.os, 'scandir', racing_scandir)
    purger = purge(tmp_path, age=0, remove_empty_dirs=True)
    assert purger.error_count == 1 and purger.errors[0]['path'] == str(tmp_path / 'unusable')
    assert purger.files_removed == 0


def test_walk_stays_on_one_file_system(tmp_path):
    """Drive one step of the walk directly: a subdirectory on another device is not entered."""
    (tmp_path / 'sub').mkdir()
    purger = Purger(PurgeSpec(age=0))
    summary = _purge.PathSummary(path=str(tmp_path))
    fd = os.open(tmp_path, os.O_RDONLY | os.O_DIRECTORY)
    try:
        device = os.fstat(fd).st_dev
        info = os.fstat(fd)
        assert purger._walk(fd, str(tmp_path), 0, device + 1, summary, info, None) is False  # pylint: disable=protected-access
    finally:
        os.close(fd)
    assert summary.other_filesystems == 1
    assert (tmp_path / 'sub').is_dir()


def test_root_replaced_while_it_is_opened(tmp_path, monkeypatch):
    """The allowed root must be, once opened, the directory that was examined by its name."""
    other = tmp_path / 'other'
    other.mkdir()
    real_stat = os.stat
    monkeypatch.setattr(_purge.os, 'stat', lambda path, **kwargs: real_stat(other) if path == str(tmp_path) else real_stat(path, **kwargs))
    with pytest.raises(PurgeError, match='changed while it was being opened'):
        Purger(PurgeSpec(age=0)).purge(str(tmp_path))


def test_path_that_cannot_be_opened(tmp_path, monkeypatch):
    (tmp_path / 'sub').mkdir()
    real_open = os.open

    def refuse(path, flags, mode=0o777, *, dir_fd=None):
        if path == 'sub':
            raise PermissionError(13, 'Permission denied')
        return real_open(path, flags, mode, dir_fd=dir_fd)

    monkeypatch.setattr(_purge.os, 'open', refuse)
    with pytest.raises(PurgeError, match=r'cannot open .*/sub: permission denied'):
        Purger(PurgeSpec(age=0)).purge(str(tmp_path / 'sub'), [str(tmp_path)])


def test_unlink_failures_of_other_file_types(tmp_path, monkeypatch):
    """With file_type=any, a link that vanishes counts as gone and one that cannot be removed is an error."""
    (tmp_path / 'vanishing').symlink_to('/nonexistent')
    (tmp_path / 'stuck').symlink_to('/nonexistent')
    real_unlink = os.unlink

    def unlink(path, *args, **kwargs):
        if path == 'vanishing':
            raise FileNotFoundError(2, 'No such file or directory')
        if path == 'stuck':
            raise PermissionError(13, 'Permission denied')
        return real_unlink(path, *args, **kwargs)

    monkeypatch.setattr(_purge.os, 'unlink', unlink)
    purger = purge(tmp_path, age=0, file_type='any')
    assert purger.errors == [{'path': str(tmp_path / 'stuck'), 'error': 'permission denied'}]
    assert purger.files_removed == 0


# -- every path validated and opened before anything is removed ---------------------------------------------


def plant(root, names=('f1', 'f2')):
    """Old files in ``root``; return them."""
    return [make(root / name) for name in names]


BAD_PATHS = {
    'outside the roots': ('outside', 'not inside any of allowed_roots'),
    'a file': ('root/file', 'it is not a directory'),
    'a symbolic link': ('root/link', 'symbolic link'),
    'a critical path': ('/etc', 'critical system directory'),
    'a protected path': ('root/app', 'protected path'),
    'containing a protected path': ('root', 'contains the protected path'),
    'relative': ('relative/dir', 'must be absolute'),
}


@pytest.mark.parametrize('position', [0, 1, 2])
@pytest.mark.parametrize('kind', sorted(BAD_PATHS))
def test_one_bad_path_anywhere_removes_nothing(tmp_path, position, kind):
    root = tmp_path / 'root'
    good = [root / 'tmp', root / 'cache']
    files = [file for folder in good for file in plant(folder)]
    plant(tmp_path / 'outside')
    make(root / 'file')
    (root / 'link').symlink_to(root / 'tmp')
    (root / 'app').mkdir()
    bad, message = BAD_PATHS[kind]
    bad = bad if bad.startswith(('/', 'relative')) else str(tmp_path / bad)
    paths = [str(path) for path in good]
    paths.insert(position, bad)
    purger = Purger(PurgeSpec(age=DAY))
    with pytest.raises(PurgeError, match=message):
        purger.prepare(paths, [str(root)], protected_paths=[str(root / 'app')])
    purger.close()
    assert all(file.exists() for file in files)
    assert purger.result()['files_removed'] == 0 and purger.summaries == []


def test_every_refusal_is_named(tmp_path):
    root = tmp_path / 'root'
    plant(root / 'tmp')
    make(root / 'file')
    with pytest.raises(PurgeError) as exc:
        Purger(PurgeSpec(age=DAY)).prepare([str(root / 'file'), str(root / 'tmp'), str(tmp_path)], [str(root)])
    assert str(root / 'file') in str(exc.value) and f'refusing to purge {tmp_path}:' in str(exc.value)
    assert (root / 'tmp' / 'f1').exists()


@pytest.mark.parametrize('position', [0, 1, 2])
@pytest.mark.parametrize('missing', ['tmp/gone', 'gone/deeper/still'])
def test_a_missing_path_anywhere_is_reported_not_an_error(tmp_path, position, missing):
    root = tmp_path / 'root'
    good = [root / 'tmp', root / 'cache']
    files = [file for folder in good for file in plant(folder)]
    paths = [str(path) for path in good]
    paths.insert(position, str(root / missing))
    with Purger(PurgeSpec(age=DAY)) as purger:
        purger.prepare(paths, [str(root)])
        purger.run()
    result = purger.result()
    assert not any(file.exists() for file in files)
    assert [summary['exists'] for summary in result['paths']] == [index != position for index in range(3)]
    assert result['files_removed'] == 4 and result['error_count'] == 0


# -- a component swapped between validation and use (issue: deletes outside allowed_roots) -------------------


def victim_tree(victim):
    """A directory shaped like / and like the purged path, full of old files that must survive."""
    names = ('precious', 'b/precious', 'b/c/precious', 'c/precious', 'a/b/c/precious', 'etc/passwd', 'b/c/etc/shadow')
    precious = [make(victim / name) for name in names]
    for directory in sorted({path.parent for path in precious}, key=lambda path: -len(path.parts)):
        age_dir(directory)
    return precious


def swap_component(component, how, victim, moved):
    """Put something else in place of ``component``: a symbolic link to the victim, or another directory."""
    os.rename(component, moved)
    if how == 'symlink':
        component.symlink_to(victim)
    elif how == 'symlink-relative':
        component.symlink_to(os.path.relpath(victim, component.parent))
    elif how == 'rename':
        os.rename(victim, component)
    else:
        raise AssertionError(how)


SPELLINGS = ['{root}/a/b/c', '{root}//a/b//c', '{root}/a/b/c/.', '{root}/a/./b/../b/c/', '{root}/a/b/c//']


@pytest.mark.parametrize('spelling', SPELLINGS)
@pytest.mark.parametrize('how', ['symlink', 'symlink-relative', 'rename'])
@pytest.mark.parametrize('swapped', ['a', 'a/b', 'a/b/c'])
def test_component_swapped_between_validation_and_use(tmp_path, swapped, how, spelling):
    root = tmp_path / 'allowed'
    victim = tmp_path / 'victim'
    big = plant(root / 'big', [f'f{index}' for index in range(20)])
    mine = make(root / 'a' / 'b' / 'c' / 'junk')
    precious = victim_tree(victim)
    component = root / swapped
    calls = []

    def swap(target):
        calls.append(target.path)
        if target.parts[-1] == 'c':
            swap_component(component, how, victim, tmp_path / 'moved')

    purger = Purger(PurgeSpec(age=DAY, remove_empty_dirs=True, file_type='any'), before_path=swap)
    with purger:
        purger.prepare([str(root / 'big'), spelling.format(root=root)], [str(root)])
        purger.run()
    result = purger.result()
    assert len(calls) == 2
    moved_victim = [component / path.relative_to(victim) for path in precious] if how == 'rename' else precious
    assert all(path.read_bytes() == b'x' for path in moved_victim)
    assert not any(path.exists() for path in big)
    assert (tmp_path / 'moved').is_dir()
    assert mine.relative_to(root / swapped).parts == () or (tmp_path / 'moved' / mine.relative_to(component)).exists()
    assert result['files_removed'] == 20 and result['error_count'] == 1
    assert result['errors'][0]['path'] == str(component)
    assert result['errors'][0]['error'].startswith('not purged: ' + str(component))
    assert 'nothing below it was touched' in result['errors'][0]['error']
    assert purger.swapped == [f'{spelling.format(root=root)}: ' + result['errors'][0]['error'].split('not purged: ')[1].split(' (it changed')[0]]
    assert result['paths'][1]['errors'] == 1 and result['paths'][1]['files_removed'] == 0


@pytest.mark.parametrize('how', ['symlink', 'rename'])
@pytest.mark.parametrize('target', ['', 'a/b/c'])
def test_allowed_root_swapped_between_validation_and_use(tmp_path, how, target):
    parent = tmp_path / 'srv'
    root = parent / 'allowed'
    victim = tmp_path / 'victim'
    plant(root / 'big')
    make(root / 'a' / 'b' / 'c' / 'junk')
    precious = victim_tree(victim)
    path = str(root / target) if target else str(root)
    first = str(root / 'big')

    def swap(current):
        if current.path == path:
            swap_component(root, how, victim, tmp_path / 'moved')

    with Purger(PurgeSpec(age=DAY, remove_empty_dirs=True), before_path=swap) as purger:
        purger.prepare([first, path] if target else [path], [str(root)])
        purger.run()
    result = purger.result()
    where = [root / item.relative_to(victim) for item in precious] if how == 'rename' else precious
    assert all(item.read_bytes() == b'x' for item in where)
    assert result['errors'][-1]['path'] == str(root)
    assert f'the allowed root {root} was replaced' in result['errors'][-1]['error']
    assert purger.swapped and (tmp_path / 'moved' / 'a' / 'b' / 'c' / 'junk').exists()


def test_parent_of_the_allowed_root_swapped(tmp_path):
    parent = tmp_path / 'srv'
    root = parent / 'allowed'
    plant(root / 'tmp')
    victim = tmp_path / 'victim'
    precious = [make(victim / 'allowed' / 'tmp' / 'precious')]

    def swap(current):
        swap_component(parent, 'symlink', victim, tmp_path / 'moved')

    with Purger(PurgeSpec(age=DAY), before_path=swap) as purger:
        purger.prepare([str(root / 'tmp')], [str(root)])
        purger.run()
    assert precious[0].exists() and purger.swapped
    assert purger.result()['errors'][0]['path'] == str(parent)


def test_component_swapped_while_validated(tmp_path, monkeypatch):
    """A component that becomes a link between resolving the path and opening it is refused at validation."""
    root = tmp_path / 'allowed'
    make(root / 'a' / 'b' / 'junk')
    victim = tmp_path / 'victim'
    precious = make(victim / 'b' / 'precious')
    real_resolve = _purge_paths.resolve_path

    def resolve_then_swap(path, roots):
        resolved = real_resolve(path, roots)
        swap_component(root / 'a', 'symlink', victim, tmp_path / 'moved')
        return resolved

    monkeypatch.setattr(_purge_paths, 'resolve_path', resolve_then_swap)
    with pytest.raises(PurgeError, match=f'refusing to purge {root}/a/b: {root}/a is a symbolic link'):
        Purger(PurgeSpec(age=0)).purge(str(root / 'a' / 'b'), [str(root)])
    assert precious.exists()


@pytest.mark.parametrize('which', ['path', 'root', 'protected'])
def test_a_link_changing_while_it_is_resolved_is_a_refusal(tmp_path, monkeypatch, which):
    """realpath() reads each link: one renamed between its lstat and its readlink (a swap race) is refused, not a crash."""
    make(tmp_path / 'sub' / 'junk')
    names = {'path': str(tmp_path / 'sub'), 'root': str(tmp_path), 'protected': str(tmp_path / 'other')}
    real_realpath = os.path.realpath

    def racing_realpath(path, *args, **kwargs):
        if path == names[which]:
            raise FileNotFoundError(2, 'No such file or directory')
        return real_realpath(path, *args, **kwargs)

    monkeypatch.setattr(_purge_paths.os.path, 'realpath', racing_realpath)
    what = {'path': 'to purge', 'root': 'the allowed root', 'protected': 'the protected path'}[which]
    with pytest.raises(PurgeError, match=f'refusing {what} {names[which]}: it changed while its symbolic links were resolved'):
        Purger(PurgeSpec(age=0)).prepare([str(tmp_path / 'sub')], [str(tmp_path)], protected_paths=[names['protected']])
    assert (tmp_path / 'sub' / 'junk').exists()


def test_swap_race_in_a_thread(tmp_path):
    """A thread swaps a middle component for a link to the victim, again and again, while a big tree is walked."""
    root = tmp_path / 'allowed'
    victim = tmp_path / 'victim'
    precious = [make(victim / 'sub' / f'precious{index}') for index in range(5)]
    age_dir(victim / 'sub')
    stop = threading.Event()
    swaps = []

    def swapper():
        mid, real, link = root / 'mid', root / 'mid.real', root / 'mid.link'
        while not stop.is_set():
            try:
                link.symlink_to(victim)
                os.rename(mid, real)
                os.rename(link, mid)  # mid is now the link
                swaps.append(1)
                time.sleep(0.0005)
                os.rename(mid, link)
                os.rename(real, mid)  # mid is the real directory again
                link.unlink()
            except FileNotFoundError:
                pass
            time.sleep(0.0005)  # let the walk run between swaps (the GIL)

    deadline = time.monotonic() + 3
    outcomes = {'purged': 0, 'reported': 0, 'refused': 0}
    rounds = 0
    while rounds < 3 or (time.monotonic() < deadline and rounds < 30):
        rounds += 1
        plant(root / 'big' / 'x', [f'f{index}' for index in range(200)])
        plant(root / 'big' / 'y', [f'f{index}' for index in range(200)])
        make(root / 'mid' / 'sub' / 'junk')  # mid is the real directory between rounds
        thread = threading.Thread(target=swapper)
        stop.clear()
        thread.start()
        try:
            with Purger(PurgeSpec(age=DAY, remove_empty_dirs=True)) as purger:
                try:
                    purger.prepare([str(root / 'big'), str(root / 'mid' / 'sub')], [str(root)])
                except PurgeError:
                    outcomes['refused'] += 1
                    continue
                purger.run()
                outcomes['reported' if purger.swapped else 'purged'] += 1
        finally:
            stop.set()
            thread.join(5)
            assert not thread.is_alive()
        # Put the real directory back for the next round, whatever state the swapper left.
        if (root / 'mid').is_symlink():
            (root / 'mid').unlink()
        if (root / 'mid.real').is_dir():
            os.rename(root / 'mid.real', root / 'mid')
        if (root / 'mid.link').is_symlink():
            (root / 'mid.link').unlink()
        assert all(path.exists() for path in precious), outcomes
    assert sum(outcomes.values()) == rounds and swaps
    assert all(path.read_bytes() == b'x' for path in precious)


# -- overlapping paths are walked once, check mode predicts the real run -------------------------------------


def overlapping_tree(root):
    make(root / 'a' / 'f1', b'1')
    make(root / 'a' / 'b' / 'f2', b'22')
    make(root / 'a' / 'b' / 'c' / 'f3', b'333')
    make(root / 'a' / 'b' / 'new', old=False)
    make(root / 'a' / 'd' / 'f4', b'4444')
    for directory in ('a/b/c', 'a/b', 'a/d', 'a'):
        age_dir(root / directory)


def run_both(tmp_path, build, paths, roots, **options):
    """Check mode, then a real run, on the same tree; return both results (the tree must not change in between)."""
    build()
    before = sorted((str(path), path.lstat().st_mtime) for path in tmp_path.rglob('*'))
    results = []
    for check_mode in (True, False):
        with Purger(PurgeSpec(age=DAY, check_mode=check_mode, **options)) as purger:
            purger.prepare(paths, roots)
            purger.run()
        results.append(purger.result())
        if check_mode:
            assert sorted((str(path), path.lstat().st_mtime) for path in tmp_path.rglob('*')) == before
    return results


@pytest.mark.parametrize('remove_empty_dirs', [False, True])
@pytest.mark.parametrize('max_depth', [None, 0, 1, 2])
@pytest.mark.parametrize('paths', [
    ['a'], ['a', 'a'], ['a/', 'a'], ['a', 'a/b'], ['a/b', 'a'], ['a/b/c', 'a/b', 'a'], ['a', 'a/./b/..'], ['a/b', 'a/d', 'a', 'a/b/c'],
])
def test_overlapping_paths_count_each_file_once(tmp_path, paths, max_depth, remove_empty_dirs):
    root = tmp_path / 'root'
    checked, real = run_both(tmp_path, lambda: overlapping_tree(root), [str(root / path) for path in paths], [str(root)],
                             max_depth=max_depth, remove_empty_dirs=remove_empty_dirs)
    for result in (checked, real):
        assert result['error_count'] == 0
        assert len(set(result['sample'])) == len(result['sample'])
    assert checked == real
    assert (root / 'a' / 'b' / 'new').exists()
    for path in paths:
        assert (root / path).is_dir(), 'a directory given in paths is never removed'
    if max_depth is None:
        assert real['files_removed'] == 4 and real['bytes_freed'] == 10


def test_overlap_through_two_roots(tmp_path):
    root = tmp_path / 'root'
    checked, real = run_both(tmp_path, lambda: overlapping_tree(root), [str(root / 'a'), str(root / 'a' / 'b')],
                             [str(root), str(root / 'a')])
    assert checked == real and real['files_removed'] == 4


def chattr(flag, *paths):
    if not shutil.which('chattr'):
        pytest.skip('chattr is not installed')
    completed = subprocess.run(['chattr', flag, *map(str, paths)], capture_output=True, check=False)
    if completed.returncode != 0:
        pytest.skip(f'this file system does not take chattr {flag}: {completed.stderr.decode().strip()}')


@pytest.fixture
def attributes():
    """chattr flags set by a test, cleared at teardown so the tree can be removed."""
    changed = []

    def set_flag(flag, *paths):
        chattr('+' + flag, *paths)
        changed.append((flag, paths))

    yield set_flag
    for flag, paths in reversed(changed):
        subprocess.run(['chattr', '-' + flag, *map(str, paths)], check=False)


def attribute_tree(root):
    make(root / 'plain' / 'f', b'1')
    make(root / 'plain' / 'immutable', b'22')
    make(root / 'plain' / 'append-only', b'333')
    make(root / 'appendable' / 'inside', b'4')
    make(root / 'frozen' / 'inside', b'5')
    make(root / 'frozen-empty' / 'old', b'6')
    make(root / 'kept' / 'sub' / 'f', b'7')
    for directory in ('plain', 'appendable', 'frozen', 'frozen-empty', 'kept/sub', 'kept'):
        age_dir(root / directory)


@pytest.mark.parametrize('file_type', ['file', 'any'])
def test_check_mode_predicts_attribute_refusals(tmp_path, attributes, file_type):
    root = tmp_path / 'root'

    def build():
        attribute_tree(root)
        os.mkfifo(root / 'plain' / 'fifo')
        os.utime(root / 'plain' / 'fifo', (OLD, OLD))
        attributes('i', root / 'plain' / 'immutable', root / 'frozen')
        attributes('a', root / 'plain' / 'append-only', root / 'appendable')
        attributes('i', root / 'kept' / 'sub')

    checked, real = run_both(tmp_path, build, [str(root)], [str(root)], remove_empty_dirs=True, file_type=file_type)
    assert checked == real
    refused = {error['path']: error['error'] for error in real['errors']}
    assert refused[str(root / 'plain' / 'immutable')] == 'operation not permitted'
    assert refused[str(root / 'plain' / 'append-only')] == 'operation not permitted'
    assert refused[str(root / 'appendable' / 'inside')] == 'operation not permitted'
    assert refused[str(root / 'frozen' / 'inside')] == 'operation not permitted'
    assert (root / 'plain' / 'immutable').exists() and (root / 'frozen' / 'inside').exists()
    assert refused[str(root / 'kept' / 'sub' / 'f')] == 'operation not permitted'
    assert real['files_removed'] == (3 if file_type == 'any' else 2)


@pytest.fixture
def mounts():
    """Mount with mount(8) for a test; unmounted at teardown."""
    mounted = []

    def mount(*args):
        if os.geteuid() != 0 or not shutil.which('mount'):
            pytest.skip('mounting needs root and mount(8)')
        completed = subprocess.run(['mount', *map(str, args)], capture_output=True, check=False)
        if completed.returncode != 0:
            pytest.skip(f'cannot mount here: {completed.stderr.decode().strip()}')
        mounted.append(str(args[-1]))

    yield mount
    for point in reversed(mounted):
        subprocess.run(['umount', '-l', point], check=False)


def test_check_mode_predicts_a_read_only_mount(tmp_path, mounts):
    point = tmp_path / 'ro'
    point.mkdir()

    def build():
        mounts('-t', 'tmpfs', '-o', 'size=1m', 'tmpfs', point)
        make(point / 'f', b'1')
        make(point / 'sub' / 'g', b'2')
        age_dir(point / 'sub')
        mounts('-o', 'remount,ro', point)

    checked, real = run_both(tmp_path, build, [str(point)], [str(tmp_path)], remove_empty_dirs=True)
    assert checked == real
    assert real['files_removed'] == 0 and real['error_count'] == 2
    assert {error['error'] for error in real['errors']} == {'read-only file system'}


@pytest.mark.parametrize('kind', ['tmpfs', 'bind', 'bind-ro'])
def test_mount_points_below_are_not_entered(tmp_path, mounts, kind):
    root = tmp_path / 'root'
    elsewhere = tmp_path / 'elsewhere'

    def build():
        make(root / 'f')
        (root / 'mnt').mkdir()
        precious = make(elsewhere / 'precious')
        if kind == 'tmpfs':
            mounts('-t', 'tmpfs', '-o', 'size=1m', 'tmpfs', root / 'mnt')
            make(root / 'mnt' / 'precious')
        else:
            mounts('--bind', elsewhere, root / 'mnt')
            if kind == 'bind-ro':
                mounts('-o', 'remount,bind,ro', root / 'mnt')
        return precious

    checked, real = run_both(tmp_path, build, [str(root)], [str(root)], remove_empty_dirs=True)
    assert checked == real
    assert real['files_removed'] == 1 and real['paths'][0]['other_filesystems'] == 1
    assert (root / 'mnt' / 'precious').exists()


def test_critical_directory_bind_mounted_inside_is_not_entered(tmp_path, mounts):
    root = tmp_path / 'root'
    (root / 'etc').mkdir(parents=True)
    mounts('--bind', '/etc', root / 'etc')
    # Read-only, so that even a broken engine could not remove anything from the machine's /etc.
    mounts('-o', 'remount,bind,ro', root / 'etc')
    before = sorted(os.listdir('/etc'))
    with Purger(PurgeSpec(age=0, remove_empty_dirs=True)) as purger:
        purger.prepare([str(root)], [str(root)])
        purger.run()
    assert sorted(os.listdir('/etc')) == before
    assert purger.files_removed == 0
    assert purger.errors == [{'path': str(root / 'etc'), 'error': 'not descended: it is /etc, which is never purged'}]
    with pytest.raises(PurgeError, match=r'it is the critical system directory /etc'):
        Purger(PurgeSpec(age=0, check_mode=True)).purge(str(root / 'etc'), [str(root)])


NOBODY = 65534

AS_NOBODY = """
import json, os, sys
# Import first: the interpreter's own files may not be readable by the user.
from ansible_collections.dihya.ops.plugins.module_utils import _purge
from ansible_collections.dihya.ops.plugins.module_utils._purge import Purger, PurgeSpec
os.setgroups([]); os.setgid(%(uid)d); os.setuid(%(uid)d)
results = []
for check_mode in (True, False):
    with Purger(PurgeSpec(age=86400, check_mode=check_mode, remove_empty_dirs=True, file_type='any')) as purger:
        purger.prepare([sys.argv[1]], [sys.argv[1]])
        purger.run()
    results.append(purger.result())
print(json.dumps(results))
"""


def test_check_mode_predicts_permission_refusals_of_another_user(tmp_path):
    """As a user without rights on part of the tree (a real run as nobody), check mode reports the same refusals."""
    if os.geteuid() != 0:
        pytest.skip('needs root to run a child as nobody')
    base = pathlib.Path(tempfile.mkdtemp(prefix='purge-nobody-', dir='/tmp'))
    try:
        os.chmod(base, 0o755)
        root = base / 'root'
        make(root / 'open' / 'f', b'1')
        make(root / 'closed' / 'f', b'22')
        make(root / 'sticky' / 'roots', b'333')
        make(root / 'sticky' / 'mine', b'4')
        make(root / 'sticky' / 'dir-of-root' / 'x', b'5')
        make(root / 'unreadable' / 'f', b'6')
        (root / 'open' / 'empty').mkdir()
        for path in ('open', 'sticky/mine'):
            os.chown(root / path, NOBODY, NOBODY)
        for directory, mode in (('root', 0o777), ('open', 0o755), ('closed', 0o755), ('sticky', 0o1777), ('unreadable', 0o700)):
            path = base / directory if directory == 'root' else root / directory
            os.chmod(path, mode)
        for directory in ('open/empty', 'open', 'closed', 'sticky/dir-of-root', 'sticky', 'unreadable'):
            age_dir(root / directory)
        collections = os.path.join(os.path.dirname(_purge.__file__), *(['..'] * 5))
        completed = subprocess.run(
            [sys.executable, '-c', AS_NOBODY % {'uid': NOBODY}, str(root)],
            capture_output=True, check=False, timeout=60, env=dict(os.environ, PYTHONPATH=os.path.abspath(collections)),
        )
        assert completed.returncode == 0, completed.stderr.decode()
        checked, real = json.loads(completed.stdout)
        assert checked == real
        refused = {error['path']: error['error'] for error in real['errors']}
        assert refused == {
            str(root / 'closed' / 'f'): 'permission denied',
            str(root / 'sticky' / 'roots'): 'operation not permitted',
            str(root / 'sticky' / 'dir-of-root' / 'x'): 'permission denied',
            str(root / 'unreadable'): 'not descended: permission denied',
        }
        assert not (root / 'open' / 'f').exists() and not (root / 'sticky' / 'mine').exists()
        assert not (root / 'open' / 'empty').exists()
        assert real['files_removed'] == 2
    finally:
        shutil.rmtree(base, ignore_errors=True)


# -- protected paths (the application's root, code, virtual environment, data) -------------------------------


def backend(tmp_path):
    root = tmp_path / 'srv' / 'backend'
    for folder in ('app/.git/objects/pack', 'venv/bin', 'data', 'tmp', 'cache/sessions'):
        (root / folder).mkdir(parents=True)
    precious = [make(root / 'app' / '.git' / 'objects' / 'pack' / 'pack-1.pack'), make(root / 'venv' / 'bin' / 'python'),
                make(root / 'data' / 'dihya.db')]
    junk = [make(root / 'tmp' / 'old'), make(root / 'cache' / 'sessions' / 'old')]
    protected = [str(root), str(root / 'app'), str(root / 'venv'), str(root / 'data')]
    return root, precious, junk, protected


@pytest.mark.parametrize('spelling, message', [
    ('{root}', 'it is the protected path'),
    ('{root}/', 'it is the protected path'),
    ('{root}/.', 'it is the protected path'),
    ('{root}//', 'it is the protected path'),
    ('{root}/tmp/..', 'it is the protected path'),
    ('{root}/app', 'it is the protected path'),
    ('{root}/app/', 'it is the protected path'),
    ('{root}/venv', 'it is the protected path'),
    ('{root}/data', 'it is the protected path'),
    ('{root}/tmp/../data', 'it is the protected path'),
    ('{root}/alias/data', 'it is the protected path'),
    ('{root}/..', 'contains the protected path'),
    ('{root}/../..', 'contains the protected path'),
])
@pytest.mark.parametrize('check_mode', [True, False])
def test_protected_paths_refused(tmp_path, spelling, message, check_mode):
    root, precious, junk, protected = backend(tmp_path)
    (root / 'alias').symlink_to(root)
    path = spelling.format(root=root)
    purger = Purger(PurgeSpec(age=0, check_mode=check_mode))
    with pytest.raises(PurgeError, match=message):
        purger.prepare([str(root / 'tmp'), path], [str(tmp_path)], protected_paths=protected)
    purger.close()
    assert all(item.exists() for item in precious + junk)


def test_protected_path_given_through_a_link(tmp_path):
    """The protected path is a link to the real folder (a release switch): the folder itself is protected."""
    root, dummy_precious, dummy_junk, dummy_protected = backend(tmp_path)
    releases = tmp_path / 'releases' / 'v5'
    make(releases / 'code.py')
    (root / 'current').symlink_to(releases)
    with pytest.raises(PurgeError, match=f'it is the protected path {root}/current'):
        Purger(PurgeSpec(age=0)).prepare([str(releases)], [str(tmp_path)], protected_paths=[str(root / 'current')])
    with pytest.raises(PurgeError, match=f'contains the protected path {root}/current'):
        Purger(PurgeSpec(age=0)).prepare([str(tmp_path / 'releases')], [str(tmp_path)], protected_paths=[str(root / 'current')])


def test_protected_path_identity_through_a_bind_mount(tmp_path, mounts):
    root, precious, dummy_junk, protected = backend(tmp_path)
    (tmp_path / 'view').mkdir()
    mounts('--bind', root / 'data', tmp_path / 'view')
    with pytest.raises(PurgeError, match=f'it is the protected path {root}/data'):
        Purger(PurgeSpec(age=0)).prepare([str(tmp_path / 'view')], [str(tmp_path)], protected_paths=protected)
    assert all(item.exists() for item in precious)


def test_inside_a_protected_path_is_allowed_and_force_overrides(tmp_path):
    root, precious, junk, protected = backend(tmp_path)
    with Purger(PurgeSpec(age=DAY)) as purger:
        purger.prepare([str(root / 'tmp'), str(root / 'cache')], [str(root)], protected_paths=protected)
        purger.run()
    assert not any(item.exists() for item in junk) and all(item.exists() for item in precious)
    with Purger(PurgeSpec(age=DAY)) as purger:
        purger.prepare([str(root / 'data')], [str(root)], protected_paths=protected, force=True)
        purger.run()
    assert not (root / 'data' / 'dihya.db').exists()
    assert (root / 'venv' / 'bin' / 'python').exists()


def test_protected_directory_moved_into_a_purged_one_is_not_entered(tmp_path):
    root, dummy_precious, dummy_junk, protected = backend(tmp_path)

    def move(target):
        os.rename(root / 'data', root / 'tmp' / 'data')

    with Purger(PurgeSpec(age=0, remove_empty_dirs=True), before_path=move) as purger:
        purger.prepare([str(root / 'tmp')], [str(root)], protected_paths=protected)
        purger.run()
    assert (root / 'tmp' / 'data' / 'dihya.db').exists()
    assert purger.errors == [{'path': str(root / 'tmp' / 'data'), 'error': f'not descended: it is {root}/data, which is never purged'}]


def test_protected_path_must_be_absolute(tmp_path):
    with pytest.raises(PurgeError, match="protected path 'data' must be absolute"):
        Purger(PurgeSpec(age=0)).prepare([str(tmp_path)], [str(tmp_path)], protected_paths=['data'])


# -- critical system directories, by name and by identity ----------------------------------------------------


def spellings(path):
    """Other ways to write a path: trailing slash, doubled slash, trailing /., a detour through .."""
    found = [path, path + '/', '/' + path, path + '/.', path + '//']
    if path != '/':
        found.append(f"{path}/../{path.rsplit('/', 1)[1]}")
    return found


@pytest.mark.parametrize('path', [*sorted(_purge.CRITICAL_PATHS), '/lib-anything', '/usr/anything', '/usr/local/anything'])
def test_every_critical_path_is_refused(path):
    assert is_critical(path)
    for spelling in spellings(path):
        with pytest.raises(PurgeError, match='critical system directory'):
            Purger(PurgeSpec(age=0, check_mode=True)).prepare([spelling], ['/'])


@pytest.mark.parametrize('path', ['/usr/lib/python3', '/usr/local/lib/python3.11', '/var/lib/app', '/var/log/app', '/var/tmp', '/tmp',
                                  '/srv/app', '/opt/app', '/home/user', '/usr/bin/x'])
def test_below_a_critical_path_is_not_critical(path):
    assert not is_critical(path)


@pytest.mark.parametrize('alias, real', [('/bin', '/usr/bin'), ('/sbin', '/usr/sbin'), ('/lib', '/usr/lib'), ('/lib64', '/usr/lib64')])
def test_merged_usr_aliases_are_the_same_critical_directory(alias, real):
    if not (os.path.isdir(alias) and os.path.isdir(real)):
        pytest.skip(f'{alias} or {real} does not exist here')
    identities = _purge.critical_identities()
    assert (os.stat(alias).st_dev, os.stat(alias).st_ino) in identities
    assert (os.stat(real).st_dev, os.stat(real).st_ino) in identities


@pytest.mark.parametrize('critical', ['/usr/bin', '/usr/lib', '/etc', '/usr/sbin'])
def test_critical_directory_under_another_name_is_refused(tmp_path, mounts, critical):
    """By identity: a bind mount of a critical directory inside the allowed root is refused as what it is."""
    view = tmp_path / 'root' / 'view'
    view.mkdir(parents=True)
    mounts('--bind', critical, view)
    with pytest.raises(PurgeError, match='it is the critical system directory /'):
        Purger(PurgeSpec(age=0, check_mode=True)).prepare([str(view)], [str(tmp_path / 'root')])
