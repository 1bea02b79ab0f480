# Copyright (c) Dihya ops maintainers
# GNU General Public License v3.0+ (see LICENSES/GPL-3.0-or-later.txt or https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later

# This module utility is PRIVATE to the collection. It can change at any time.

"""Audit events: the settings they are built with, the checks of what callers give, and the ECS event document.

An event is what :meth:`AuditLog.append <._audit_log.AuditLog.append>` turns into a chained record. User ids,
e-mail addresses and IP addresses are replaced by pseudonyms (:func:`._ids.pseudonym`) unless the settings
say otherwise. Standard library only: it runs on any managed host and on the controller.
"""

from __future__ import annotations

import dataclasses
import datetime
import hashlib
import hmac
import json
import os
import socket
import typing as t

from ansible_collections.dihya.ops.plugins.module_utils._canonical import canonical
from ansible_collections.dihya.ops.plugins.module_utils._ids import new_trace_id, pseudonym


CATEGORIES = ('audit', 'security', 'rgpd', 'ops')
OUTCOMES = ('success', 'failure', 'denied')
FSYNC_MODES = ('always', 'batch')

MIN_KEY_BYTES = 16
MAX_TEXT_CHARS = 1024


class AuditError(Exception):
    """Bad input or unwritable log; message is safe to show (never holds key material)."""


def check_path(value: t.Any, name: str = 'path') -> str:
    """``value`` normalised (``//`` and ``.`` components removed) when it is an absolute path; else AuditError.

    Refused: anything but a non-empty string, a relative path (``x``, ``./x``, a ``~`` nobody
    expanded), a NUL byte, a ``..`` component. The message names the option and shows the value.

    A relative path depends on the working directory of whoever runs the writer, and ``..`` is
    collapsed by name here while the kernel would resolve it through whatever symbolic link precedes
    it, so the file written and the file reported could differ.
    """
    if not isinstance(value, str) or not value:
        raise AuditError(f'{name} must be a non-empty absolute path')
    if '\x00' in value:
        raise AuditError(f'{name} must not contain a NUL byte')
    if not value.startswith('/'):
        raise AuditError(f'{name} must be an absolute path (starting with /), not {value!r}: a relative path depends on the '
                         'working directory of the process that writes')
    if '..' in value.split('/'):
        raise AuditError(f'{name} must not contain a .. component ({value!r}): give the path without it')
    return '/' + os.path.normpath(value).lstrip('/')


def check_key(key: t.Any) -> None:
    """Raise :class:`AuditError` unless ``key`` is usable as a chain key (the message never shows it)."""
    if not isinstance(key, bytes):
        raise AuditError('the audit key must be a byte string')
    if len(key) < MIN_KEY_BYTES:
        raise AuditError(f'the audit key must be at least {MIN_KEY_BYTES} bytes long')


@dataclasses.dataclass(frozen=True)
class AuditSettings:
    """How events are built and written.

    ``key`` is the chain key (at least 16 bytes). ``pseudonym_key`` keys the pseudonyms of
    user ids, e-mail addresses and IP addresses; without it, it is derived from ``key``.
    """

    key: bytes
    pseudonym_key: bytes | None = None
    pseudonymise: bool = True
    fsync: str = 'always'
    max_details_bytes: int = 16384

    def __post_init__(self) -> None:
        check_key(self.key)
        if self.pseudonym_key is not None and (not isinstance(self.pseudonym_key, bytes) or not self.pseudonym_key):
            raise AuditError('the pseudonym key must be a non-empty byte string')
        if self.fsync not in FSYNC_MODES:
            raise AuditError(f'unknown fsync mode {self.fsync!r}: expected one of {", ".join(FSYNC_MODES)}')
        if isinstance(self.max_details_bytes, bool) or not isinstance(self.max_details_bytes, int) or self.max_details_bytes < 2:
            raise AuditError('max_details_bytes must be an integer of at least 2')

    def pseudonym_secret(self) -> bytes:
        if self.pseudonym_key is not None:
            return self.pseudonym_key
        return hmac.new(self.key, b'dihya-pseudonym', hashlib.sha256).digest()

    def pseudonym(self, value: t.Any) -> str:
        """The pseudonym of ``value`` under these settings' pseudonym key (:func:`._ids.pseudonym`)."""
        if not isinstance(value, str):
            raise AuditError(f'a pseudonymised value must be a string, not {type(value).__name__}')
        return pseudonym(value, self.pseudonym_secret())


def format_timestamp(timestamp: datetime.datetime | None = None) -> str:
    """``2026-11-25T20:31:02.123456Z``: UTC, microseconds. A naive time stamp is taken as UTC."""
    if timestamp is None:
        timestamp = datetime.datetime.now(datetime.timezone.utc)  # noqa: UP017 - datetime.UTC is Python 3.11+, targets may run 3.10
    elif not isinstance(timestamp, datetime.datetime):
        raise AuditError(f'timestamp must be a datetime, not {type(timestamp).__name__}')
    elif timestamp.tzinfo is None:
        timestamp = timestamp.replace(tzinfo=datetime.timezone.utc)  # noqa: UP017 - as above
    return timestamp.astimezone(datetime.timezone.utc).strftime('%Y-%m-%dT%H:%M:%S.%fZ')  # noqa: UP017 - as above


def _text(name: str, value: t.Any, required: bool = False) -> str | None:
    if value is None and not required:
        return None
    if not isinstance(value, str) or not value.strip():
        raise AuditError(f'{name} must be a non-empty string')
    if len(value) > MAX_TEXT_CHARS:
        raise AuditError(f'{name} is longer than {MAX_TEXT_CHARS} characters')
    return value


def json_copy(name: str, value: t.Any) -> t.Any:
    """A normalised copy (what a reader gets back from the JSON text); AuditError if not serialisable."""
    try:
        # Not sorted first: keys of mixed types (7 and 'x') are fine once they are all text.
        return json.loads(json.dumps(value, ensure_ascii=False, allow_nan=False))
    except (TypeError, ValueError) as exc:
        raise AuditError(f'{name} are not JSON-serialisable: {exc}') from None
    except RecursionError:
        raise AuditError(f'{name} are nested too deeply') from None


def _labels(labels: t.Any) -> dict[str, str]:
    if labels is None:
        return {}
    if not isinstance(labels, dict):
        raise AuditError(f'labels must be a mapping, not {type(labels).__name__}')
    result = {}
    for name, given in labels.items():
        if not isinstance(name, str) or not name:
            raise AuditError('label names must be non-empty strings')
        if isinstance(given, bool):
            value = 'true' if given else 'false'
        elif isinstance(given, (int, float)):
            value = str(given)
        elif isinstance(given, str):
            value = given
        else:
            raise AuditError(f'label {name!r} must be a string, a number or a boolean, not {type(given).__name__}')
        result[name] = value
    return result


def build_event(*, action: str, category: str, outcome: str, settings: AuditSettings,
                user: str | None = None, tenant: str | None = None, trace_id: str | None = None,
                correlation_id: str | None = None, route: str | None = None, host: str | None = None,
                email: str | None = None, source_ip: str | None = None,
                labels: dict[str, t.Any] | None = None, details: dict[str, t.Any] | None = None,
                timestamp: datetime.datetime | None = None) -> dict[str, t.Any]:
    """An ECS-compatible event document, ready for :meth:`AuditLog.append <._audit_log.AuditLog.append>`.

    ``user``, ``email`` and ``source_ip`` are replaced by pseudonyms unless
    ``settings.pseudonymise`` is false. A missing ``trace_id`` gets a new one; a missing
    ``host`` is this machine's host name.
    """
    _text('action', action, required=True)
    if category not in CATEGORIES:
        raise AuditError(f'unknown category {category!r}: expected one of {", ".join(CATEGORIES)}')
    if outcome not in OUTCOMES:
        raise AuditError(f'unknown outcome {outcome!r}: expected one of {", ".join(OUTCOMES)}')
    if details is not None and not isinstance(details, dict):
        raise AuditError(f'details must be a mapping, not {type(details).__name__}')
    clean_labels = _labels(labels)
    extra = json_copy('labels and details', {'labels': clean_labels, 'details': details or {}})
    size = len(canonical(extra).encode('utf-8', 'surrogatepass'))
    if size > settings.max_details_bytes:
        raise AuditError(f'labels and details take {size} bytes, more than the limit of {settings.max_details_bytes} bytes')

    def personal(name: str, value: t.Any) -> str | None:
        text = _text(name, value)
        if text is None or not settings.pseudonymise:
            return text
        return settings.pseudonym(text)

    event: dict[str, t.Any] = {
        '@timestamp': format_timestamp(timestamp),
        'event': {'action': action, 'category': category, 'outcome': outcome, 'kind': 'event'},
        'trace': {'id': _text('trace_id', trace_id) or new_trace_id()},
        'host': {'name': _text('host', host) or socket.gethostname()},
    }
    user_doc = {}
    if user is not None:
        user_doc['id'] = personal('user', user)
    if email is not None:
        user_doc['email'] = personal('email', email)
    if user_doc:
        event['user'] = user_doc
    if tenant is not None:
        event['organization'] = {'id': _text('tenant', tenant)}
    if route is not None:
        event['url'] = {'path': _text('route', route)}
    if source_ip is not None:
        event['source'] = {'ip': personal('source_ip', source_ip)}
    if extra['labels']:
        event['labels'] = extra['labels']
    dihya: dict[str, t.Any] = {}
    if correlation_id is not None:
        dihya['correlation_id'] = _text('correlation_id', correlation_id)
    if extra['details']:
        dihya['details'] = extra['details']
    if dihya:
        event['dihya'] = dihya
    try:
        # Strict UTF-8: a record must be readable by any JSON parser, so lone surrogates are refused here.
        canonical(event).encode('utf-8')
    except UnicodeEncodeError:
        raise AuditError('the event holds text that is not valid Unicode (lone surrogates)') from None
    return event
