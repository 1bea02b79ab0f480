# Copyright (c) Dihya ops maintainers
# GNU General Public License v3.0+ (see LICENSES/GPL-3.0-or-later.txt or https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later

# This module utility is PRIVATE to the collection. It can change at any time.

"""Encryption of exported files, so that content published to IPFS can be erased by destroying its key.

Each file is stored as ``MAGIC``, a 12-byte nonce, the AES-256-GCM ciphertext of the file (``MAGIC`` as
associated data), then the 16-byte tag: the layout of the collection's encrypted RGPD exports
(``_rgpd_archive``), with a magic of its own. The key is 32 bytes from Vault (URL-safe base64 or hex), one
per export; the export's manifest names it by its ``key_id`` only.

The nonce is the first 12 bytes of HMAC-SHA256(key, domain, file path, SHA-256 of the plaintext): the same
file under the same key gives the same ciphertext (exports stay byte-identical run after run, as IPFS
wants), and a nonce is never reused for two different plaintexts under one key (which is what breaks GCM).
What this reveals is only that two exports under the same key hold the same file at the same path.

The stream is produced by :class:`EncryptingReader` a chunk at a time: memory stays bounded.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import os
import re
import typing as t

from ansible_collections.dihya.ops.plugins.module_utils._ipfs_unixfs import IpfsError
from ansible_collections.dihya.ops.plugins.module_utils._optional import optional_library
from ansible_collections.dihya.ops.plugins.module_utils._safe_write import UnsafeDestination, atomic_write


MAGIC = b'DIHYA-IPFS-AESGCM-1\n'
NONCE_SIZE = 12
TAG_SIZE = 16
SUFFIX = '.aesgcm'
CIPHER = 'AES-256-GCM'
_NONCE_DOMAIN = b'dihya-ipfs-nonce/1\x00'
_KEY_ID = re.compile(r'[A-Za-z0-9][A-Za-z0-9._:@/-]{0,127}')


def _ciphers(purpose: str) -> t.Any:
    return optional_library('cryptography.hazmat.primitives.ciphers', purpose, error=IpfsError)


def parse_key(value: t.Any) -> bytes:
    """A 32-byte key given as URL-safe base64 (44 characters, ``Fernet.generate_key()``) or 64 hex characters."""
    text = value.decode('ascii', 'replace') if isinstance(value, bytes) else str(value)
    text = text.strip()
    try:
        key = bytes.fromhex(text) if re.fullmatch(r'[0-9a-fA-F]{64}', text) else base64.urlsafe_b64decode(text.encode('ascii'))
    except (ValueError, UnicodeEncodeError):
        key = b''
    if len(key) != 32:
        raise IpfsError('key must be 32 bytes given as URL-safe base64 (44 characters) or 64 hex characters')
    return key


def check_key_id(value: t.Any) -> str:
    """``value`` if it is a usable key id (letters, digits and ``._:@/-``, at most 128 characters)."""
    if not isinstance(value, str) or not _KEY_ID.fullmatch(value):
        raise IpfsError('key_id must be 1 to 128 letters, digits or ._:@/- (it names the key, it is not the key)')
    return value


def nonce(key: bytes, path: str, sha256: str) -> bytes:
    """The nonce of the file at ``path`` (as stored) whose plaintext has the SHA-256 ``sha256`` (hex)."""
    message = _NONCE_DOMAIN + path.encode('utf-8') + b'\x00' + bytes.fromhex(sha256)
    return hmac.new(key, message, hashlib.sha256).digest()[:NONCE_SIZE]


def encrypted_size(size: int) -> int:
    """The size of the stored file for a plaintext of ``size`` bytes."""
    return len(MAGIC) + NONCE_SIZE + size + TAG_SIZE


class EncryptingReader:
    """``read(n)`` gives the encrypted form of ``source`` (a binary file) a piece at a time."""

    def __init__(self, source: t.BinaryIO, key: bytes, file_nonce: bytes) -> None:
        ciphers = _ciphers('an encrypted IPFS export')
        self.encryptor = ciphers.Cipher(ciphers.algorithms.AES(key), ciphers.modes.GCM(file_nonce)).encryptor()
        self.encryptor.authenticate_additional_data(MAGIC)
        self.source = source
        self.pending = MAGIC + file_nonce
        self.done = False

    def read(self, size: int) -> bytes:
        """Up to ``size`` bytes (fewer only at the end; nothing once everything was given)."""
        while len(self.pending) < size and not self.done:
            data = self.source.read(max(size, 1 << 16))
            if data:
                self.pending += self.encryptor.update(data)
            else:
                self.pending += self.encryptor.finalize() + self.encryptor.tag
                self.done = True
        out, self.pending = self.pending[:size], self.pending[size:]
        return out


def decrypt_file(source: str, destination: str, key: t.Any) -> None:
    """Decrypt a stored file into ``destination`` (new, absolute); the plaintext is kept only if the tag verifies."""
    raw_key = parse_key(key)
    ciphers = _ciphers('decrypting an IPFS export')
    fd = os.open(source, os.O_RDONLY | os.O_NOFOLLOW | getattr(os, 'O_CLOEXEC', 0))
    with os.fdopen(fd, 'rb') as handle:
        size = os.fstat(handle.fileno()).st_size
        head = len(MAGIC) + NONCE_SIZE
        if size < head + TAG_SIZE or handle.read(len(MAGIC)) != MAGIC:
            raise IpfsError(f'{source} is not an encrypted export file')
        file_nonce = handle.read(NONCE_SIZE)
        handle.seek(size - TAG_SIZE)
        tag = handle.read(TAG_SIZE)
        handle.seek(head)
        decryptor = ciphers.Cipher(ciphers.algorithms.AES(raw_key), ciphers.modes.GCM(file_nonce, tag)).decryptor()
        decryptor.authenticate_additional_data(MAGIC)
        remaining = size - head - TAG_SIZE
        try:
            with atomic_write(destination, mode=0o600) as out:
                while remaining:
                    chunk = handle.read(min(remaining, 1 << 20))
                    remaining -= len(chunk)
                    out.write(decryptor.update(chunk))
                decryptor.finalize()
        except UnsafeDestination as exc:
            raise IpfsError(f'destination {exc}') from None
        except OSError:
            raise
        except Exception as exc:
            raise IpfsError(f'{source}: decryption failed (wrong key or damaged file)') from exc


__all__ = ['CIPHER', 'MAGIC', 'SUFFIX', 'EncryptingReader', 'check_key_id', 'decrypt_file', 'encrypted_size', 'nonce', 'parse_key']
