# Copyright (c) Dihya ops maintainers
# GNU General Public License v3.0+ (see LICENSES/GPL-3.0-or-later.txt or https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later

"""Every writer of the collection against every kind of thing at its destination.

Writers: the rgpd export archive (with and without force, check mode too) and its decryption, the erasure ledger file, the health
and audit-delivery metrics files, the audit spool (records, rejected records and their reasons) and the
python_deps snapshot folder. Each is tried against nothing, a regular file, a character device, a FIFO, a socket,
symbolic links (to a file, to a directory, dangling) and a directory; what is refused is left exactly as it was.
"""

from __future__ import annotations

import json
import os
import pathlib
import stat
import sys

import pytest

from ansible_collections.dihya.ops.plugins.module_utils import _audit_spool as spooling
from ansible_collections.dihya.ops.plugins.module_utils import _rgpd
from ansible_collections.dihya.ops.plugins.module_utils._audit_delivery import SinkReport
from ansible_collections.dihya.ops.plugins.module_utils._health import CheckResult
from ansible_collections.dihya.ops.plugins.module_utils._metrics import MetricsError, check_metrics_path, write_health_metrics
from ansible_collections.dihya.ops.plugins.module_utils._metrics_delivery import write_delivery_metrics
from ansible_collections.dihya.ops.plugins.module_utils._pydeps import Pip, PyDepsError, Sources, take_snapshot
from ansible_collections.dihya.ops.plugins.module_utils._rgpd import Engine, RgpdError
from ansible_collections.dihya.ops.plugins.module_utils._rgpd_map import load_data_map_file
from ansible_collections.dihya.ops.tests.unit.plugins import rgpd_fixtures
from ansible_collections.dihya.ops.tests.unit.plugins.module_utils.safe_write_utils import (
    EXISTING,
    FOUND,
    KINDS,
    NOT_REGULAR,
    PRECIOUS,
    leftovers,
    make,
)
from ansible_collections.dihya.ops.tests.unit.plugins.rgpd_fixtures import DEMO_DATA_MAP

sqlite_template, pg_template, backend = rgpd_fixtures.make_fixtures('writers', kinds=('sqlite',))

KEY = b'pseudonym-key-for-the-rgpd-tests'
RESULTS = [CheckResult('healthz', 'http', True, 'ok', 'HTTP 200', latency_seconds=0.01, attempts=1)]
FORCES = pytest.mark.parametrize('force', [False, True], ids=['no-force', 'force'])


def accepted(kind, force):
    return kind == 'missing' or (kind == 'file' and force)


# ---------------------------------------------------------------------------
# rgpd export archive
# ---------------------------------------------------------------------------

@FORCES
@pytest.mark.parametrize('kind', KINDS)
def test_rgpd_export(backend, place, kind, force):
    thing = place(kind, 'export.zip')
    before = thing.state()
    with backend.open(read_only=True) as db:
        rgpd = Engine(db, load_data_map_file(DEMO_DATA_MAP), KEY)
        if accepted(kind, force):
            result = rgpd.export('acme', 3, str(thing.path), force=force)
            info = os.lstat(thing.path)
            assert stat.S_ISREG(info.st_mode) and stat.S_IMODE(info.st_mode) == 0o600
            assert result['archive']['size'] == info.st_size and thing.path.read_bytes()[:2] == b'PK'
        else:
            with pytest.raises(RgpdError, match=FOUND[kind]) as caught:
                rgpd.export('acme', 3, str(thing.path), force=force)
            assert str(thing.path) in str(caught.value)
            assert thing.state() == before
    assert leftovers(thing.path.parent, 'export.zip') == []


@FORCES
@pytest.mark.parametrize('kind', EXISTING)
def test_rgpd_export_in_check_mode_refuses_the_same(backend, place, kind, force):
    thing = place(kind, 'export.zip')
    before = thing.state()
    with backend.open(read_only=True) as db:
        rgpd = Engine(db, load_data_map_file(DEMO_DATA_MAP), KEY, check_mode=True)
        if accepted(kind, force):
            assert rgpd.export('acme', 3, str(thing.path), force=force)['changed'] is True
        else:
            with pytest.raises(RgpdError, match=FOUND[kind]):
                rgpd.export('acme', 3, str(thing.path), force=force)
    assert thing.state() == before


def test_rgpd_export_through_a_symlinked_directory_is_refused(backend, tmp_path):
    (tmp_path / 'real').mkdir()
    (tmp_path / 'linked').symlink_to(tmp_path / 'real')
    with backend.open(read_only=True) as db, pytest.raises(RgpdError, match='linked is a symbolic link'):
        Engine(db, load_data_map_file(DEMO_DATA_MAP), KEY).export('acme', 3, str(tmp_path / 'linked' / 'export.zip'))
    assert os.listdir(tmp_path / 'real') == []


@pytest.mark.parametrize('kind', NOT_REGULAR)
def test_rgpd_stale_temp_cleanup_removes_only_regular_files(backend, place, kind):
    """Something named like a temporary file of an export, but not a regular file, was not made by an export."""
    name = f'.export.zip{_rgpd.TEMP_MARKER}999999-deadbeef'
    thing = place(kind, name)
    before = thing.state()
    (thing.path.parent / f'.export.zip{_rgpd.TEMP_MARKER}999998-cafecafe').write_bytes(b'stale')
    assert _rgpd.clean_stale_temp_files(str(thing.path.parent / 'export.zip')) == [
        str(thing.path.parent / f'.export.zip{_rgpd.TEMP_MARKER}999998-cafecafe')]
    assert thing.state() == before


def test_rgpd_module_force_option(tmp_path, sqlite_template):
    """The module passes force through: an existing regular file needs it; a FIFO is refused even with it."""
    from ansible_collections.dihya.ops.plugins.modules import rgpd as module  # pylint: disable=import-outside-toplevel
    from ansible_collections.dihya.ops.tests.unit.plugins.modules.utils import run_module  # pylint: disable=import-outside-toplevel

    database = tmp_path / 'app.db'
    database.write_bytes(pathlib.Path(sqlite_template).read_bytes())
    (tmp_path / 'old.zip').write_bytes(PRECIOUS)
    os.mkfifo(tmp_path / 'fifo.zip')
    base = {'operation': 'export', 'database': str(database), 'data_map_file': DEMO_DATA_MAP, 'tenant': 'acme',
            'subject_id': '3', 'pseudonym_key': KEY.decode()}
    refused = run_module(module.main, {**base, 'dest': str(tmp_path / 'old.zip')})
    assert refused['failed'] and 'is an existing file' in refused['msg'] and (tmp_path / 'old.zip').read_bytes() == PRECIOUS
    done = run_module(module.main, {**base, 'dest': str(tmp_path / 'old.zip'), 'force': True})
    assert done['changed'] and (tmp_path / 'old.zip').read_bytes()[:2] == b'PK'
    fifo = run_module(module.main, {**base, 'dest': str(tmp_path / 'fifo.zip'), 'force': True})
    assert fifo['failed'] and 'is a FIFO' in fifo['msg'] and stat.S_ISFIFO(os.lstat(tmp_path / 'fifo.zip').st_mode)


@pytest.mark.parametrize('kind', KINDS)
def test_rgpd_decrypt_archive(backend, place, tmp_path, kind):
    """decrypt_archive writes a new file only: whatever is at its destination stays as it was."""
    key = '22' * 32
    encrypted = tmp_path / 'export.zip.enc'
    with backend.open(read_only=True) as db:
        Engine(db, load_data_map_file(DEMO_DATA_MAP), KEY).export('acme', 3, str(encrypted), encryption_key=key)
    thing = place(kind, 'plain.zip')
    before = thing.state()
    if kind == 'missing':
        _rgpd.decrypt_archive(str(encrypted), str(thing.path), key)
        assert thing.path.read_bytes()[:2] == b'PK' and stat.S_IMODE(os.lstat(thing.path).st_mode) == 0o600
    else:
        with pytest.raises(RgpdError, match=FOUND[kind]):
            _rgpd.decrypt_archive(str(encrypted), str(thing.path), key)
        assert thing.state() == before
    assert leftovers(thing.path.parent, 'plain.zip') == []


# ---------------------------------------------------------------------------
# Erasure ledger file
# ---------------------------------------------------------------------------

@pytest.mark.parametrize('kind', KINDS)
def test_ledger_file(place, kind):
    thing = place(kind, 'ledger.jsonl')
    before = thing.state()
    record = {'entry_id': 'e1', 'state': 'pending'}
    if kind in ('missing', 'file'):
        inode = os.lstat(thing.path).st_ino if kind == 'file' else None
        _rgpd.append_ledger_file(str(thing.path), record)
        data = thing.path.read_bytes()
        assert data == (PRECIOUS if kind == 'file' else b'') + b'{"entry_id":"e1","state":"pending"}\n'
        assert kind == 'missing' or os.lstat(thing.path).st_ino == inode, 'appended in place'
    else:
        with pytest.raises(RgpdError, match=f'ledger_file .*{FOUND[kind]}'):
            _rgpd.append_ledger_file(str(thing.path), record)
        assert thing.state() == before


@pytest.mark.parametrize('kind', ['fifo', 'device', 'symlink-file', 'directory'])
def test_erase_with_an_unsafe_ledger_file_erases_nothing(backend, place, kind):
    thing = place(kind, 'ledger.jsonl')
    before = thing.state()
    users = backend.query('SELECT count(*) FROM users')[0][0]
    with backend.open() as db, pytest.raises(RgpdError, match=FOUND[kind]):
        Engine(db, load_data_map_file(DEMO_DATA_MAP), KEY).erase('acme', 3, ledger_file=str(thing.path))
    assert backend.query('SELECT count(*) FROM users')[0][0] == users, 'the erasure is rolled back'
    assert thing.state() == before


# ---------------------------------------------------------------------------
# Metrics files
# ---------------------------------------------------------------------------

def _write_health(path):
    return write_health_metrics(str(path), RESULTS, 'acme')


def _write_delivery(path):
    return write_delivery_metrics(str(path), [SinkReport('siem', 'syslog', 'tcp://h:514', queued=1, sent=1)])


@pytest.mark.parametrize('writer', [_write_health, _write_delivery], ids=['health', 'audit-delivery'])
@pytest.mark.parametrize('kind', KINDS)
def test_metrics_file(place, kind, writer):
    """A metrics file is the collection's output: a regular file there is replaced, anything else refused."""
    thing = place(kind, 'metrics.prom')
    before = thing.state()
    if kind in ('missing', 'file'):
        writer(thing.path)
        info = os.lstat(thing.path)
        assert stat.S_ISREG(info.st_mode) and stat.S_IMODE(info.st_mode) == 0o644
        assert b'dihya_' in thing.path.read_bytes()
    else:
        for attempt in (lambda: check_metrics_path(str(thing.path)), lambda: writer(thing.path)):
            with pytest.raises(MetricsError, match=FOUND[kind] if kind != 'directory' else 'is a directory'):
                attempt()
        assert thing.state() == before
    assert leftovers(thing.path.parent, 'metrics.prom') == []


# ---------------------------------------------------------------------------
# Audit spool
# ---------------------------------------------------------------------------

@pytest.mark.parametrize('kind', EXISTING)
def test_spool_rejected_record_never_replaces_anything(tmp_path, kind):
    spool = spooling.Spool(str(tmp_path / 'spool'))
    item = spool.put('siem', {'message': 'hello'})
    rejected = tmp_path / 'spool' / 'siem' / 'rejected'
    rejected.mkdir()
    thing = make(kind, rejected / item.name, tmp_path / 'victims')
    before = thing.state()
    try:
        with pytest.raises(spooling.SpoolError, match=FOUND[kind]):
            spool.reject(item, 'refused by the sink')
        assert thing.state() == before
        assert os.path.exists(item.path), 'the record stays in the spool'
    finally:
        thing.close()


@pytest.mark.parametrize('kind', KINDS)
def test_spool_reason_file(tmp_path, kind):
    """The reason file is the spool's own: a regular one (an earlier interrupted move) is replaced, nothing else is."""
    spool = spooling.Spool(str(tmp_path / 'spool'))
    item = spool.put('siem', {'message': 'hello'})
    rejected = tmp_path / 'spool' / 'siem' / 'rejected'
    rejected.mkdir()
    thing = make(kind, rejected / f'{item.name}.reason', tmp_path / 'victims')
    before = thing.state()
    try:
        if kind in ('missing', 'file'):
            spool.reject(item, 'refused by the sink')
            assert thing.path.read_text() == 'refused by the sink\n'
            assert json.loads((rejected / item.name).read_text()) == {'message': 'hello'} and not os.path.exists(item.path)
        else:
            with pytest.raises(spooling.SpoolError, match=FOUND[kind]):
                spool.reject(item, 'refused by the sink')
            assert thing.state() == before and os.path.exists(item.path)
    finally:
        thing.close()


@pytest.mark.parametrize('kind', ['file', 'fifo', 'device', 'symlink-dir', 'symlink-dangling'])
def test_spool_directories_must_be_real(tmp_path, kind):
    """The spool and sink folders: a file, FIFO, device or link where one goes is refused and left alone."""
    for where in ('spool', 'sink'):
        root = tmp_path / where
        root.mkdir()
        target = root / 'spool' if where == 'spool' else root / 'spool' / 'siem'
        target.parent.mkdir(parents=True, exist_ok=True)
        thing = make(kind, target, tmp_path / f'victims-{where}')
        before = thing.state()
        try:
            with pytest.raises(spooling.SpoolError):
                spooling.Spool(str(root / 'spool')).put('siem', {'message': 'hello'})
            assert thing.state() == before
        finally:
            thing.close()


def test_spool_under_a_symlinked_folder_is_refused(tmp_path):
    (tmp_path / 'real').mkdir()
    (tmp_path / 'linked').symlink_to(tmp_path / 'real')
    (tmp_path / 'real' / 'spool' / 'siem').mkdir(parents=True)
    with pytest.raises(spooling.SpoolError, match='is a symbolic link'):
        spooling.Spool(str(tmp_path / 'linked' / 'spool')).put('siem', {'message': 'hello'})
    assert os.listdir(tmp_path / 'real' / 'spool' / 'siem') == []


def test_spool_records_never_replace_anything(tmp_path, monkeypatch):
    """Two records given the same name (a clock that stands still, the same random part) never overwrite each other."""
    spool = spooling.Spool(str(tmp_path / 'spool'))
    monkeypatch.setattr(spooling.time, 'time_ns', lambda: 1)
    monkeypatch.setattr(spooling.secrets, 'token_hex', lambda size: 'deadbeef')
    first = spool.put('siem', {'n': 1})
    with pytest.raises(spooling.SpoolError, match='is an existing file'):
        spool.put('siem', {'n': 2})
    assert json.loads(pathlib.Path(first.path).read_text(encoding='utf-8')) == {'n': 1}
    assert leftovers(tmp_path / 'spool' / 'siem', first.name) == []


# ---------------------------------------------------------------------------
# python_deps snapshot folder
# ---------------------------------------------------------------------------

@pytest.fixture
def pip(tmp_path):
    """A virtual environment folder whose pip reports nothing installed (the snapshot then needs no wheel)."""
    venv = tmp_path / 'venv'
    (venv / 'bin').mkdir(parents=True)
    (venv / 'pyvenv.cfg').write_text('home = /usr/bin\n')
    (venv / 'bin' / 'python').symlink_to(sys.executable)
    return Pip(str(venv), runner=lambda argv, timeout: (0, '', ''))


SNAPSHOT_KINDS = (*KINDS, 'foreign-directory', 'snapshot')


@pytest.mark.parametrize('check_mode', [False, True], ids=['run', 'check-mode'])
@pytest.mark.parametrize('kind', SNAPSHOT_KINDS)
def test_snapshot_folder(pip, place, tmp_path, kind, check_mode):
    if kind == 'snapshot':
        thing = place('missing', 'snapshot')
        take_snapshot(pip, str(thing.path), Sources())
    elif kind == 'foreign-directory':
        thing = place('directory', 'snapshot')
        (thing.path / 'snapshot.json').write_text('{}')  # looks like one, but holds more than a snapshot does
    else:
        thing = place(kind, 'snapshot')
    before = thing.state()
    if kind in ('missing', 'snapshot'):
        take_snapshot(pip, str(thing.path), Sources(), check_mode=check_mode)
        if check_mode:
            assert thing.state() == before
        else:
            assert sorted(os.listdir(thing.path)) == ['freeze.txt', 'snapshot.json', 'wheels']
            assert os.lstat(thing.path).st_ino != (before[0][1] if kind == 'snapshot' else None)
    else:
        with pytest.raises(PyDepsError, match=r'refusing to replace it|symbolic link') as caught:
            take_snapshot(pip, str(thing.path), Sources(), check_mode=check_mode)
        assert str(thing.path) in str(caught.value)
        assert thing.state() == before
    assert leftovers(thing.path.parent, 'snapshot') == []
