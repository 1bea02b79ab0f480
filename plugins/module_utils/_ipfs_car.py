# Copyright (c) Dihya ops maintainers
# GNU General Public License v3.0+ (see LICENSES/GPL-3.0-or-later.txt or https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later

# This module utility is PRIVATE to the collection. It can change at any time.

"""CARv1 files (https://ipld.io/specs/transport/car/carv1/): written in one pass, read back for checks.

A CARv1 file is a varint-prefixed DAG-CBOR header ``{"roots": [CID], "version": 1}`` followed by sections,
each a varint of its length, then the block's binary CID and its bytes. The root is known only once the last
block is made, so :class:`CarWriter` writes a header with a placeholder root of the same length (every CID
here is a CIDv1 with a SHA-256 multihash: 36 bytes) and writes the real header over it at the end, as
``ipfs-car pack --output`` does. The output is seekable (a regular file); nothing is kept in memory but the
block being written.

The header is the one DAG-CBOR value of the format and always has this shape, so it is encoded here
(a map of two keys in DAG-CBOR's canonical order, the root as tag 42 over the CID bytes with their
leading zero byte) rather than through a CBOR library on every managed host; the tests decode it with an
independent implementation (``ipfs-car``).
"""

from __future__ import annotations

import hashlib
import typing as t

from ansible_collections.dihya.ops.plugins.module_utils._ipfs_unixfs import Cid, IpfsError, block_cid, multiformats, varint


CID_LENGTH = 36
_CBOR_ROOTS = b'\x65roots'
_CBOR_VERSION = b'\x67version'


def header(root: Cid) -> bytes:
    """The varint-prefixed CARv1 header naming ``root``."""
    if len(root.binary) != CID_LENGTH:
        raise ValueError('only CIDv1 with a SHA-256 multihash are written')
    cid_bytes = b'\x00' + root.binary
    # map(2) "roots": array(1) tag(42) bytes(37) ... "version": 1
    body = b'\xa2' + _CBOR_ROOTS + b'\x81\xd8\x2a\x58' + bytes([len(cid_bytes)]) + cid_bytes + _CBOR_VERSION + b'\x01'
    return varint(len(body)) + body


def section(cid: Cid, data: bytes) -> bytes:
    """The bytes of one block's section."""
    return varint(len(cid.binary) + len(data)) + cid.binary + data


class CarWriter:
    """Writes a CARv1 stream to ``out``; :meth:`block` for each block, then :meth:`finish` with the root.

    ``out`` is ``None`` for a dry run (check mode): sizes and the identity are computed, nothing is written.
    :meth:`finish` returns the CAR's :func:`identity`.
    """

    def __init__(self, out: t.BinaryIO | None, placeholder: Cid) -> None:
        self.out = out
        self.index = hashlib.sha256()
        self.size = len(header(placeholder))
        self.blocks = 0
        if out is not None:
            out.write(header(placeholder))

    def block(self, cid: Cid, data: bytes) -> None:
        """Append the section of one block."""
        prefix = varint(len(cid.binary) + len(data)) + cid.binary
        self.index.update(prefix)
        if self.out is not None:
            self.out.write(prefix)
            self.out.write(data)
        self.size += len(prefix) + len(data)
        self.blocks += 1

    def finish(self, root: Cid) -> str:
        """Write the real header (over the placeholder) and return the CAR's :func:`identity`."""
        head = header(root)
        if self.out is not None:
            self.out.flush()
            self.out.seek(0)
            self.out.write(head)
            self.out.seek(0, 2)
        return identity(head, self.index, self.size)


def identity(head: bytes, index: t.Any, size: int) -> str:
    """What tells two CAR files of this writer apart, without hashing their content twice (hex).

    The SHA-256 of the header, of the running SHA-256 ``index`` of every section's length and CID, and of the
    size. Every block is content-addressed, so two files whose blocks verify against their CIDs and whose
    identities are equal are the same bytes: an existing destination is compared this way
    (:func:`file_digests` with ``verify``), and a file just written is checked to be the one written.
    """
    return hashlib.sha256(head + index.digest() + str(size).encode('ascii')).hexdigest()


def file_digests(handle: t.BinaryIO, verify: bool = False) -> tuple[str, str]:
    """(:func:`identity`, plain SHA-256) of a CAR file read from ``handle`` at its start, in one read.

    With ``verify`` every block is hashed and checked against its CID (:class:`IpfsError` if one does not match).
    """
    head = _read_header_bytes(handle)
    whole = hashlib.sha256(head)
    index = hashlib.sha256()
    size = len(head)
    for cid, data, prefix in _sections(handle):
        index.update(prefix)
        whole.update(prefix)
        whole.update(data)
        size += len(prefix) + len(data)
        if verify and block_cid(cid.codec, data) != cid:
            raise IpfsError(f'a block of the CAR file does not match its CID {cid}')
    return identity(head, index, size), whole.hexdigest()


def _read_varint(handle: t.BinaryIO) -> tuple[int, bytes] | None:
    raw = b''
    while True:
        byte = handle.read(1)
        if not byte:
            if raw:
                raise IpfsError('truncated varint in CAR file')
            return None
        raw += byte
        if not byte[0] & 0x80:
            break
        if len(raw) > 9:
            raise IpfsError('varint too long in CAR file')
    value: int = multiformats().varint.decode(raw)
    return value, raw


def _read_header_bytes(handle: t.BinaryIO) -> bytes:
    first = _read_varint(handle)
    if first is None:
        raise IpfsError('empty CAR file')
    length, raw = first
    if length > 1 << 16:
        raise IpfsError('CAR header too long')
    body = handle.read(length)
    if len(body) != length:
        raise IpfsError('truncated CAR header')
    return raw + body


def read_root(handle: t.BinaryIO) -> Cid:
    """The root of a CAR file this writer made (header of the same shape), read from ``handle`` at its start."""
    head = _read_header_bytes(handle)
    prefix = len(varint(len(head) - 1))
    body = head[prefix:]
    start = 1 + len(_CBOR_ROOTS) + 5
    if not (body.startswith(b'\xa2' + _CBOR_ROOTS + b'\x81\xd8\x2a\x58\x25\x00') and body.endswith(_CBOR_VERSION + b'\x01')):
        raise IpfsError('not a CARv1 header with one root')
    return Cid(body[start + 1:start + 1 + CID_LENGTH])


def _sections(handle: t.BinaryIO, max_block: int = 4 << 20) -> t.Iterator[tuple[Cid, bytes, bytes]]:
    while True:
        first = _read_varint(handle)
        if first is None:
            return
        length, raw = first
        if length < CID_LENGTH or length > max_block + CID_LENGTH:
            raise IpfsError(f'CAR section of {length} bytes is out of bounds')
        data = handle.read(length)
        if len(data) != length:
            raise IpfsError('truncated CAR section')
        yield Cid(data[:CID_LENGTH]), data[CID_LENGTH:], raw + data[:CID_LENGTH]


def iter_blocks(handle: t.BinaryIO, max_block: int = 4 << 20) -> t.Iterator[tuple[Cid, bytes]]:
    """The (CID, bytes) of each section after the header (read from ``handle`` positioned after it)."""
    for cid, data, _prefix in _sections(handle, max_block):
        yield cid, data


__all__ = ['CID_LENGTH', 'CarWriter', 'file_digests', 'header', 'identity', 'iter_blocks', 'read_root', 'section']
