# Copyright (c) Dihya ops maintainers
# GNU General Public License v3.0+ (see LICENSES/GPL-3.0-or-later.txt or https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later

"""The IPFS export operation on real files: determinism, the destination, refusals, recognition, encryption, memory."""

from __future__ import annotations

import base64
import io
import json
import os
import pathlib
import socket
import stat
import subprocess
import sys
import textwrap

import pytest

from ansible_collections.dihya.ops.plugins.module_utils import _ipfs_car as car
from ansible_collections.dihya.ops.plugins.module_utils import _ipfs_crypt as crypt
from ansible_collections.dihya.ops.plugins.module_utils._ids import pseudonym
from ansible_collections.dihya.ops.plugins.module_utils._ipfs_export import MANIFEST_FORMAT, ExportRequest, export
from ansible_collections.dihya.ops.plugins.module_utils._ipfs_inputs import Roots
from ansible_collections.dihya.ops.plugins.module_utils._ipfs_unixfs import IpfsError
from ansible_collections.dihya.ops.tests.ipfs.ipfs_utils import make_inputs
from ansible_collections.dihya.ops.tests.unit.plugins.module_utils.audit_utils import write

KEY = base64.urlsafe_b64encode(bytes(range(32))).decode()
OTHER_KEY = bytes(range(1, 33)).hex()


@pytest.fixture(name='site')
def fixture_site(tmp_path):
    """``root/`` (the allowed root) with test inputs, a real audit log, an RGPD manifest and reports; ``out/`` for CARs."""
    root = tmp_path / 'root'
    make_inputs(root, ['empty', 'one-byte', 'kubo-chunk-plus-one'])
    audit = root / 'audit'
    audit.mkdir()
    write(audit / 'audit.log', 12, user='alice', email='alice@example.org', source_ip='192.0.2.7')
    (root / 'rgpd').mkdir()
    manifest = {'format': 'dihya-rgpd-export/1', 'subject': pseudonym('alice', b'k' * 32), 'tables': {'users': 1}}
    (root / 'rgpd' / 'manifest.json').write_text(json.dumps(manifest))
    (root / 'reports').mkdir()
    (root / 'reports' / 'restart.json').write_text('{"outcome": "ok"}\n')
    (root / 'reports' / 'notes.md').write_text('# notes\n')
    out = tmp_path / 'out'
    out.mkdir()
    return root, out


def run(root, out, paths, name='x.car', **options):
    options.setdefault('allowed_roots', [str(root)])
    return export(ExportRequest(paths=[str(root / path) for path in paths], dest=str(out / name), **options))


def encrypted(root, out, paths, **options):
    options.setdefault('report_dirs', [str(root / 'reports')])
    return run(root, out, paths, encrypt=True, key=KEY, key_id='export-2026-11', **options)


# --- determinism and the destination ---------------------------------------------------------------------------------

@pytest.mark.parametrize('profile', ['kubo', 'ipfs-car'])
def test_two_exports_are_byte_identical(site, profile):
    root, out = site
    first = run(root, out, ['tree', 'one-byte', 'empty'], 'a.car', force=True, profile=profile)
    second = run(root, out, ['empty', 'tree', 'one-byte'], 'b.car', force=True, profile=profile)
    assert (out / 'a.car').read_bytes() == (out / 'b.car').read_bytes()
    assert first['root_cid'] == second['root_cid'] and first['changed'] and first['car']['written']
    data = (out / 'a.car').read_bytes()
    assert first['car']['size'] == len(data) and first['car']['sha256'] == __import__('hashlib').sha256(data).hexdigest()
    assert stat.S_IMODE((out / 'a.car').stat().st_mode) == 0o600
    assert sorted(os.listdir(out)) == ['a.car', 'b.car']
    handle = io.BytesIO(data)
    assert str(car.read_root(handle)) == first['root_cid']
    blocks = list(car.iter_blocks(handle))
    assert len(blocks) == first['car']['blocks'] and str(blocks[-1][0]) == first['root_cid']


def test_same_export_again_changes_nothing(site):
    root, out = site
    first = run(root, out, ['tree'], force=True)
    before = (out / 'x.car').stat()
    again = run(root, out, ['tree'], force=True)
    assert again['changed'] is False and again['car']['written'] is False and again['car']['sha256'] == first['car']['sha256']
    assert (out / 'x.car').stat().st_ino == before.st_ino
    checked = run(root, out, ['tree'], force=True, check_mode=True)
    assert checked['changed'] is False and checked['car']['sha256'] == first['car']['sha256']


def test_check_mode_writes_nothing_and_predicts(site):
    root, out = site
    predicted = run(root, out, ['tree', 'one-byte'], force=True, check_mode=True)
    assert predicted['changed'] is True and predicted['car']['written'] is False and predicted['car']['sha256'] is None
    assert os.listdir(out) == []
    real = run(root, out, ['tree', 'one-byte'], force=True)
    assert {k: v for k, v in real.items() if k != 'car'} == {k: v for k, v in predicted.items() if k != 'car'}
    assert real['car']['size'] == predicted['car']['size'] and real['car']['blocks'] == predicted['car']['blocks']


def test_check_mode_with_a_missing_folder(site):
    root, out = site
    result = run(root, out / 'later', ['one-byte'], force=True, check_mode=True)
    assert result['changed'] is True
    with pytest.raises(IpfsError, match='does not exist'):
        run(root, out / 'later', ['one-byte'], force=True)


def test_a_different_file_at_dest_needs_force(site):
    root, out = site
    (out / 'x.car').write_bytes(b'something else')
    with pytest.raises(IpfsError, match='exists and is not this export; force replaces it'):
        encrypted(root, out, ['reports'])
    assert (out / 'x.car').read_bytes() == b'something else'
    result = run(root, out, ['one-byte'], force=True)
    assert result['changed'] is True and (out / 'x.car').read_bytes() != b'something else'


@pytest.mark.parametrize('kind', ['symlink', 'fifo', 'directory', 'dangling'])
def test_dest_that_is_not_a_regular_file_is_refused(site, kind):
    root, out = site
    dest = out / 'x.car'
    victim = root / 'one-byte'
    if kind == 'symlink':
        dest.symlink_to(victim)
    elif kind == 'dangling':
        dest.symlink_to(out / 'nowhere')
    elif kind == 'fifo':
        os.mkfifo(dest)
    else:
        dest.mkdir()
    before = victim.read_bytes()
    with pytest.raises(IpfsError, match='dest'):
        run(root, out, ['one-byte'], force=True)
    assert victim.read_bytes() == before and not (out / 'nowhere').exists()


def test_dest_through_a_symbolic_link_is_refused(site):
    root, out = site
    (out / 'link').symlink_to(out / 'real', target_is_directory=True)
    (out / 'real').mkdir()
    with pytest.raises(IpfsError, match='symbolic link'):
        export(ExportRequest(paths=[str(root / 'one-byte')], dest=str(out / 'link' / 'x.car'), allowed_roots=[str(root)], force=True))
    assert os.listdir(out / 'real') == []


def test_dest_inside_an_input_is_refused(site):
    root, _out = site
    with pytest.raises(IpfsError, match='inside the input'):
        export(ExportRequest(paths=[str(root / 'tree')], dest=str(root / 'tree' / 'x.car'), allowed_roots=[str(root)], force=True))


@pytest.mark.parametrize('dest', ['relative.car', '/tmp/../etc/x.car', 42])
def test_bad_dest(site, dest):
    root, _out = site
    with pytest.raises(IpfsError, match='dest'):
        export(ExportRequest(paths=[str(root / 'one-byte')], dest=dest, allowed_roots=[str(root)], force=True))


# --- inputs that are refused -------------------------------------------------------------------------------------------

def test_outside_the_allowed_roots(site, tmp_path):
    root, out = site
    with pytest.raises(IpfsError, match='outside the allowed roots'):
        export(ExportRequest(paths=[str(tmp_path / 'out')], dest=str(out / 'x.car'), allowed_roots=[str(root)], force=True))
    # A root that only shares a prefix of its name is not a parent.
    (tmp_path / 'root2').mkdir()
    with pytest.raises(IpfsError, match='outside the allowed roots'):
        export(ExportRequest(paths=[str(tmp_path / 'root2')], dest=str(out / 'x.car'), allowed_roots=[str(root)], force=True))


@pytest.mark.parametrize('path, message', [
    ('{root}/../out', '".." component'),
    ('{root}/tree/../../out', '".." component'),
    ('relative/path', 'not an absolute path'),
    ('{root}/nothing-here', 'does not exist'),
    ('{root}/nothing/below', 'does not exist'),
    ('{root}/one-byte/below', 'is an existing file'),
    ('{root}/bad\x00name', 'NUL'),
])
def test_bad_paths(site, path, message):
    root, out = site
    with pytest.raises(IpfsError, match=message):
        export(ExportRequest(paths=[path.format(root=root)], dest=str(out / 'x.car'), allowed_roots=[str(root)], force=True))


def test_a_symbolic_link_is_never_followed(site, tmp_path):
    root, out = site
    secret = tmp_path / 'secret'
    secret.write_text('outside')
    (root / 'link').symlink_to(secret)
    with pytest.raises(IpfsError, match='link is a symbolic link'):
        run(root, out, ['link'], force=True)
    # Inside an exported folder.
    (root / 'tree' / 'logs' / 'escape').symlink_to(secret)
    with pytest.raises(IpfsError, match='escape is a symbolic link'):
        run(root, out, ['tree'], force=True)
    os.unlink(root / 'tree' / 'logs' / 'escape')
    # On the way to an input.
    (root / 'way').symlink_to(root / 'tree', target_is_directory=True)
    with pytest.raises(IpfsError, match='way is a symbolic link'):
        run(root, out, ['way/README'], force=True)
    # An allowed root that is a link.
    with pytest.raises(IpfsError, match='symbolic link'):
        run(root, out, ['way/README'], force=True, allowed_roots=[str(root / 'way')])
    assert os.listdir(out) == []


def test_special_files_are_refused_without_blocking(site):
    root, out = site
    os.mkfifo(root / 'fifo')
    with pytest.raises(IpfsError, match='is a FIFO'):
        run(root, out, ['fifo'], force=True)
    os.mkfifo(root / 'tree' / 'pipe')
    with pytest.raises(IpfsError, match='pipe is a FIFO'):
        run(root, out, ['tree'], force=True)
    os.unlink(root / 'tree' / 'pipe')
    sock = socket.socket(socket.AF_UNIX)
    try:
        sock.bind(str(root / 'tree' / 'sock'))
        with pytest.raises(IpfsError, match='sock is a socket'):
            run(root, out, ['tree'], force=True)
    finally:
        sock.close()


def test_a_name_that_is_not_utf8(site):
    root, out = site
    os.mkdir(os.path.join(os.fsencode(root / 'tree'), b'bad-\xff'))
    with pytest.raises(IpfsError, match='not UTF-8'):
        run(root, out, ['tree'], force=True)


def test_a_file_swapped_after_the_walk(site):
    root, _out = site
    roots = Roots([str(root)])
    try:
        entry = roots.walk(str(root / 'one-byte'))
        os.rename(root / 'empty', root / 'one-byte')
        with pytest.raises(IpfsError, match='replaced during the export'):
            roots.open_file(entry)
        folder = roots.walk(str(root / 'tree' / 'logs' / 'audit.log'))
        os.rename(root / 'tree' / 'logs', root / 'tree' / 'old')
        os.mkdir(root / 'tree' / 'logs')
        (root / 'tree' / 'logs' / 'audit.log').write_text('other')
        with pytest.raises(IpfsError, match='logs'):
            roots.open_file(folder)
    finally:
        roots.close()


def test_option_errors(site):
    root, out = site
    with pytest.raises(IpfsError, match='exactly one'):
        run(root, out, ['one-byte', 'empty'], wrap=False, force=True)
    with pytest.raises(IpfsError, match='distinct names'):
        run(root, out, ['one-byte', 'tree/../one-byte'.replace('tree/../', '')], force=True)
    with pytest.raises(IpfsError, match='allowed_roots is empty'):
        run(root, out, ['one-byte'], force=True, allowed_roots=[])
    with pytest.raises(IpfsError, match='/ cannot be an allowed root'):
        run(root, out, ['one-byte'], force=True, allowed_roots=['/'])
    with pytest.raises(IpfsError, match='non-empty list'):
        export(ExportRequest(paths=[], dest=str(out / 'x.car'), allowed_roots=[str(root)], force=True))
    with pytest.raises(IpfsError, match='unknown profile'):
        run(root, out, ['one-byte'], force=True, profile='js-ipfs')
    with pytest.raises(IpfsError, match='only with encrypt'):
        run(root, out, ['one-byte'], force=True, key=KEY)
    with pytest.raises(IpfsError, match='needs wrap'):
        run(root, out, ['one-byte'], wrap=False, encrypt=True, key=KEY, key_id='k')
    with pytest.raises(IpfsError, match='needs key'):
        run(root, out, ['one-byte'], encrypt=True, key=KEY)
    with pytest.raises(IpfsError, match='32 bytes'):
        run(root, out, ['one-byte'], encrypt=True, key='short', key_id='k')
    with pytest.raises(IpfsError, match='key_id must be'):
        run(root, out, ['one-byte'], encrypt=True, key=KEY, key_id='a key with spaces')


def test_a_folder_that_would_be_sharded_is_refused(site):
    root, out = site
    big = root / 'big'
    big.mkdir()
    for index in range(1001):
        (big / f'f{index}').touch()
    with pytest.raises(IpfsError, match='1001 entries'):
        run(root, out, ['big'], force=True)


# --- what may be exported ----------------------------------------------------------------------------------------------

def test_an_export_in_clear_needs_force(site):
    root, out = site
    with pytest.raises(IpfsError, match='not encrypted'):
        run(root, out, ['audit/audit.log'])
    result = run(root, out, ['audit/audit.log'], force=True)
    assert result['inputs'][0]['kinds'] == ['unchecked'] and result['encryption'] is None


def test_recognised_files_are_exported_encrypted(site):
    root, out = site
    result = encrypted(root, out, ['audit', 'rgpd/manifest.json', 'reports'])
    kinds = {item['name']: item['kinds'] for item in result['inputs']}
    # The audit folder holds the log and its (empty) lock file.
    assert sorted(os.listdir(root / 'audit')) == ['audit.log', 'audit.log.lock']
    assert kinds == {'audit': ['audit-log', 'empty'], 'manifest.json.aesgcm': ['rgpd-manifest'], 'reports': ['report']}
    assert result['encryption'] == {'cipher': 'AES-256-GCM', 'key_id': 'export-2026-11', 'manifest': 'dihya-ipfs-manifest.json'}
    data = (out / 'x.car').read_bytes()
    # Nothing in clear: neither the key, nor the audit log's content, nor the report's.
    assert base64.urlsafe_b64decode(KEY) not in data and KEY.encode() not in data
    assert b'"seq"' not in data and b'outcome' not in data
    manifest = next(json.loads(block) for _cid, block in car.iter_blocks(_after_header(data)) if block.startswith(b'{"encryption"'))
    assert manifest['format'] == MANIFEST_FORMAT and manifest['encryption']['key_id'] == 'export-2026-11'
    assert sorted(item['path'] for item in manifest['files']) == [
        'audit/audit.log.aesgcm', 'audit/audit.log.lock.aesgcm', 'manifest.json.aesgcm', 'reports/notes.md.aesgcm', 'reports/restart.json.aesgcm']
    # Encrypted exports are deterministic too.
    again = encrypted(root, out, ['reports', 'audit', 'rgpd/manifest.json'], force=False)
    assert again['changed'] is False


def _after_header(data):
    handle = io.BytesIO(data)
    car.read_root(handle)
    return handle


@pytest.mark.parametrize('make, name', [
    (lambda root: (root / 'data.csv').write_text('email\nalice@example.org\n'), 'data.csv'),
    (lambda root: (root / 'reports' / 'dump.csv').write_text('a,b\n'), 'reports/dump.csv'),
    (lambda root: (root / 'other.json').write_text('{"format": "something"}'), 'other.json'),
    (lambda root: (root / 'clear.json').write_text('{"format": "dihya-rgpd-export/1", "subject": "alice@example.org"}'), 'clear.json'),
    (lambda root: (root / 'broken.json').write_text('{"format": '), 'broken.json'),
])
def test_unrecognised_files_are_refused(site, make, name):
    root, out = site
    make(root)
    with pytest.raises(IpfsError, match='not a pseudonymised audit log, an RGPD manifest or a report: ' + str(root / name)):
        encrypted(root, out, [name])
    assert os.listdir(out) == []
    result = encrypted(root, out, [name], force=True)
    assert result['inputs'][0]['kinds'] == ['unknown']


def test_audit_log_in_clear_or_tampered_is_refused(site):
    root, out = site
    from ansible_collections.dihya.ops.tests.unit.plugins.module_utils.audit_utils import settings
    write(root / 'clear.log', 3, config=settings(pseudonymise=False), user='alice', email='alice@example.org')
    with pytest.raises(IpfsError, match=r'clear\.log'):
        encrypted(root, out, ['clear.log'])
    lines = (root / 'audit' / 'audit.log').read_bytes().splitlines(keepends=True)
    (root / 'cut.log').write_bytes(b''.join(lines[:3] + lines[4:]))
    with pytest.raises(IpfsError, match=r'cut\.log'):
        encrypted(root, out, ['cut.log'])
    (root / 'torn.log').write_bytes(b''.join(lines) + b'{"dihya":')
    with pytest.raises(IpfsError, match=r'torn\.log'):
        encrypted(root, out, ['torn.log'])


def test_many_refusals_are_summarised(site):
    root, out = site
    (root / 'junk').mkdir()
    for index in range(8):
        (root / 'junk' / f'{index}.bin').write_bytes(b'x')
    with pytest.raises(IpfsError, match='and 3 more'):
        encrypted(root, out, ['junk'])


def test_encryption_round_trip(site, tmp_path):
    root, _out = site
    source = root / 'kubo-chunk-plus-one'
    key = crypt.parse_key(KEY)
    digest = __import__('hashlib').sha256(source.read_bytes()).hexdigest()
    nonce = crypt.nonce(key, 'a/b', digest)
    with open(source, 'rb') as handle:
        reader = crypt.EncryptingReader(handle, key, nonce)
        pieces = []
        while True:
            piece = reader.read(1000)
            if not piece:
                break
            pieces.append(piece)
    stored = tmp_path / 'stored'
    stored.write_bytes(b''.join(pieces))
    assert stored.stat().st_size == crypt.encrypted_size(source.stat().st_size)
    crypt.decrypt_file(str(stored), str(tmp_path / 'plain'), KEY)
    assert (tmp_path / 'plain').read_bytes() == source.read_bytes()
    with pytest.raises(IpfsError, match='decryption failed'):
        crypt.decrypt_file(str(stored), str(tmp_path / 'wrong'), OTHER_KEY)
    assert not (tmp_path / 'wrong').exists()
    with pytest.raises(IpfsError, match='not an encrypted export'):
        crypt.decrypt_file(str(source), str(tmp_path / 'no'), KEY)
    with pytest.raises(IpfsError, match='destination'):
        crypt.decrypt_file(str(stored), str(tmp_path / 'plain'), KEY)
    # The nonce depends on the key, the path and the content.
    assert len({nonce, crypt.nonce(key, 'a/c', digest), crypt.nonce(crypt.parse_key(OTHER_KEY), 'a/b', digest),
                crypt.nonce(key, 'a/b', '00' * 32)}) == 4


# --- memory ------------------------------------------------------------------------------------------------------------

def test_memory_stays_bounded(tmp_path):
    """A 128 MiB file (sparse) packed by a child process whose peak RSS grows by far less than the file's size.

    benchmarks/ipfs_export.py measures the same at 256 MiB and 1 GiB (flat, under 100 MiB in all).
    """
    (tmp_path / 'in').mkdir()
    with open(tmp_path / 'in' / 'big.log', 'wb') as handle:
        handle.truncate(128 << 20)
    script = textwrap.dedent(f"""
        import resource, sys
        from ansible_collections.dihya.ops.plugins.module_utils._ipfs_export import ExportRequest, export
        before = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
        result = export(ExportRequest(paths=[{str(tmp_path / 'in' / 'big.log')!r}], dest={str(tmp_path / 'big.car')!r},
                                      allowed_roots=[{str(tmp_path / 'in')!r}], force=True))
        print(before, resource.getrusage(resource.RUSAGE_SELF).ru_maxrss, result['car']['size'])
    """)
    done = subprocess.run([sys.executable, '-c', script], capture_output=True, text=True, timeout=120, check=False,
                          env=dict(os.environ, PYTHONPATH=os.pathsep.join(sys.path)))
    assert done.returncode == 0, done.stderr
    before, peak, size = map(int, done.stdout.split())
    assert size > 128 << 20
    # ru_maxrss is in KiB: the export adds under 32 MiB to the interpreter's own footprint.
    assert peak - before < 32 * 1024, (before, peak)
    pathlib.Path(tmp_path / 'big.car').unlink()
