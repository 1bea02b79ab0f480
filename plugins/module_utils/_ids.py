# Copyright (c) Dihya ops maintainers
# GNU General Public License v3.0+ (see LICENSES/GPL-3.0-or-later.txt or https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later

# This module utility is PRIVATE to the collection. It can change at any time.

"""The identifiers dihya.ops gives things: W3C trace ids and pseudonyms of personal identifiers.

A pseudonym is ``hmac:`` followed by the HMAC-SHA256 (hex) of the value's UTF-8 text: the same value gives
the same pseudonym under one key (records stay correlatable), and nothing gives the value back without the
key. The audit trail, the RGPD engine and the ``pseudonym`` filter all use :func:`pseudonym`, so a
subject's pseudonym in an audit record matches the one in an RGPD report made with the same key.
"""

from __future__ import annotations

import hashlib
import hmac
import re
import secrets

PSEUDONYM_PREFIX = 'hmac:'
PSEUDONYM = re.compile(r'hmac:[0-9a-f]{64}')
TRACE_ID = re.compile(r'[0-9a-f]{32}')
_NO_TRACE = '0' * 32


def new_trace_id() -> str:
    """A random W3C trace id: 32 lowercase hex digits, never all zeros (the W3C "invalid" id)."""
    while True:
        value = secrets.token_hex(16)
        if value != _NO_TRACE:
            return value


def is_trace_id(value: object) -> bool:
    """Whether ``value`` is a valid W3C trace id: 32 lowercase hex digits, not all zeros."""
    return isinstance(value, str) and TRACE_ID.fullmatch(value) is not None and value != _NO_TRACE


def pseudonym(value: str, key: bytes) -> str:
    """``hmac:`` and the HMAC-SHA256 (hex) of ``value``: stable for a key, not reversible without it.

    Lone surrogates (text decoded with ``surrogateescape`` from bytes that were not UTF-8) are kept as
    they are rather than refused, so that any text can be pseudonymised.
    """
    if not isinstance(value, str):
        raise TypeError(f'a pseudonymised value must be a string, not {type(value).__name__}')
    if not isinstance(key, bytes) or not key:
        raise TypeError('a pseudonym key must be a non-empty byte string')
    return PSEUDONYM_PREFIX + hmac.new(key, value.encode('utf-8', 'surrogatepass'), hashlib.sha256).hexdigest()


def is_pseudonym(value: object) -> bool:
    """Whether ``value`` already is a pseudonym (``hmac:`` and 64 hex digits)."""
    return isinstance(value, str) and PSEUDONYM.fullmatch(value) is not None
