# Copyright (c) Dihya ops maintainers
# GNU General Public License v3.0+ (see LICENSES/GPL-3.0-or-later.txt or https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later

"""Tests of the purge engine, on real files below pytest's tmp_path."""

from __future__ import annotations

import contextlib
import os
import time

import pytest

from ansible_collections.dihya.ops.plugins.module_utils import _purge
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
    real_rmdir = os.rmdir

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
    top = []

    def scandir(fd):
        if top:
            raise PermissionError(13, 'Permission denied')
        top.append(fd)
        return real_scandir(fd)

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
        assert purger._walk(fd, str(tmp_path), 0, device + 1, summary) is False  # pylint: disable=protected-access
    finally:
        os.close(fd)
    assert summary.other_filesystems == 1
    assert (tmp_path / 'sub').is_dir()


def test_top_directory_open_failures(tmp_path, monkeypatch):
    other = tmp_path / 'other'
    other.mkdir()
    purger = Purger(PurgeSpec(age=0))
    real_lstat = os.lstat
    monkeypatch.setattr(_purge.os, 'lstat', lambda path: real_lstat(other))
    with pytest.raises(PurgeError, match='changed while it was being opened'):
        purger.purge(str(tmp_path))

    def refuse(path, flags, dir_fd=None):
        raise PermissionError(13, 'Permission denied')

    monkeypatch.setattr(_purge.os, 'open', refuse)
    with pytest.raises(PurgeError, match='cannot open .*: permission denied'):
        purger.purge(str(tmp_path))


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
