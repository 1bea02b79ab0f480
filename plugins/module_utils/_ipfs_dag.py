# Copyright (c) Dihya ops maintainers
# GNU General Public License v3.0+ (see LICENSES/GPL-3.0-or-later.txt or https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later

# This module utility is PRIVATE to the collection. It can change at any time.

"""UnixFS DAGs of files and directories, built as the reference tools of each profile build them.

Profiles (checked against the implementations' sources):

* ``kubo``: what ``ipfs add --cid-version=1`` builds (Kubo's "legacy-cid-v1" import profile), and what the
  JavaScript ``ipfs-unixfs-importer`` builds when given the same parameters: CIDv1, raw leaves, fixed
  262,144-byte chunks, balanced layout of at most 174 links per node.
* ``ipfs-car``: what ``ipfs-car pack`` 3.x builds through ``@ipld/unixfs``: CIDv1, raw leaves, fixed
  1,048,576-byte chunks, balanced layout of at most 1,024 links per node.

Both: a file of one chunk (or none: the empty file) is that single raw block; a larger file is a tree of
dag-pb UnixFS file nodes whose leaves are the raw chunks in order. The balanced layout groups the leaves
in runs of ``max_links`` under parent nodes, groups those parents the same way, and so on until one node
is left; a level that ends with a partial run gets a parent of its own for it (a parent may have a single
child). Leaves are passed to :class:`FileBuilder` one at a time and a parent is made as soon as a run is
full, so memory holds at most ``max_links`` links per level whatever the file size.

Directories are plain UnixFS directories, entries sorted by the bytes of their UTF-8 names. Hidden files are
packed like any other (both tools skip them unless ``--hidden`` is given: the CIDs are those of ``--hidden``).
In the ``ipfs-car`` profile a folder with no file below it is left out of its parent, as ``ipfs-car pack``
(which packs files, not folders) leaves it out. Both tools shard
a large directory (HAMT): ``ipfs-car`` above 1,000 entries, the importer (and Kubo) when its estimate of
the links' bytes (names plus CIDs) passes 262,144. A directory either tool would shard is refused here
(:func:`check_directory_size`), so every CID given is one both tools agree on.

Every block is handed to a :data:`BlockSink` as soon as it is made, children before parents, the root last.
"""

from __future__ import annotations

import dataclasses
import typing as t

from ansible_collections.dihya.ops.plugins.module_utils._ipfs_unixfs import (
    DAG_PB, RAW, Cid, IpfsError, Link, block_cid, directory_data, encode_node, file_data, name_key,
)


@dataclasses.dataclass(frozen=True)
class Profile:
    """The DAG parameters of one reference tool."""

    name: str
    chunk_size: int
    max_links: int
    # Whether a folder with no file below it is part of its parent folder (``ipfs add -r``), or left out
    # (``ipfs-car pack`` packs the files it finds: a folder appears only through them).
    empty_folders: bool = True


PROFILES: dict[str, Profile] = {
    'kubo': Profile('kubo', 262144, 174),
    'ipfs-car': Profile('ipfs-car', 1048576, 1024, empty_folders=False),
}
# ipfs-car shards a directory of more than this many entries; the importer (Kubo's parameters) when the
# names and CIDs of its links pass SHARD_LINK_BYTES.
MAX_DIRECTORY_ENTRIES = 1000
SHARD_LINK_BYTES = 262144

# Receives (cid, block bytes) for each block, in the order they must appear in a CAR file.
BlockSink = t.Callable[[Cid, bytes], None]


def profile(name: str) -> Profile:
    """The profile called ``name``; :class:`IpfsError` for an unknown one."""
    try:
        return PROFILES[name]
    except KeyError:
        raise IpfsError(f'unknown profile {name!r}: use one of {", ".join(sorted(PROFILES))}') from None


@dataclasses.dataclass(frozen=True)
class Node:
    """A finished DAG: the root's link data (CID, cumulative size) and the content size it represents."""

    cid: Cid
    tsize: int
    content_size: int


class FileBuilder:
    """A file's balanced DAG, fed chunk by chunk (:meth:`add`), finished by :meth:`close`."""

    def __init__(self, profile: Profile, sink: BlockSink) -> None:
        self.profile = profile
        self.sink = sink
        # levels[0] holds leaves, levels[i] nodes of height i; each at most max_links long.
        self.levels: list[list[Node]] = [[]]

    def add(self, chunk: bytes) -> None:
        """Add the next chunk (at most the profile's chunk size; the caller cuts the content)."""
        if len(chunk) > self.profile.chunk_size:
            raise ValueError(f'chunk of {len(chunk)} bytes is larger than the profile chunk size')
        cid = block_cid(RAW, chunk)
        self.sink(cid, chunk)
        self._push(0, Node(cid, len(chunk), len(chunk)))

    def _push(self, level: int, node: Node) -> None:
        if level == len(self.levels):
            self.levels.append([])
        self.levels[level].append(node)
        # A full run is made a parent at once, but only if something follows it: the decision waits
        # until then (a file of exactly max_links chunks has a single parent, the root).
        if len(self.levels[level]) > self.profile.max_links:
            run = self.levels[level][:self.profile.max_links]
            del self.levels[level][:self.profile.max_links]
            self._push(level + 1, self._parent(run))

    def _parent(self, children: t.Sequence[Node]) -> Node:
        sizes = [child.content_size for child in children]
        block = encode_node([Link(child.cid, child.tsize) for child in children], file_data(sizes))
        cid = block_cid(DAG_PB, block)
        self.sink(cid, block)
        return Node(cid, len(block) + sum(child.tsize for child in children), sum(sizes))

    def close(self) -> Node:
        """The file's root: its single chunk (an empty chunk for an empty file) or the top parent."""
        if not any(self.levels):
            self.add(b'')
        for height, row in enumerate(self.levels):
            higher = any(self.levels[height + 1:])
            if not row:
                continue
            if not higher:
                return row[0] if len(row) == 1 else self._parent(row)
            parent = self._parent(row)
            row.clear()
            self._push(height + 1, parent)
        raise AssertionError('unreachable: the top level always returns')  # pragma: no cover


def check_directory_size(path: str, names: t.Sequence[str]) -> None:
    """Refuse a directory that either reference tool would shard (see the module docstring).

    The estimate is the importer's: each entry's UTF-8 name plus a CIDv1 SHA-256 (36 bytes).
    """
    if len(names) > MAX_DIRECTORY_ENTRIES:
        raise IpfsError(f'{path} has {len(names)} entries; a directory of more than {MAX_DIRECTORY_ENTRIES} would be sharded '
                        '(HAMT), which this export does not build: split it into smaller folders')
    estimate = sum(len(name_key(name)) + 36 for name in names)
    if estimate > SHARD_LINK_BYTES:
        raise IpfsError(f'{path}: the names of its {len(names)} entries are too long for a plain directory '
                        f'({estimate} bytes of links, over {SHARD_LINK_BYTES}); split it into smaller folders')


def directory_node(entries: t.Mapping[str, Node], sink: BlockSink, path: str = '') -> Node:
    """A plain UnixFS directory of ``entries`` (name -> finished child), sorted by name bytes; its block goes to ``sink``."""
    names = sorted(entries, key=name_key)
    check_directory_size(path or '/', names)
    links = [Link(entries[name].cid, entries[name].tsize, name) for name in names]
    block = encode_node(links, directory_data())
    cid = block_cid(DAG_PB, block)
    sink(cid, block)
    return Node(cid, len(block) + sum(link.tsize for link in links), sum(entries[name].content_size for name in names))


def file_node(read: t.Callable[[int], bytes], profile: Profile, sink: BlockSink) -> Node:
    """The DAG of a file read through ``read(n)`` (a file's ``read``: fewer bytes only at the end) until it returns nothing."""
    builder = FileBuilder(profile, sink)
    pending = b''
    while True:
        data = read(profile.chunk_size - len(pending))
        if not data:
            break
        pending += data
        if len(pending) == profile.chunk_size:
            builder.add(pending)
            pending = b''
    if pending:
        builder.add(pending)
    return builder.close()


__all__ = [
    'MAX_DIRECTORY_ENTRIES', 'PROFILES', 'SHARD_LINK_BYTES', 'BlockSink', 'FileBuilder', 'Node', 'Profile', 'check_directory_size',
    'directory_node', 'file_node', 'profile',
]
