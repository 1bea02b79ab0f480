# Copyright (c) Dihya ops maintainers
# GNU General Public License v3.0+ (see LICENSES/GPL-3.0-or-later.txt or https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later

"""Encoding vectors of the IPFS engine: CIDs, dag-pb nodes, the balanced layout, CARv1 sections.

The CIDs of :data:`VECTORS` were given by the reference implementations (the npm ``ipfs-unixfs-importer`` with
Kubo's parameters, ``ipfs-car pack`` 3.1.0) for the inputs of ``tests/ipfs/ipfs_utils.py``;
``test_ipfs_reference.py`` computes them again with those tools. Here they need no Node.
"""

from __future__ import annotations

import hashlib
import io

import pytest

from ansible_collections.dihya.ops.plugins.module_utils import _ipfs_car as car
from ansible_collections.dihya.ops.plugins.module_utils import _ipfs_dag as dag
from ansible_collections.dihya.ops.plugins.module_utils import _ipfs_unixfs as unixfs
from ansible_collections.dihya.ops.plugins.module_utils._ipfs_export import ExportRequest, export
from ansible_collections.dihya.ops.tests.ipfs.ipfs_utils import make_inputs

# name -> (kubo, ipfs-car) root CIDs with wrap: false
VECTORS = {
    'empty': ('bafkreihdwdcefgh4dqkjv67uzcmw7ojee6xedzdetojuzjevtenxquvyku',) * 2,
    'one-byte': ('bafkreiejf5qlhfcqudtxb4akqntwdshjmt6xizy24lgfdt7tntpe7ekmci',) * 2,
    'kubo-one-chunk': ('bafkreidbnkjke3qj2y6rkl7ijcqpoyodkpgmcvsvgy5hfqhllasuyse43q',) * 2,
    'kubo-chunk-plus-one': ('bafybeihjlkry3mscqgpz3gvmooajgju7k6n2f25p4vikwftxwlfg7wifky',
                            'bafkreiaox7z5p7yjcwqw7lvrar7jq62674cn3hia6u7fhx6dnjtwmiaj7i'),
    'kubo-several-chunks': ('bafybeihvftqopojbvq77n7onp7lboevcfhnadqa6pdghcgsazw77rk4vry',
                            'bafybeihfs6gwuw2iz6ap4nr7gfmv5xevw5mwamhupucinnkqw4pwx2r6cu'),
    'kubo-two-levels': ('bafybeiarhbbu7waqbcvolxzexcvs2ojv3r27rfgosxca7kphbjoyrxcboi',
                        'bafybeibr7ehqns5unwo7f6dmu24y5bmnojmli5nvkrkrlz2364iyuhu54e'),
    'car-one-chunk': ('bafybeifjrsyo3otvfhl7v5f36cmyqvc2m4ff6adl4x5jxeirvcqudqeqxq',
                      'bafkreif2nlfsc7fl4rmzg24cg2lohcvsq2hfjwh2q5n5a3efta4aq435gi'),
    'car-chunk-plus-one': ('bafybeidyg5w3c4vdushv33shaympzapgun4fyvf3nhe7nttlvehx5ajwee',
                           'bafybeia5nfqy5hqkewoh5sfanqv6ma2tk5sjv5osc5fwnnmivt6efagusm'),
    'car-several-chunks': ('bafybeifujieitxubmhjtfpeps3iq5h66bdeimkj7wtfdh2m6nb3vnhh5oq',
                           'bafybeietly3krngpcqtjaaeet5mu3eeycf4a3mgpicupaqcxhovndpypa4'),
    'tree': ('bafybeifip5p4cezoivvlqinuryhhcrjmhna3f4odfi6ngq6lbnw7d6yfgu',
             'bafybeihb2skcpyxkkuximutyo7m42wemsaofvf44mloyu3eikxvv6nt7fe'),
}
# ipfs add --cid-version=1 -w -r of one-byte and tree (the importer with Kubo's parameters).
KUBO_WRAPPED = 'bafybeihha3d4thxbeff2s2k2epzfufcak4gdtqeuu5jgzh5l462gblwa64'
EMPTY_DIRECTORY = 'bafybeiczsscdsbs7ffqz55asqdf3smv6klcw3gofszvwlyarci47bgf354'


@pytest.fixture(scope='module', name='inputs')
def fixture_inputs(tmp_path_factory):
    return make_inputs(tmp_path_factory.mktemp('ipfs-vectors'))


@pytest.mark.parametrize('name', sorted(VECTORS))
@pytest.mark.parametrize('index, profile', [(0, 'kubo'), (1, 'ipfs-car')])
def test_reference_cids(inputs, tmp_path, name, index, profile):
    result = export(ExportRequest(paths=[str(inputs / name)], dest=str(tmp_path / 'out.car'), allowed_roots=[str(inputs)],
                                  wrap=False, force=True, profile=profile, check_mode=True))
    assert result['root_cid'] == VECTORS[name][index]
    assert result['inputs'][0]['cid'] == VECTORS[name][index]
    assert not (tmp_path / 'out.car').exists()


def test_wrapped_reference_cid(inputs, tmp_path):
    # The order of paths does not matter: the wrapping folder sorts its entries.
    result = export(ExportRequest(paths=[str(inputs / 'tree'), str(inputs / 'one-byte')], dest=str(tmp_path / 'out.car'),
                                  allowed_roots=[str(inputs)], force=True, check_mode=True))
    assert result['root_cid'] == KUBO_WRAPPED
    assert [item['cid'] for item in result['inputs']] == [VECTORS['one-byte'][0], VECTORS['tree'][0]]


def test_known_cids():
    assert str(unixfs.block_cid(unixfs.RAW, b'')) == VECTORS['empty'][0]
    node = unixfs.encode_node([], unixfs.directory_data())
    assert node == b'\x0a\x02\x08\x01'
    assert str(unixfs.block_cid(unixfs.DAG_PB, node)) == EMPTY_DIRECTORY
    assert unixfs.parse_cid(EMPTY_DIRECTORY) == unixfs.block_cid(unixfs.DAG_PB, node)
    assert unixfs.block_cid(unixfs.RAW, b'x').codec == unixfs.RAW


def test_node_encoding_by_hand():
    child = unixfs.block_cid(unixfs.RAW, b'abc')
    link = unixfs.Link(child, 3, 'n')
    # PBLink: Hash (field 1), Name (field 2), Tsize (field 3)
    assert unixfs.encode_link(link) == b'\x0a\x24' + child.binary + b'\x12\x01n\x18\x03'
    # An empty name is still written, as Kubo and the JavaScript encoders write it.
    assert unixfs.encode_link(unixfs.Link(child, 300)) == b'\x0a\x24' + child.binary + b'\x12\x00\x18\xac\x02'
    # UnixFS file: Type=2, filesize, blocksizes not packed.
    assert unixfs.file_data([262144, 1]) == b'\x08\x02\x18\x81\x80\x10\x20\x80\x80\x10\x20\x01'
    # PBNode: links first, then Data.
    assert unixfs.encode_node([link], b'\x08\x01') == b'\x12\x2b' + unixfs.encode_link(link) + b'\x0a\x02\x08\x01'


@pytest.mark.parametrize('text', ['not-a-cid', 'QmbWqxBEKC3P8tqsKc98xmWNzrzDtRLMiMPL8wBuTGsMnR', ''])
def test_parse_cid_refuses(text):
    with pytest.raises(unixfs.IpfsError):
        unixfs.parse_cid(text)


def _shape(count, width):
    """The DAG of ``count`` one-byte chunks with ``width`` links per node: the (height, children) of each parent, in order."""
    blocks = []
    builder = dag.FileBuilder(dag.Profile('test', 1, width), lambda cid, data: blocks.append((cid, data)))
    for index in range(count):
        builder.add(bytes([index % 256]))
    root = builder.close()
    parents = [data for cid, data in blocks if cid.codec == unixfs.DAG_PB]
    return root, [data.count(b'\x12\x00\x18') for data in parents]


def test_balanced_layout_shape():
    # One chunk: the raw leaf is the root.
    root, parents = _shape(1, 3)
    assert root.cid.codec == unixfs.RAW and parents == []
    # Exactly one full run: a single parent.
    assert _shape(3, 3)[1] == [3]
    # One more: two parents, then the root over them.
    assert _shape(4, 3)[1] == [3, 1, 2]
    # Ten leaves of width three (the figure of @ipld/unixfs's balanced layout), parents in the order they are made:
    # r1 r2 r3, r5(leaf10), r4(r1 r2 r3), r6(r5), root(r4 r6).
    root, parents = _shape(10, 3)
    assert parents == [3, 3, 3, 1, 3, 1, 2]
    assert root.content_size == 10


def test_chunks_larger_than_the_profile_are_refused():
    builder = dag.FileBuilder(dag.Profile('test', 4, 3), lambda cid, data: None)
    with pytest.raises(ValueError, match='larger'):
        builder.add(b'12345')


def test_unknown_profile():
    with pytest.raises(unixfs.IpfsError, match='unknown profile'):
        dag.profile('go-ipfs')


def test_profiles_match_the_reference_tools():
    assert dag.PROFILES['kubo'] == dag.Profile('kubo', 262144, 174, empty_folders=True)
    assert dag.PROFILES['ipfs-car'] == dag.Profile('ipfs-car', 1048576, 1024, empty_folders=False)


def test_directory_size_limits():
    dag.check_directory_size('/x', ['f'] * dag.MAX_DIRECTORY_ENTRIES)
    with pytest.raises(unixfs.IpfsError, match='sharded'):
        dag.check_directory_size('/x', ['f'] * (dag.MAX_DIRECTORY_ENTRIES + 1))
    with pytest.raises(unixfs.IpfsError, match='too long'):
        dag.check_directory_size('/x', ['é' * 127] * 1000)


def test_directory_entries_sorted_by_utf8_bytes():
    blocks = []
    leaf = dag.Node(unixfs.block_cid(unixfs.RAW, b''), 0, 0)
    node = dag.directory_node({'é': leaf, 'z': leaf, 'Z': leaf, 'a': leaf}, lambda cid, data: blocks.append(data))
    data = blocks[-1]
    positions = [data.index(b'\x12' + bytes([len(name.encode())]) + name.encode() + b'\x18') for name in ('Z', 'a', 'z', 'é')]
    assert positions == sorted(positions)
    assert node.cid == unixfs.block_cid(unixfs.DAG_PB, data)


def test_car_header_and_sections_round_trip():
    root = unixfs.parse_cid(EMPTY_DIRECTORY)
    out = io.BytesIO()
    writer = car.CarWriter(out, unixfs.block_cid(unixfs.RAW, b''))
    block = unixfs.encode_node([], unixfs.directory_data())
    writer.block(root, block)
    digest = writer.finish(root)
    data = out.getvalue()
    # DAG-CBOR {"roots": [CID], "version": 1}: 58 bytes, prefixed by its varint length.
    assert data[:1] == b'\x3a' and data[1:2] == b'\xa2' and data[2:8] == b'\x65roots'
    assert data[8:13] == b'\x81\xd8\x2a\x58\x25' and data[13:14] == b'\x00' and data[14:50] == root.binary
    assert data[50:59] == b'\x67version\x01'
    assert data[59:] == car.section(root, block)
    handle = io.BytesIO(data)
    assert car.read_root(handle) == root
    assert list(car.iter_blocks(handle)) == [(root, block)]
    assert car.file_digests(io.BytesIO(data)) == (digest, hashlib.sha256(data).hexdigest())
    assert writer.size == len(data) and writer.blocks == 1


@pytest.mark.parametrize('data, message', [
    (b'', 'empty'),
    (b'\x80', 'truncated varint'),
    (b'\x05ab', 'truncated CAR header'),
    (b'\x02\xa1\x00', 'not a CARv1 header'),
    (b'\xff\xff\xff\xff\xff\xff\xff\xff\xff\xff\x01', 'varint too long'),
    (b'\xff\xff\x7f', 'header too long'),
])
def test_car_reader_refuses(data, message):
    with pytest.raises(unixfs.IpfsError, match=message):
        car.read_root(io.BytesIO(data))


def test_car_sections_out_of_bounds():
    with pytest.raises(unixfs.IpfsError, match='out of bounds'):
        list(car.iter_blocks(io.BytesIO(b'\x05abcde')))
    with pytest.raises(unixfs.IpfsError, match='truncated CAR section'):
        list(car.iter_blocks(io.BytesIO(b'\x30' + b'a' * 10)))
    with pytest.raises(ValueError):
        car.header(unixfs.Cid(b'\x01\x55'))
