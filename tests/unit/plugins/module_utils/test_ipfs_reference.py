# Copyright (c) Dihya ops maintainers
# GNU General Public License v3.0+ (see LICENSES/GPL-3.0-or-later.txt or https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later

"""The export against independent implementations, run under Node (integration tier).

* ``kubo``: the npm ``ipfs-unixfs-importer`` with Kubo's parameters (``tests/ipfs/kubo_reference.mjs``);
* ``ipfs-car``: the ``ipfs-car`` 3.x command (``pack``, ``unpack``, ``roots``, ``blocks``).

Both are installed by ``scripts/bootstrap.sh test`` into ``.cache/npm-ipfs``. The inputs are those of
``tests/ipfs/ipfs_utils.py``: empty, one byte, one chunk, one chunk plus one byte, several chunks, two DAG
levels for ``kubo`` (175 chunks and one byte), a folder of nested folders with unicode names.
"""

from __future__ import annotations

import base64
import hashlib
import os
import pathlib

import pytest

from ansible_collections.dihya.ops.plugins.module_utils import _ipfs_crypt as crypt
from ansible_collections.dihya.ops.plugins.module_utils._ipfs_export import MANIFEST_NAME, ExportRequest, export
from ansible_collections.dihya.ops.tests.ipfs.ipfs_utils import EMPTY_FOLDER, FILES, ipfs_car, make_inputs, missing_tools, reference_cids
from ansible_collections.dihya.ops.tests.unit.plugins.module_utils.audit_utils import write

# Node runs the reference tools on tens of MiB in child processes.
pytestmark = pytest.mark.services('load')

NAMES = [*FILES, 'tree']
EMPTY_DIRECTORY = 'bafybeiczsscdsbs7ffqz55asqdf3smv6klcw3gofszvwlyarci47bgf354'


@pytest.fixture(scope='module', name='inputs')
def fixture_inputs(tmp_path_factory):
    reason = missing_tools()
    if reason:
        pytest.fail(reason)
    return make_inputs(tmp_path_factory.mktemp('ipfs-reference'))


def ours(inputs, paths, dest, profile, wrap, **options):
    return export(ExportRequest(paths=[str(inputs / name) for name in paths], dest=str(dest), allowed_roots=[str(inputs)],
                                wrap=wrap, force=True, profile=profile, **options))


def files_below(path):
    found = {}
    for folder, _dirs, names in os.walk(path):
        for name in names:
            full = pathlib.Path(folder) / name
            found[str(full.relative_to(path))] = hashlib.sha256(full.read_bytes()).hexdigest()
    return found


@pytest.mark.parametrize('name', NAMES)
def test_kubo_profile_matches_the_importer(inputs, tmp_path, name):
    expected = reference_cids([inputs / name], wrap=False)
    result = ours(inputs, [name], tmp_path / 'x.car', 'kubo', wrap=False)
    assert result['root_cid'] == expected['root']


def test_kubo_profile_wrapped_and_every_entry(inputs, tmp_path):
    expected = reference_cids([inputs / 'tree', inputs / 'one-byte', inputs / 'kubo-two-levels'], wrap=True)
    result = ours(inputs, ['tree', 'one-byte', 'kubo-two-levels'], tmp_path / 'x.car', 'kubo', wrap=True)
    assert result['root_cid'] == expected['root']
    assert {item['name']: item['cid'] for item in result['inputs']} == {
        name: expected['entries'][name] for name in ('tree', 'one-byte', 'kubo-two-levels')}
    # Every block of every entry (nested folders, the empty folder, unicode names) is in the CAR ipfs-car reads back.
    blocks = set(ipfs_car('blocks', str(tmp_path / 'x.car')).split())
    assert set(expected['entries'].values()) <= blocks
    # The empty folder (which the importer lists no entry for) is the empty UnixFS directory.
    assert EMPTY_DIRECTORY in blocks


@pytest.mark.parametrize('name', NAMES)
def test_ipfs_car_profile_matches_ipfs_car_pack(inputs, tmp_path, name):
    expected = ipfs_car('pack', str(inputs / name), '--no-wrap', '--output', str(tmp_path / 'theirs.car'))
    result = ours(inputs, [name], tmp_path / 'ours.car', 'ipfs-car', wrap=False)
    assert result['root_cid'] == expected
    assert ipfs_car('roots', str(tmp_path / 'ours.car')) == expected


def test_ipfs_car_profile_wrapped(inputs, tmp_path):
    expected = ipfs_car('pack', str(inputs / 'car-chunk-plus-one'), '--output', str(tmp_path / 'theirs.car'))
    result = ours(inputs, ['car-chunk-plus-one'], tmp_path / 'ours.car', 'ipfs-car', wrap=True)
    assert result['root_cid'] == expected


@pytest.mark.parametrize('profile', ['kubo', 'ipfs-car'])
def test_ipfs_car_unpacks_our_car_byte_for_byte(inputs, tmp_path, profile):
    names = ['tree', 'empty', 'one-byte', 'kubo-several-chunks', 'car-several-chunks']
    ours(inputs, names, tmp_path / 'x.car', profile, wrap=True)
    ipfs_car('unpack', str(tmp_path / 'x.car'), '--output', str(tmp_path / 'out'))
    for name in names:
        if (inputs / name).is_dir():
            assert files_below(tmp_path / 'out' / name) == files_below(inputs / name)
        else:
            assert (tmp_path / 'out' / name).read_bytes() == (inputs / name).read_bytes()
    assert (tmp_path / 'out' / 'tree' / EMPTY_FOLDER).is_dir() == (profile == 'kubo')


def test_encrypted_export_unpacks_and_decrypts(tmp_path):
    root = tmp_path / 'root'
    (root / 'audit').mkdir(parents=True)
    write(root / 'audit' / 'audit.log', 2000, user='alice', email='alice@example.org')
    (root / 'reports').mkdir()
    (root / 'reports' / 'incident.json').write_text('{"outcome": "rolled back"}\n')
    key = base64.urlsafe_b64encode(os.urandom(32)).decode()
    result = export(ExportRequest(paths=[str(root / 'audit'), str(root / 'reports')], dest=str(tmp_path / 'x.car'),
                                  allowed_roots=[str(root)], report_dirs=[str(root / 'reports')], encrypt=True, key=key, key_id='k-1'))
    assert ipfs_car('roots', str(tmp_path / 'x.car')) == result['root_cid']
    ipfs_car('unpack', str(tmp_path / 'x.car'), '--output', str(tmp_path / 'out'))
    assert (tmp_path / 'out' / MANIFEST_NAME).exists()
    for rel in ('audit/audit.log', 'reports/incident.json'):
        crypt.decrypt_file(str(tmp_path / 'out' / (rel + '.aesgcm')), str(tmp_path / rel.replace('/', '-')), key)
        assert (tmp_path / rel.replace('/', '-')).read_bytes() == (root / rel).read_bytes()
