# Copyright (c) Dihya ops maintainers
# GNU General Public License v3.0+ (see LICENSES/GPL-3.0-or-later.txt or https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later

# This module utility is PRIVATE to the collection. It can change at any time.

"""What the RGPD engine writes in place of one personal value: the anonymisation strategies and their text.

Each strategy gives the same output when applied again to its own output, so anonymise is idempotent. A pseudonym
is :func:`pseudonym_of` a value: ``_ids.pseudonym`` of its text, the function the ``pseudonym`` filter calls too.
Also here: which column names look like secrets, and how a value is written as JSON or CSV text in an export.
"""

from __future__ import annotations

import datetime
import hashlib
import hmac
import ipaddress
import re
import typing as t

from ansible_collections.dihya.ops.plugins.module_utils._ids import is_pseudonym, pseudonym
from ansible_collections.dihya.ops.plugins.module_utils._rgpd_errors import RgpdError

REDACTED = '[redacted]'
FAKE_PREFIX = 'anon-'
# Strategies whose result does not depend on the value: applied by one UPDATE statement.
CONSTANT_STRATEGIES = frozenset(('null', 'redact'))

# Column names that look like secrets (password hashes, tokens, keys): words of the name (snake_case, camelCase, kebab)...
_SECRET_WORDS = frozenset(('password', 'passwd', 'pwd', 'passphrase', 'hash', 'hashed', 'digest', 'token', 'secret', 'otp', 'totp', 'hotp',
                           'mfa', '2fa', 'salt', 'pin', 'apikey', 'credential', 'credentials', 'privatekey', 'nonce'))
_SECRET_PAIRS = (('api', 'key'), ('private', 'key'), ('access', 'key'), ('secret', 'key'), ('signing', 'key'), ('recovery', 'code'),
                 ('backup', 'code'), ('reset', 'code'), ('session', 'key'))
# ... or these anywhere in the name, once lowercased and stripped of separators (``PASSWORDHASH``, ``authtoken``).
_SECRET_PARTS = ('password', 'passwd', 'secret', 'token', 'apikey', 'privatekey', 'otpsecret')


def pseudonym_of(value: object, key: bytes) -> str:
    """The pseudonym of a value of any type: ``_ids.pseudonym`` of its text (``42`` and ``'42'`` have the same one)."""
    return pseudonym(str(value), key)


def looks_secret(name: str) -> bool:
    """Whether a column name looks like it holds a secret (``password_hash``, ``apiToken``, ``OTP_SECRET``, ``salt``...)."""
    words = [word for word in re.split(r'[^a-z0-9]+', re.sub(r'([a-z0-9])([A-Z])', r'\1_\2', name).lower()) if word]
    if any(word in _SECRET_WORDS for word in words):
        return True
    if any(first in words and second in words for first, second in _SECRET_PAIRS):
        return True
    flat = ''.join(words)
    return any(part in flat for part in _SECRET_PARTS)


def mask(value: t.Any) -> str:
    """Keep little: an address keeps its network (/24, /48), an e-mail its first letter and domain, other text its first character."""
    text = str(value)
    try:
        address = ipaddress.ip_address(text)
    except ValueError:
        pass
    else:
        prefix = 24 if address.version == 4 else 48
        return str(ipaddress.ip_network(f'{text}/{prefix}', strict=False).network_address)
    if '@' in text:
        local, domain = text.rsplit('@', 1)
        return f'{local[:1]}***@{domain}'
    return text[:1] + ''.join('*' if char.isalnum() else char for char in text[1:])


def _fake_of(data: bytes, like: str, key: bytes) -> str:
    digest = hmac.new(key, data, hashlib.sha256).hexdigest()[:12]
    return f'{FAKE_PREFIX}{digest}@example.invalid' if '@' in like else f'{FAKE_PREFIX}{digest}'


def fake(value: t.Any, key: bytes) -> str:
    """A stable stand-in derived from the value: ``anon-<12 hex>`` (an ``@example.invalid`` address for e-mails)."""
    text = str(value)
    if text.startswith(FAKE_PREFIX):
        return text
    return _fake_of(b'fake\x00' + text.encode('utf-8'), text, key)


def anonymise_value(strategy: str, value: t.Any, key: bytes) -> t.Any:
    """Apply one strategy. Applying it again to its own output gives the same output (so anonymise is idempotent)."""
    if strategy == 'keep' or value is None:
        return value
    if strategy in ('null', 'secret'):
        # The engine turns ``secret`` into ``null`` or ``redact`` per column (see Engine._strategies).
        return None
    if strategy == 'redact':
        return REDACTED
    if strategy == 'hmac':
        text = str(value)
        return text if is_pseudonym(text) else pseudonym(text, key)
    if strategy == 'mask':
        return mask(value)
    if strategy == 'fake':
        return fake(value, key)
    raise RgpdError(f'unknown strategy {strategy!r}')


def tombstone_value(strategy: str, value: t.Any, token: str, key: bytes, nullable: bool) -> t.Any:
    """A value for a tombstone column under a unique constraint, unlike the subject's and every other tombstone's.

    NULL stays NULL (it never collides). Text: ``hmac`` and ``fake`` derive from the tombstone's random token instead of
    the value, ``mask`` and ``redact`` get the token appended (``a***+<12 hex>@domain`` for an e-mail), a kept or unmapped
    column becomes ``erased-<token>``. Any other value becomes NULL when the column allows it.
    """
    if value is None:
        return None
    if isinstance(value, str):
        if strategy == 'hmac':
            return pseudonym(f'tombstone\x00{token}', key)
        if strategy == 'fake':
            return _fake_of(b'fake-tombstone\x00' + token.encode('ascii'), value, key)
        if strategy in ('mask', 'redact'):
            if '@' in value:
                local, domain = value.rsplit('@', 1)
                return f'{local}+{token[:12]}@{domain}'
            return f'{value}~{token[:12]}'
        return f'erased-{token}'
    return None if nullable else value


def utcnow() -> str:
    return datetime.datetime.now(datetime.UTC).strftime('%Y-%m-%dT%H:%M:%SZ')


_CONVERTED = (bytes, bytearray, memoryview, datetime.datetime, datetime.date, datetime.time)


def json_value(value: t.Any) -> t.Any:
    """A value the json module cannot write, as text: blobs in hex, times in ISO 8601, anything else by ``str``."""
    if isinstance(value, (bytes, bytearray, memoryview)):
        return bytes(value).hex()
    if isinstance(value, (datetime.datetime, datetime.date, datetime.time)):
        return value.isoformat()
    return str(value)


def csv_value(value: t.Any) -> t.Any:
    """A value as an export's CSV file writes it (blobs and times as in the JSON file)."""
    if isinstance(value, _CONVERTED):
        return json_value(value)
    return value
