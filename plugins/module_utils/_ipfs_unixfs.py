# Copyright (c) Dihya ops maintainers
# GNU General Public License v3.0+ (see LICENSES/GPL-3.0-or-later.txt or https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later

# This module utility is PRIVATE to the collection. It can change at any time.

"""IPFS blocks: CIDs (through the ``multiformats`` library) and the dag-pb / UnixFS node encoding.

Multiformats
    CIDs, multihashes and varints come from the `multiformats` package of the Python package index (pure
    Python, on the managed host like ``cryptography``: see the README's requirements). It is imported the
    first time an export needs it; a host without it gets one clear :class:`IpfsError`. Building a
    :class:`multiformats.CID` object per block costs about half a millisecond (its type checks), so the
    binary CID of a block is assembled from the library's varint and multihash encoders, and a
    :class:`~multiformats.CID` object is made only for the CIDs given back as text. The library's type checks
    cost even more per call in its varint and multihash encoders, so the prefix of a CID (version, codec and the
    multihash's code and length) is asked of the library once per codec, and recurring varints are cached.

dag-pb and UnixFS
    No maintained Python library encodes dag-pb nodes or UnixFS ``Data`` messages (``multiformats``,
    ``dag-cbor`` and ``libipld`` do CIDs and DAG-CBOR, not protobuf nodes; a generic protobuf runtime would
    be a large dependency for three small messages and does not promise the canonical field order dag-pb
    requires). The encoding below is therefore written by hand, from the dag-pb specification
    (https://ipld.io/specs/codecs/dag-pb/spec/) and UnixFS's ``unixfs.proto``:

    * ``PBNode``: every link (field 2) first, in the order given, then ``Data`` (field 1);
    * ``PBLink``: ``Hash`` (field 1), ``Name`` (field 2, written even when empty, as Kubo and the JavaScript
      encoders do for file chunks), ``Tsize`` (field 3);
    * UnixFS ``Data``: ``Type`` (1), ``filesize`` (3) and each of ``blocksizes`` (4, not packed) for a file;
      only ``Type`` for a directory. No ``mode`` or ``mtime``: neither profile records them.

    Protobuf varints are unsigned LEB128, the same bytes as the multiformats unsigned varint, so the
    library's encoder serves both.
"""

from __future__ import annotations

import dataclasses
import functools
import hashlib
import types
import typing as t

from ansible_collections.dihya.ops.plugins.module_utils._optional import optional_library


RAW = 0x55
DAG_PB = 0x70
CID_VERSION = 1
# UnixFS Data.DataType
UNIXFS_DIRECTORY = 1
UNIXFS_FILE = 2


class IpfsError(Exception):
    """A refusal or failure of an IPFS export, with a message that can be shown as it is."""


_LIBRARY: dict[str, types.ModuleType] = {}


def multiformats() -> types.ModuleType:
    """The ``multiformats`` package, imported once; :class:`IpfsError` if this host does not have it."""
    if 'm' not in _LIBRARY:
        _LIBRARY['m'] = optional_library('multiformats', 'an IPFS export (CIDs, multihashes, varints)', error=IpfsError)
    return _LIBRARY['m']


@functools.lru_cache(maxsize=4096)
def varint(value: int) -> bytes:
    """The unsigned varint of ``value`` (multiformats and protobuf share it); the values that recur are cached."""
    encoded: bytes = multiformats().varint.encode(value)
    return encoded


_CID_PREFIXES: dict[int, bytes] = {}


def _cid_prefix(codec: int) -> bytes:
    """Version, codec and the multihash's own prefix (sha2-256, 32 bytes), from the library, once per codec."""
    if codec not in _CID_PREFIXES:
        multihash = bytes(multiformats().multihash.wrap(bytes(32), 'sha2-256'))
        _CID_PREFIXES[codec] = varint(CID_VERSION) + varint(codec) + multihash[:-32]
    return _CID_PREFIXES[codec]


@dataclasses.dataclass(frozen=True)
class Cid:
    """A CIDv1 with a SHA-256 multihash: its binary form, and its text form (base32) on demand."""

    binary: bytes

    @property
    def codec(self) -> int:
        """The multicodec of the content (:data:`RAW` or :data:`DAG_PB`)."""
        return self.binary[1]

    def __str__(self) -> str:
        text: str = multiformats().CID.decode(self.binary).encode('base32')
        return text


def block_cid(codec: int, data: bytes) -> Cid:
    """The CIDv1 of a block of ``data`` encoded with ``codec``."""
    return Cid(_cid_prefix(codec) + hashlib.sha256(data).digest())


def parse_cid(text: str) -> Cid:
    """A :class:`Cid` from its text form (any multibase); :class:`IpfsError` when it is not a CIDv1 with SHA-256."""
    try:
        cid = multiformats().CID.decode(text)
    except (ValueError, KeyError, TypeError) as exc:
        raise IpfsError(f'{text!r} is not a CID ({exc})') from None
    if cid.version != CID_VERSION or cid.hashfun.name != 'sha2-256':
        raise IpfsError(f'{text!r} is not a CIDv1 with a SHA-256 multihash')
    return Cid(bytes(cid))


@dataclasses.dataclass(frozen=True)
class Link:
    """A link of a dag-pb node: the child's CID, its name ('' for file chunks) and its cumulative size."""

    cid: Cid
    tsize: int
    name: str = ''


def _field(number: int, wire_type: int) -> bytes:
    return varint(number << 3 | wire_type)


def _bytes_field(number: int, value: bytes) -> bytes:
    return _field(number, 2) + varint(len(value)) + value


def _uint_field(number: int, value: int) -> bytes:
    return _field(number, 0) + varint(value)


def encode_link(link: Link) -> bytes:
    """A ``PBLink`` message."""
    return (_bytes_field(1, link.cid.binary) + _bytes_field(2, link.name.encode('utf-8'))
            + _uint_field(3, link.tsize))


def encode_node(links: t.Sequence[Link], data: bytes) -> bytes:
    """A ``PBNode``: the links in the order given (the caller sorts directory entries), then ``Data``."""
    return b''.join(_bytes_field(2, encode_link(link)) for link in links) + _bytes_field(1, data)


def file_data(blocksizes: t.Sequence[int]) -> bytes:
    """The UnixFS ``Data`` of a file node whose children hold ``blocksizes`` bytes of content each."""
    return (_uint_field(1, UNIXFS_FILE) + _uint_field(3, sum(blocksizes))
            + b''.join(_uint_field(4, size) for size in blocksizes))


def directory_data() -> bytes:
    """The UnixFS ``Data`` of a plain (not sharded) directory."""
    return _uint_field(1, UNIXFS_DIRECTORY)


def name_key(name: str) -> bytes:
    """The sort key of a directory entry: dag-pb orders links by the bytes of their UTF-8 names."""
    return name.encode('utf-8')


__all__ = [
    'DAG_PB', 'RAW', 'Cid', 'IpfsError', 'Link', 'block_cid', 'directory_data', 'encode_link', 'encode_node', 'file_data',
    'multiformats', 'name_key', 'parse_cid', 'varint',
]
