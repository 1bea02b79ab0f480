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

from ansible_collections.dihya.ops.plugins.module_utils._ipfs_unixfs import Cid, IpfsError, multiformats, varint


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

    ``out`` is ``None`` for a dry run (check mode): sizes and the SHA-256 of the blocks' part are computed, nothing
    is written. :meth:`finish` returns the CAR's :func:`car_sha256`.
    """

    def __init__(self, out: t.BinaryIO | None, placeholder: Cid) -> None:
        self.out = out
        self.blocks_digest = hashlib.sha256()
        self.size = len(header(placeholder))
        self.blocks = 0
        if out is not None:
            out.write(header(placeholder))

    def block(self, cid: Cid, data: bytes) -> None:
        """Append the section of one block."""
        prefix = varint(len(cid.binary) + len(data)) + cid.binary
        self.blocks_digest.update(prefix)
        self.blocks_digest.update(data)
        if self.out is not None:
            self.out.write(prefix)
            self.out.write(data)
        self.size += len(prefix) + len(data)
        self.blocks += 1

    def finish(self, root: Cid) -> str:
        """Write the real header (over the placeholder) and return the CAR's :func:`car_sha256`."""
        head = header(root)
        if self.out is not None:
            self.out.flush()
            self.out.seek(0)
            self.out.write(head)
            self.out.seek(0, 2)
        return car_sha256(head, self.blocks_digest)


def car_sha256(head: bytes, blocks_digest: t.Any) -> str:
    """The CAR's identity digest: SHA-256 (hex) of ``head`` followed by the SHA-256 of the blocks' part.

    hashlib cannot prepend, and the header is written last: this digest can be computed in the one pass
    that writes (or, in check mode, would write) the file, and two CAR files have the same digest exactly
    when their bytes are the same. It is what tells an up-to-date destination; the file's plain SHA-256
    is :func:`file_digests`'s second value.
    """
    return hashlib.sha256(head + blocks_digest.digest()).hexdigest()


def file_digests(handle: t.BinaryIO) -> tuple[str, str]:
    """(:func:`car_sha256`, plain SHA-256) of a CAR file read from ``handle`` at its start, in one read."""
    head = _read_header_bytes(handle)
    blocks = hashlib.sha256()
    whole = hashlib.sha256(head)
    while True:
        data = handle.read(1 << 20)
        if not data:
            break
        blocks.update(data)
        whole.update(data)
    return car_sha256(head, blocks), whole.hexdigest()


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


def iter_blocks(handle: t.BinaryIO, max_block: int = 4 << 20) -> t.Iterator[tuple[Cid, bytes]]:
    """The (CID, bytes) of each section after the header (read from ``handle`` positioned after it)."""
    while True:
        first = _read_varint(handle)
        if first is None:
            return
        length = first[0]
        if length < CID_LENGTH or length > max_block + CID_LENGTH:
            raise IpfsError(f'CAR section of {length} bytes is out of bounds')
        data = handle.read(length)
        if len(data) != length:
            raise IpfsError('truncated CAR section')
        yield Cid(data[:CID_LENGTH]), data[CID_LENGTH:]


__all__ = ['CID_LENGTH', 'CarWriter', 'car_sha256', 'file_digests', 'header', 'iter_blocks', 'read_root', 'section']
