# Copyright (c) Dihya ops maintainers
# GNU General Public License v3.0+ (see LICENSES/GPL-3.0-or-later.txt or https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later

# This module utility is PRIVATE to the collection. It can change at any time.

"""The bytes an audit record becomes on the wire of each sink type; pure functions, no I/O.

- syslog: an RFC 5424 message (:func:`format_syslog`), framed by octet counting over TCP and TLS
  (:func:`frame_octet_counting`, RFC 6587 / RFC 5425);
- Elasticsearch: ``_bulk`` NDJSON with a ``create`` action per record (:func:`bulk_body`);
- Splunk HEC: a batch of event envelopes (:func:`hec_body`);
- webhooks: the record's canonical JSON.

Each record carries a stable id (:func:`event_id`, the hmac of its audit chain entry) so that a receiver can
recognise a record sent again.
"""

from __future__ import annotations

import datetime
import hashlib
import os
import re
import socket
import typing as t

from ansible_collections.dihya.ops.plugins.module_utils._audit_sink_config import DEFAULT_APP_NAME, DEFAULT_FACILITY, FACILITIES
from ansible_collections.dihya.ops.plugins.module_utils._canonical import canonical, canonical_bytes

# Syslog severity by event outcome: notice for a success, warning otherwise.
SEVERITIES = {'success': 5, 'failure': 4, 'denied': 4}
# Structured-data id of RFC 5424 messages; 32473 is the private enterprise number reserved for documentation (RFC 5612).
SD_ID = 'dihya@32473'
TIMESTAMP_PATTERN = re.compile(r'^[0-9]{4}-[0-9]{2}-[0-9]{2}T[0-9]{2}:[0-9]{2}:[0-9]{2}(\.[0-9]{1,6})?(Z|[+-][0-9]{2}:[0-9]{2})$')


def event_id(record: t.Mapping[str, t.Any]) -> str:
    """A stable id for a record: the hmac of its audit chain entry, else a digest of its canonical form."""
    chain_hmac = _get(record, 'dihya', 'audit', 'hmac')
    if isinstance(chain_hmac, str) and re.match(r'^[0-9a-f]{16,128}$', chain_hmac):
        return chain_hmac
    return hashlib.sha256(canonical_bytes(record)).hexdigest()


def _get(record: t.Mapping[str, t.Any], *keys: str) -> t.Any:
    value: t.Any = record
    for key in keys:
        if not isinstance(value, t.Mapping):
            return None
        value = value.get(key)
    return value


def _first(value: t.Any) -> t.Any:
    return value[0] if isinstance(value, list) and value else value


def _ascii_field(value: t.Any, limit: int) -> str:
    text = ''.join(char for char in str(value) if '!' <= char <= '~')[:limit] if value is not None else ''
    return text or '-'


def _sd_value(value: t.Any) -> str:
    text = ''.join(char if char >= ' ' else ' ' for char in str(value))
    return text.replace('\\', '\\\\').replace('"', '\\"').replace(']', '\\]')


def format_syslog(record: t.Mapping[str, t.Any], *, app_name: str = DEFAULT_APP_NAME, facility: str = DEFAULT_FACILITY,
                  hostname: str | None = None, procid: int | None = None) -> bytes:
    """One RFC 5424 message: header from the record, ``[dihya@32473 ...]`` structured data, the record as JSON (UTF-8, with BOM)."""
    outcome = _get(record, 'event', 'outcome')
    priority = FACILITIES[facility] * 8 + SEVERITIES.get(outcome if isinstance(outcome, str) else '', 5)
    stamp = record.get('@timestamp')
    stamp = stamp if isinstance(stamp, str) and TIMESTAMP_PATTERN.match(stamp) else '-'
    host = _ascii_field(_get(record, 'host', 'name') or hostname or socket.gethostname(), 255)
    msgid = _ascii_field(_first(_get(record, 'event', 'category')) or 'audit', 32)
    params = [
        ('id', event_id(record)),
        ('action', _get(record, 'event', 'action')),
        ('outcome', outcome),
        ('trace', _get(record, 'trace', 'id')),
        ('tenant', _get(record, 'organization', 'id')),
        ('seq', _get(record, 'dihya', 'audit', 'seq')),
    ]
    data = ' '.join(f'{key}="{_sd_value(value)}"' for key, value in params if value is not None)
    header = f'<{priority}>1 {stamp} {host} {_ascii_field(app_name, 48)} {procid if procid is not None else os.getpid()} {msgid} [{SD_ID} {data}] '
    return header.encode('utf-8') + b'\xef\xbb\xbf' + canonical(record).encode('utf-8')


def frame_octet_counting(message: bytes) -> bytes:
    """RFC 6587 octet-counting framing (also the framing of RFC 5425): ``LEN SP MSG``."""
    return str(len(message)).encode('ascii') + b' ' + message


def bulk_body(records: t.Sequence[t.Mapping[str, t.Any]], index: str) -> bytes:
    """Elasticsearch ``_bulk`` NDJSON: a ``create`` action with the record's id, then the ECS document, per record."""
    lines = []
    for record in records:
        lines.append(canonical({'create': {'_index': index, '_id': event_id(record)}}))
        lines.append(canonical(record))
    return ('\n'.join(lines) + '\n').encode('utf-8')


def hec_body(records: t.Sequence[t.Mapping[str, t.Any]], index: str | None) -> bytes:
    """Splunk HEC batch: one ``{"time", "host", "source", "sourcetype", "event"}`` object per record."""
    objects = []
    for record in records:
        envelope: dict[str, t.Any] = {'source': 'dihya.ops', 'sourcetype': '_json', 'event': record}
        epoch = _epoch(record.get('@timestamp'))
        if epoch is not None:
            envelope['time'] = epoch
        host = _get(record, 'host', 'name')
        if isinstance(host, str):
            envelope['host'] = host
        if index is not None:
            envelope['index'] = index
        objects.append(canonical(envelope))
    return '\n'.join(objects).encode('utf-8')


def _epoch(stamp: t.Any) -> float | None:
    if not isinstance(stamp, str) or not TIMESTAMP_PATTERN.match(stamp):
        return None
    parsed = datetime.datetime.fromisoformat(stamp.replace('Z', '+00:00'))
    return round(parsed.timestamp(), 6)
