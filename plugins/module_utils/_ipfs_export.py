# Copyright (c) Dihya ops maintainers
# GNU General Public License v3.0+ (see LICENSES/GPL-3.0-or-later.txt or https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later

# This module utility is PRIVATE to the collection. It can change at any time.

"""What the ``ipfs_export`` module does: files and folders into one deterministic CARv1 file, optionally pushed to Kubo.

1. The inputs are walked inside the allowed roots (``_ipfs_inputs``: no link followed, nothing but files and
   folders). Without ``force`` every file must be recognised (a chained audit log with pseudonyms, an RGPD
   manifest, a report) **and** the export encrypted: IPFS content cannot be erased, pseudonymised data is still
   personal data, so what is published must be erasable by destroying its key (``docs/ipfs.md``).
2. The DAG of each input is built with the profile's parameters (``_ipfs_dag``), the blocks streamed into a CAR
   (``_ipfs_car``) under a temporary name next to ``dest``, fsynced, put in place (``_safe_write``; mode 0600;
   a regular file at ``dest`` is replaced only with ``force``, anything else never). With ``encrypt`` each file
   is stored encrypted (``_ipfs_crypt``) under its name plus ``.aesgcm``, and the wrapping folder holds
   ``dihya-ipfs-manifest.json`` naming the key id.
3. A ``dest`` that already holds exactly the CAR this export makes is left alone (``changed`` false); check mode
   computes everything (the CIDs, the CAR's size) and writes nothing.
4. With ``push`` the CAR is sent to a Kubo node (``_ipfs_push``) once it is safely in place; a failed push is
   :class:`ExportPushError`, which carries the result (the CAR's path).

Inputs are packed in the order of their names (the wrapping folder's order), so the order of ``paths`` does not
change the CAR.
"""

from __future__ import annotations

import dataclasses
import os
import typing as t

from ansible_collections.dihya.ops.plugins.module_utils._canonical import canonical_bytes
from ansible_collections.dihya.ops.plugins.module_utils._fs_chain import components
from ansible_collections.dihya.ops.plugins.module_utils._ipfs_car import CarWriter, file_digests
from ansible_collections.dihya.ops.plugins.module_utils._ipfs_crypt import (
    CIPHER, MAGIC, SUFFIX, EncryptingReader, check_key_id, encrypted_size, nonce, parse_key,
)
from ansible_collections.dihya.ops.plugins.module_utils._ipfs_dag import Node, Profile, directory_node, file_node, profile
from ansible_collections.dihya.ops.plugins.module_utils._ipfs_inputs import UNKNOWN, Entry, Roots, examine, report_folders
from ansible_collections.dihya.ops.plugins.module_utils._ipfs_push import PushError, PushTarget, push
from ansible_collections.dihya.ops.plugins.module_utils._ipfs_unixfs import RAW, Cid, IpfsError, block_cid
from ansible_collections.dihya.ops.plugins.module_utils._safe_write import UnsafeDestination, atomic_write, check_entry, lstat_at, open_dir


MANIFEST_NAME = 'dihya-ipfs-manifest.json'
MANIFEST_FORMAT = 'dihya-ipfs-export/1'
_READ_FLAGS = os.O_RDONLY | os.O_NOFOLLOW | os.O_NONBLOCK | getattr(os, 'O_CLOEXEC', 0)
_SHOWN_REFUSALS = 5


class ExportPushError(PushError):
    """The CAR file was written (``result`` says where and what) but the push failed."""

    def __init__(self, message: str, result: dict[str, t.Any]) -> None:
        super().__init__(message)
        self.result = result


@dataclasses.dataclass
class ExportRequest:
    """The options of one export (see the module's documentation)."""

    paths: list[str]
    dest: str
    allowed_roots: list[str]
    wrap: bool = True
    force: bool = False
    profile: str = 'kubo'
    report_dirs: list[str] = dataclasses.field(default_factory=list)
    encrypt: bool = False
    key: str | None = dataclasses.field(default=None, repr=False)
    key_id: str | None = None
    push: PushTarget | None = dataclasses.field(default=None, repr=False)
    check_mode: bool = False


@dataclasses.dataclass
class _Built:
    root: Node
    inputs: list[dict[str, t.Any]]
    digest: str
    size: int
    blocks: int


class _Export:
    def __init__(self, request: ExportRequest, roots: Roots, prof: Profile, key: bytes | None) -> None:
        self.request = request
        self.roots = roots
        self.profile = prof
        self.key = key
        self.inputs: list[tuple[str, Entry]] = []

    def stored_name(self, entry: Entry, name: str) -> str:
        return name + SUFFIX if self.key is not None and not entry.is_dir else name

    def build(self, out: t.BinaryIO | None) -> _Built:
        # The header is written first with a root of the same length, rewritten once the root is known.
        writer = CarWriter(out, block_cid(RAW, b''))
        results: list[dict[str, t.Any]] = []
        tops: dict[str, Node] = {}
        for name, entry in self.inputs:
            stored = self.stored_name(entry, name)
            node = self.node(entry, stored, writer.block)
            tops[stored] = node
            results.append({'path': entry.path, 'name': stored, 'cid': str(node.cid), 'type': 'directory' if entry.is_dir else 'file',
                            'size': node.content_size, 'files': sum(1 for _file in entry.files()),
                            'kinds': sorted({item.kind for item in entry.files()})})
        if self.key is not None:
            manifest = self.manifest()
            chunks = iter([manifest[i:i + self.profile.chunk_size] for i in range(0, len(manifest), self.profile.chunk_size)])
            tops[MANIFEST_NAME] = file_node(lambda _size: next(chunks, b''), self.profile, writer.block)
        root = directory_node(tops, writer.block) if self.request.wrap else next(iter(tops.values()))
        digest = writer.finish(root.cid)
        return _Built(root, results, digest, writer.size, writer.blocks)

    def node(self, entry: Entry, path: str, sink: t.Callable[[Cid, bytes], None]) -> Node:
        if entry.children is not None:
            children: dict[str, Node] = {}
            for name in sorted(entry.children, key=lambda item: item.encode('utf-8')):
                child = entry.children[name]
                if not self.profile.empty_folders and child.is_dir and next(child.files(), None) is None:
                    continue
                stored = self.stored_name(child, name)
                if stored in children:
                    raise IpfsError(f'{child.path}: its encrypted name {stored} is also the name of another entry')
                children[stored] = self.node(child, f'{path}/{stored}', sink)
            return directory_node(children, sink, entry.path)
        handle = self.roots.open_file(entry)
        with handle:
            if self.key is None:
                node = file_node(handle.read, self.profile, sink)
                expected = entry.size
            else:
                reader = EncryptingReader(handle, self.key, nonce(self.key, path, entry.sha256))
                node = file_node(reader.read, self.profile, sink)
                expected = encrypted_size(entry.size)
        if node.content_size != expected:
            raise IpfsError(f'{entry.path} changed size during the export ({entry.size} bytes when walked)')
        return node

    def manifest(self) -> bytes:
        files = []
        for name, entry in self.inputs:
            for item in entry.files():
                below = item.names[len(entry.names):]
                parts = [self.stored_name(entry, name), *below[:-1], self.stored_name(item, below[-1])] if below else [self.stored_name(entry, name)]
                files.append({'path': '/'.join(parts), 'kind': item.kind, 'size': item.size})
        document = {'format': MANIFEST_FORMAT, 'profile': self.profile.name,
                    'encryption': {'cipher': CIPHER, 'key_id': self.request.key_id, 'magic': MAGIC.decode('ascii').strip()},
                    'files': files}
        return canonical_bytes(document) + b'\n'


def _validate(request: ExportRequest) -> tuple[Profile, bytes | None]:
    prof = profile(request.profile)
    if not request.paths or not all(isinstance(path, str) for path in request.paths):
        raise IpfsError('paths must be a non-empty list of absolute paths')
    if not request.wrap and len(request.paths) != 1:
        raise IpfsError('wrap: false packs exactly one file or folder as the root; give one path or wrap: true')
    key = None
    if request.encrypt:
        if not request.wrap:
            raise IpfsError('encrypt needs wrap: true (the wrapping folder holds the manifest naming the key id)')
        if request.key is None or request.key_id is None:
            raise IpfsError('encrypt needs key (from Vault) and key_id')
        key = parse_key(request.key)
        check_key_id(request.key_id)
    elif request.key is not None or request.key_id is not None:
        raise IpfsError('key and key_id are used only with encrypt: true')
    if request.push is not None:
        request.push.endpoint()
    return prof, key


def _walk(export: _Export, request: ExportRequest) -> None:
    dest = tuple(components(request.dest))
    for path in request.paths:
        entry = export.roots.walk(path)
        name = entry.names[-1] if entry.names else os.path.basename(entry.root)
        if any(existing == name for existing, _entry in export.inputs):
            raise IpfsError(f'two inputs are named {name!r}; the wrapping folder needs distinct names')
        full = (*components(entry.root), *entry.names)
        if dest[:len(full)] == full:
            raise IpfsError(f'dest {request.dest} is inside the input {entry.path}; write the CAR elsewhere')
        if name == MANIFEST_NAME and request.encrypt:
            raise IpfsError(f'{entry.path}: {MANIFEST_NAME} is the name of the export manifest')
        export.inputs.append((name, entry))
    export.inputs.sort(key=lambda item: item[0].encode('utf-8'))


def _check_inputs(export: _Export, request: ExportRequest) -> None:
    if not request.force and not request.encrypt:
        raise IpfsError('the export is not encrypted: IPFS content cannot be erased, so exports are encrypted (encrypt: true, '
                        'key and key_id from Vault) to be erased by destroying the key; force exports in clear')
    if not request.encrypt:
        for _name, entry in export.inputs:
            for item in entry.files():
                item.kind = 'unchecked'
        return
    folders = report_folders(request.report_dirs)
    refused = []
    for _name, entry in export.inputs:
        for item in entry.files():
            examine(export.roots, item, folders)
            if item.kind == UNKNOWN:
                refused.append(item.path)
    if refused and not request.force:
        shown = ', '.join(refused[:_SHOWN_REFUSALS]) + (f' and {len(refused) - _SHOWN_REFUSALS} more' if len(refused) > _SHOWN_REFUSALS else '')
        raise IpfsError(f'not a pseudonymised audit log, an RGPD manifest or a report: {shown}; only those are exported '
                        '(force exports anything)')


def _existing(dest: str, check_mode: bool) -> tuple[bool, tuple[str, str] | None]:
    """(whether dest exists, its digests when it is a regular file); refuses what may not be replaced."""
    directory, name = os.path.split(dest)
    try:
        dir_fd = open_dir(directory or '/')
    except FileNotFoundError:
        if check_mode:
            return False, None
        raise IpfsError(f'the folder of dest {dest} does not exist') from None
    except UnsafeDestination as exc:
        raise IpfsError(f'dest: {exc}') from None
    try:
        info = lstat_at(dir_fd, name)
        if info is None:
            return False, None
        try:
            check_entry(info, dest, True)
        except UnsafeDestination as exc:
            raise IpfsError(f'dest {exc}') from None
        try:
            fd = os.open(name, _READ_FLAGS, dir_fd=dir_fd)
        except OSError as exc:
            raise IpfsError(f'dest {dest} cannot be read: {exc.strerror}') from None
        with os.fdopen(fd, 'rb') as handle:
            try:
                return True, file_digests(handle, verify=True)
            except IpfsError:
                return True, None
    finally:
        os.close(dir_fd)


def _open_dest(dest: str) -> t.BinaryIO:
    directory, name = os.path.split(dest)
    dir_fd = open_dir(directory or '/')
    try:
        fd = os.open(name, _READ_FLAGS, dir_fd=dir_fd)
    finally:
        os.close(dir_fd)
    handle = os.fdopen(fd, 'rb')
    os.set_blocking(fd, True)
    return handle


def export(request: ExportRequest) -> dict[str, t.Any]:
    """Run one export; return the module's result. Raises :class:`IpfsError` (nothing written) or :class:`ExportPushError`."""
    prof, key = _validate(request)
    if not isinstance(request.dest, str) or not request.dest.startswith('/') or '..' in request.dest.split('/'):
        raise IpfsError(f'dest {request.dest!r} must be an absolute path without ".."')
    roots = Roots(request.allowed_roots)
    try:
        job = _Export(request, roots, prof, key)
        _walk(job, request)
        _check_inputs(job, request)
        exists, digests = _existing(request.dest, request.check_mode)
        if exists:
            built = job.build(None)
            same = digests is not None and digests[0] == built.digest
            if not same and not request.force:
                raise IpfsError(f'dest {request.dest} exists and is not this export; force replaces it')
        else:
            same = False
        sha256: str | None = digests[1] if same and digests else None
        if not same and not request.check_mode:
            try:
                with atomic_write(request.dest, mode=0o600, force=exists) as out:
                    built = job.build(out)
            except UnsafeDestination as exc:
                raise IpfsError(f'dest {exc}') from None
            with _open_dest(request.dest) as handle:
                written = file_digests(handle)
            if written[0] != built.digest:
                raise IpfsError(f'dest {request.dest} was replaced by something else right after it was written')
            sha256 = written[1]
        elif not exists:
            built = job.build(None)
    finally:
        roots.close()
    result: dict[str, t.Any] = {
        'changed': not same, 'root_cid': str(built.root.cid), 'profile': prof.name, 'wrap': request.wrap,
        'inputs': built.inputs,
        'car': {'path': request.dest, 'size': built.size, 'blocks': built.blocks, 'sha256': sha256, 'written': not same and not request.check_mode},
        'encryption': {'cipher': CIPHER, 'key_id': request.key_id, 'manifest': MANIFEST_NAME} if key is not None else None,
        'push': None,
    }
    if request.push is not None and request.check_mode:
        result['push'] = {'endpoint': request.push.shown(), 'pinned': False, 'roots': [], 'skipped': 'check mode'}
    elif request.push is not None:
        try:
            with _open_dest(request.dest) as handle:
                result['push'] = push(request.push, handle, built.size, result['root_cid'])
        except PushError as exc:
            raise ExportPushError(f'{exc}; the CAR file is kept at {request.dest}', result) from None
        except OSError as exc:
            raise ExportPushError(f'cannot open {request.dest} to push it: {exc}', result) from None
        result['changed'] = True
    return result


__all__ = ['MANIFEST_FORMAT', 'MANIFEST_NAME', 'ExportPushError', 'ExportRequest', 'export']
