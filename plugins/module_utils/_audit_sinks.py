# Copyright (c) Dihya ops maintainers
# GNU General Public License v3.0+ (see LICENSES/GPL-3.0-or-later.txt or https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later

# This module utility is PRIVATE to the collection. It can change at any time.

"""Forward audit records to network sinks through a durable local spool.

The audit file written by ``_audit.AuditLog`` is the source of truth. Each record meant for a network
sink is first written to the spool, one file per record and sink (``<spool>/<sink name>/<stamp>.json``,
mode 0600, atomic write, fsync, rename), and that file is removed only once the sink acknowledged it:

- syslog over TCP or TLS (RFC 5424 messages, octet-counting framing of RFC 6587 / RFC 5425): every
  message of the batch was written and the connection closed cleanly;
- syslog over UDP: the datagram was sent. UDP has no acknowledgement; delivery is best effort;
- Elasticsearch ``_bulk``: HTTP 2xx and the item created (or already there, HTTP 409 on ``create``
  with the record's id, so a retried record is not indexed twice);
- Splunk HEC and webhooks: HTTP 2xx.

Delivery is at least once: a record is sent again until acknowledged, so a receiver may see a
duplicate when an acknowledgement is lost; each record carries a stable id (the hmac of its audit
chain entry) to recognise it. Records a receiver refuses for good (an Elasticsearch item error other
than 409/429, a datagram too large for UDP) move to ``<sink>/rejected/`` and are reported, never deleted.

Every spool file is new: it is written under a temporary name and linked to its final name, which fails if
anything is there (see ``_safe_write``); a rejected record moves to ``rejected/`` the same way. A symbolic link,
FIFO or device found where a spool file, a reason file or the metrics file goes is refused, never written through.

Spool files hold only the record, never keys or tokens. Only one process delivers from a spool at a
time (an ``fcntl`` lock on ``<spool>/.lock``). The engine knows nothing about Ansible.
"""

from __future__ import annotations

import contextlib
import dataclasses
import datetime
import errno
import fcntl
import hashlib
import http.client
import json
import os
import re
import secrets
import socket
import ssl
import time
import traceback
import typing as t
import urllib.parse

from ansible_collections.dihya.ops.plugins.module_utils._metrics import MetricsError, check_metrics_path, read_textfile, write_textfile
from ansible_collections.dihya.ops.plugins.module_utils._safe_write import atomic_write, move_no_replace

try:
    from prometheus_client import CollectorRegistry
    from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily
    from prometheus_client.parser import text_string_to_metric_families
except ImportError:  # pragma: no cover - exercised by patching HAS_PROMETHEUS_CLIENT
    HAS_PROMETHEUS_CLIENT = False
    PROMETHEUS_CLIENT_IMPORT_ERROR: str | None = traceback.format_exc()
else:
    HAS_PROMETHEUS_CLIENT = True
    PROMETHEUS_CLIENT_IMPORT_ERROR = None


SINK_TYPES = ('syslog', 'elasticsearch', 'splunk_hec', 'webhook')
SYSLOG_PROTOCOLS = ('udp', 'tcp', 'tls')
SYSLOG_DEFAULT_PORTS = {'udp': 514, 'tcp': 514, 'tls': 6514}
FACILITIES = {
    'kern': 0, 'user': 1, 'mail': 2, 'daemon': 3, 'auth': 4, 'syslog': 5, 'lpr': 6, 'news': 7, 'uucp': 8, 'cron': 9,
    'authpriv': 10, 'ftp': 11, 'local0': 16, 'local1': 17, 'local2': 18, 'local3': 19, 'local4': 20, 'local5': 21,
    'local6': 22, 'local7': 23,
}
# Syslog severity by event outcome: notice for a success, warning otherwise.
SEVERITIES = {'success': 5, 'failure': 4, 'denied': 4}
DEFAULT_APP_NAME = 'dihya-audit'
DEFAULT_FACILITY = 'local0'
DEFAULT_INDEX = 'dihya-audit'
DEFAULT_TIMEOUT = 5.0
DEFAULT_DELIVERY_TIMEOUT = 10.0
DEFAULT_MAX_ATTEMPTS = 3
DEFAULT_MAX_ITEMS = 1000
# Structured-data id of RFC 5424 messages; 32473 is the private enterprise number reserved for documentation (RFC 5612).
SD_ID = 'dihya@32473'
SPOOL_SUFFIX = '.json'
REJECTED_DIR = 'rejected'
LOCK_NAME = '.lock'
FILE_MODE = 0o600
DIR_MODE = 0o700
MAX_RESPONSE_BYTES = 16 * 1024 * 1024
MAX_UDP_MESSAGE = 65000
NAME_PATTERN = re.compile(r'^[A-Za-z0-9][A-Za-z0-9_.-]{0,63}$')
SPOOL_FILE_PATTERN = re.compile(r'^[0-9]{20}-[0-9]+-[0-9a-f]{8}\.json$')
TIMESTAMP_PATTERN = re.compile(r'^[0-9]{4}-[0-9]{2}-[0-9]{2}T[0-9]{2}:[0-9]{2}:[0-9]{2}(\.[0-9]{1,6})?(Z|[+-][0-9]{2}:[0-9]{2})$')
METRIC_PREFIX = 'dihya_audit_delivery'
SINK_KEYS = frozenset((
    'type', 'name', 'url', 'host', 'port', 'protocol', 'index', 'token', 'ca_path', 'validate_certs', 'timeout', 'app_name', 'facility',
))


class SinkConfigError(Exception):
    """A sink specification is wrong. The message never holds the token."""


class SpoolError(Exception):
    """The spool cannot be written or read."""


# ---------------------------------------------------------------------------
# Sink specifications
# ---------------------------------------------------------------------------

@dataclasses.dataclass(frozen=True)
class SinkConfig:
    """One validated network sink."""

    type: str
    name: str
    url: str | None = None
    host: str | None = None
    port: int | None = None
    protocol: str | None = None
    index: str | None = None
    token: str | None = dataclasses.field(default=None, repr=False)
    ca_path: str | None = None
    validate_certs: bool = True
    timeout: float = DEFAULT_TIMEOUT
    app_name: str = DEFAULT_APP_NAME
    facility: str = DEFAULT_FACILITY

    @property
    def endpoint(self) -> str:
        """Where the sink sends, safe to show: no credentials and no query string."""
        if self.url is not None:
            parts = urllib.parse.urlsplit(self.url)
            return urllib.parse.urlunsplit((parts.scheme, _netloc(parts.hostname or '', parts.port), parts.path, '', ''))
        return f'{self.protocol}://{_netloc(self.host or "", self.port)}'


def _netloc(host: str, port: int | None) -> str:
    shown = f'[{host}]' if ':' in host else host
    return f'{shown}:{port}' if port is not None else shown


def default_sink_name(raw: t.Mapping[str, t.Any]) -> str:
    """A stable name for a sink without ``name``: its type and a digest of where it sends (never of its token)."""
    kind = raw.get('type')
    prefix = kind if isinstance(kind, str) and kind in SINK_TYPES else 'sink'
    described = {key: str(value) for key, value in raw.items() if key in ('type', 'url', 'host', 'port', 'protocol', 'index') and value is not None}
    digest = hashlib.sha256(json.dumps(described, sort_keys=True).encode()).hexdigest()[:12]
    return f'{prefix}-{digest}'


def sink_name(raw: t.Mapping[str, t.Any]) -> str:
    """The spool name of a sink: its ``name`` when valid, else :func:`default_sink_name`."""
    name = raw.get('name')
    if isinstance(name, str) and NAME_PATTERN.match(name) and name != REJECTED_DIR:
        return name
    return default_sink_name(raw)


def parse_sink(raw: t.Mapping[str, t.Any], position: int = 1) -> SinkConfig:
    """Validate one sink specification; raise :class:`SinkConfigError` naming the sink and the problem."""
    where = f'sink #{position}'
    if not isinstance(raw, t.Mapping):
        raise SinkConfigError(f'{where}: must be a dictionary')
    unknown = sorted(str(key) for key in raw if key not in SINK_KEYS)
    if unknown:
        raise SinkConfigError(f'{where}: unknown option(s) {", ".join(unknown)}')
    kind = raw.get('type')
    if kind not in SINK_TYPES:
        raise SinkConfigError(f'{where}: unknown type {_show(kind)}; expected one of {", ".join(SINK_TYPES)}')
    where = f'sink #{position} ({kind})'
    name = raw.get('name')
    if name is not None and (not isinstance(name, str) or not NAME_PATTERN.match(name) or name == REJECTED_DIR):
        raise SinkConfigError(f'{where}: name must be 1 to 64 letters, digits, ".", "_" or "-", starting with a letter or digit')
    token = _optional_str(raw, 'token', where)
    if token is not None and (not token or any(ord(char) < 32 or ord(char) == 127 for char in token)):
        raise SinkConfigError(f'{where}: token must be a non-empty string without control characters')
    ca_path = _optional_str(raw, 'ca_path', where)
    if ca_path is not None and not os.path.isfile(ca_path):
        raise SinkConfigError(f'{where}: ca_path {ca_path!r} is not a readable file')
    timeout = raw.get('timeout')
    if timeout is None:
        timeout = DEFAULT_TIMEOUT
    try:
        timeout = float(timeout)
    except (TypeError, ValueError):
        raise SinkConfigError(f'{where}: timeout must be a number of seconds') from None
    if not 0 < timeout <= 300:
        raise SinkConfigError(f'{where}: timeout must be more than 0 and at most 300 seconds')
    validate_certs = raw.get('validate_certs', True)
    if validate_certs is None:
        validate_certs = True
    if not isinstance(validate_certs, bool):
        raise SinkConfigError(f'{where}: validate_certs must be true or false')
    index = _optional_str(raw, 'index', where)
    common: dict[str, t.Any] = dict(
        type=kind, name=name or default_sink_name(raw), token=token, ca_path=ca_path, timeout=timeout, validate_certs=validate_certs,
    )
    if kind == 'syslog':
        return _parse_syslog(raw, where, common)
    for key in ('host', 'port', 'protocol', 'app_name', 'facility'):
        if raw.get(key) is not None:
            raise SinkConfigError(f'{where}: {key} is only for syslog sinks; give url')
    url = _parse_http_url(raw.get('url'), where)
    if kind == 'elasticsearch':
        if index is None:
            index = DEFAULT_INDEX
        if not re.match(r'^[a-z0-9][a-z0-9_.+-]{0,254}$', index) or index in ('.', '..'):
            raise SinkConfigError(f'{where}: index {index!r} is not a valid Elasticsearch index name (lowercase, no spaces or /\\*?"<>|,#:)')
    elif kind == 'splunk_hec':
        if token is None:
            raise SinkConfigError(f'{where}: token (the HEC token) is required')
        if index is not None and not re.match(r'^[A-Za-z0-9_][A-Za-z0-9_-]{0,79}$', index):
            raise SinkConfigError(f'{where}: index {index!r} is not a valid Splunk index name')
        parts = urllib.parse.urlsplit(url)
        if parts.path in ('', '/'):
            url = urllib.parse.urlunsplit((parts.scheme, parts.netloc, '/services/collector/event', parts.query, ''))
    elif index is not None:
        raise SinkConfigError(f'{where}: index is only for elasticsearch and splunk_hec sinks')
    return SinkConfig(url=url, index=index, **common)


def _parse_syslog(raw: t.Mapping[str, t.Any], where: str, common: dict[str, t.Any]) -> SinkConfig:
    url = raw.get('url')
    host = raw.get('host')
    port = raw.get('port')
    protocol = raw.get('protocol')
    if url is not None:
        if host is not None or port is not None or protocol is not None:
            raise SinkConfigError(f'{where}: give either url or host/port/protocol, not both')
        if not isinstance(url, str):
            raise SinkConfigError(f'{where}: url must be a string such as tcp://host:514')
        try:
            parts = urllib.parse.urlsplit(url)
            port = parts.port
        except ValueError:
            raise SinkConfigError(f'{where}: url has a bad port; expected udp://, tcp:// or tls://host:port') from None
        if parts.scheme not in SYSLOG_PROTOCOLS or not parts.hostname or parts.username is not None or parts.path not in ('', '/'):
            raise SinkConfigError(f'{where}: url must look like udp://host:514, tcp://host:514 or tls://host:6514')
        host, protocol = parts.hostname, parts.scheme
    if not isinstance(host, str) or not host or any(char.isspace() or char in '/@' for char in host):
        raise SinkConfigError(f'{where}: host (a host name or IP address) is required')
    if protocol is None:
        protocol = 'tcp'
    if protocol not in SYSLOG_PROTOCOLS:
        raise SinkConfigError(f'{where}: unknown protocol {_show(protocol)}; expected one of {", ".join(SYSLOG_PROTOCOLS)}')
    if port is None:
        port = SYSLOG_DEFAULT_PORTS[protocol]
    port = _parse_port(port, where)
    if common['token'] is not None or raw.get('index') is not None:
        raise SinkConfigError(f'{where}: token and index are not used by syslog sinks')
    app_name = raw.get('app_name')
    if app_name is None:
        app_name = DEFAULT_APP_NAME
    if not isinstance(app_name, str) or not re.match(r'^[!-~]{1,48}$', app_name):
        raise SinkConfigError(f'{where}: app_name must be 1 to 48 printable ASCII characters without spaces')
    facility = raw.get('facility')
    if facility is None:
        facility = DEFAULT_FACILITY
    if facility not in FACILITIES:
        raise SinkConfigError(f'{where}: unknown facility {_show(facility)}; expected one of {", ".join(FACILITIES)}')
    return SinkConfig(host=host, port=port, protocol=protocol, app_name=app_name, facility=facility, **common)


def _parse_http_url(url: t.Any, where: str) -> str:
    if not isinstance(url, str) or not url:
        raise SinkConfigError(f'{where}: url is required')
    try:
        parts = urllib.parse.urlsplit(url)
        port = parts.port
    except ValueError:
        raise SinkConfigError(f'{where}: url has a bad port') from None
    if parts.scheme not in ('http', 'https') or not parts.hostname:
        raise SinkConfigError(f'{where}: url must be an http:// or https:// URL with a host')
    if parts.username is not None or parts.password is not None:
        raise SinkConfigError(f'{where}: url must not hold credentials; give them in token')
    if port == 0:
        raise SinkConfigError(f'{where}: url has a bad port')
    if any(ord(char) <= 32 or ord(char) == 127 for char in url):
        raise SinkConfigError(f'{where}: url must not contain spaces or control characters')
    return url


def _parse_port(port: t.Any, where: str) -> int:
    if isinstance(port, bool):
        raise SinkConfigError(f'{where}: port must be a number from 1 to 65535')
    if isinstance(port, str) and port.strip().isdigit():
        port = int(port)
    if not isinstance(port, int) or not 1 <= port <= 65535:
        raise SinkConfigError(f'{where}: port must be a number from 1 to 65535, not {_show(port)}')
    return port


def _optional_str(raw: t.Mapping[str, t.Any], key: str, where: str) -> str | None:
    value = raw.get(key)
    if value is not None and not isinstance(value, str):
        raise SinkConfigError(f'{where}: {key} must be a string')
    return value


def _show(value: t.Any) -> str:
    text = repr(value)
    return text if len(text) <= 40 else text[:37] + '...'


# ---------------------------------------------------------------------------
# Record helpers and wire formats
# ---------------------------------------------------------------------------

def canonical(record: t.Mapping[str, t.Any]) -> str:
    return json.dumps(record, sort_keys=True, separators=(',', ':'), ensure_ascii=False)


def event_id(record: t.Mapping[str, t.Any]) -> str:
    """A stable id for a record: the hmac of its audit chain entry, else a digest of its canonical form."""
    audit = _get(record, 'dihya', 'audit')
    if isinstance(audit, dict) and isinstance(audit.get('hmac'), str) and re.match(r'^[0-9a-f]{16,128}$', audit['hmac']):
        return audit['hmac']
    return hashlib.sha256(canonical(record).encode()).hexdigest()


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
        lines.append(json.dumps({'create': {'_index': index, '_id': event_id(record)}}, separators=(',', ':')))
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


# ---------------------------------------------------------------------------
# Senders
# ---------------------------------------------------------------------------

OK = 'ok'
RETRY = 'retry'
REJECT = 'reject'


@dataclasses.dataclass
class Outcome:
    status: str  # OK, RETRY or REJECT
    message: str = ''


class Sender:
    """Sends batches of records to one sink; one :class:`Outcome` per record, in order. Never raises for network trouble."""

    batch_size = 1

    def __init__(self, config: SinkConfig) -> None:
        self.config = config

    def send(self, records: t.Sequence[t.Mapping[str, t.Any]], timeout: float) -> list[Outcome]:
        try:
            return self._send(records, max(0.1, min(self.config.timeout, timeout)))
        except (OSError, http.client.HTTPException, ValueError) as exc:
            return [Outcome(RETRY, self.redact(f'{self.config.endpoint}: {_describe(exc)}'))] * len(records)

    def _send(self, records: t.Sequence[t.Mapping[str, t.Any]], timeout: float) -> list[Outcome]:
        raise NotImplementedError  # pragma: no cover

    def redact(self, text: str) -> str:
        token = self.config.token
        return text.replace(token, '********') if token else text

    def ssl_context(self) -> ssl.SSLContext:
        context = ssl.create_default_context(cafile=self.config.ca_path)
        if not self.config.validate_certs:
            context.check_hostname = False
            context.verify_mode = ssl.CERT_NONE
        return context


def _describe(exc: BaseException) -> str:
    if isinstance(exc, ssl.SSLCertVerificationError):
        return f'TLS certificate verification failed ({exc.verify_message or exc.reason})'
    if isinstance(exc, (socket.timeout, TimeoutError)):
        return 'timed out'
    if isinstance(exc, ConnectionRefusedError):
        return 'connection refused'
    if isinstance(exc, ConnectionResetError):
        return 'connection reset by peer'
    if isinstance(exc, OSError) and exc.strerror:
        return exc.strerror.lower()
    return str(exc) or type(exc).__name__


class SyslogSender(Sender):
    batch_size = 100

    def __init__(self, config: SinkConfig, hostname: str | None = None) -> None:
        super().__init__(config)
        self.hostname = hostname

    def _message(self, record: t.Mapping[str, t.Any]) -> bytes:
        return format_syslog(record, app_name=self.config.app_name, facility=self.config.facility, hostname=self.hostname)

    def _send(self, records: t.Sequence[t.Mapping[str, t.Any]], timeout: float) -> list[Outcome]:
        if self.config.host is None or self.config.port is None:  # pragma: no cover - parse_sink always sets them
            raise ValueError('syslog sink without host or port')
        if self.config.protocol == 'udp':
            return self._send_udp(records, timeout)
        with socket.create_connection((self.config.host, self.config.port), timeout=timeout) as raw:
            if self.config.protocol == 'tls':
                with self.ssl_context().wrap_socket(raw, server_hostname=self.config.host) as sock:
                    self._write_all(sock, records)
                    sock.settimeout(min(1.0, timeout))
                    try:
                        sock.unwrap()  # close_notify, so the receiver sees a clean end of stream
                    except (ssl.SSLError, OSError):
                        pass
            else:
                self._write_all(raw, records)
                raw.shutdown(socket.SHUT_WR)
                _drain(raw)
        return [Outcome(OK)] * len(records)

    def _write_all(self, sock: socket.socket, records: t.Sequence[t.Mapping[str, t.Any]]) -> None:
        for record in records:
            sock.sendall(frame_octet_counting(self._message(record)))

    def _send_udp(self, records: t.Sequence[t.Mapping[str, t.Any]], timeout: float) -> list[Outcome]:
        outcomes = []
        family = socket.AF_INET6 if ':' in (self.config.host or '') else socket.AF_INET
        address = socket.getaddrinfo(self.config.host, self.config.port, family, socket.SOCK_DGRAM)[0][4]
        with socket.socket(family, socket.SOCK_DGRAM) as sock:
            sock.settimeout(timeout)
            for record in records:
                message = self._message(record)
                if len(message) > MAX_UDP_MESSAGE:
                    outcomes.append(Outcome(REJECT, f'{self.config.endpoint}: message of {len(message)} bytes is too large for UDP; use tcp or tls'))
                    continue
                try:
                    sock.sendto(message, address)
                    outcomes.append(Outcome(OK))
                except OSError as exc:
                    if exc.errno == errno.EMSGSIZE:
                        outcomes.append(Outcome(REJECT, f'{self.config.endpoint}: message too large for UDP; use tcp or tls'))
                    else:
                        outcomes.append(Outcome(RETRY, f'{self.config.endpoint}: {_describe(exc)}'))
        return outcomes


def _drain(sock: socket.socket, limit: float = 1.0) -> None:
    """Wait (briefly) for the receiver to close its side; a reset means it may not have read everything."""
    sock.settimeout(limit)
    try:
        while sock.recv(4096):
            pass
    except (socket.timeout, TimeoutError):
        pass


class HTTPSender(Sender):
    """POSTs to the sink's URL; subclasses build the body and read the answer."""

    content_type = 'application/json'

    def post(self, body: bytes, headers: dict[str, str], timeout: float) -> tuple[int, bytes]:
        parts = urllib.parse.urlsplit(self.config.url or '')
        connection: http.client.HTTPConnection
        if parts.scheme == 'https':
            connection = http.client.HTTPSConnection(parts.hostname or '', parts.port, timeout=timeout, context=self.ssl_context())
        else:
            connection = http.client.HTTPConnection(parts.hostname or '', parts.port, timeout=timeout)
        target = parts.path or '/'
        if parts.query:
            target += '?' + parts.query
        headers = dict(headers, **{'Content-Type': self.content_type, 'User-Agent': 'dihya.ops-audit_event'})
        if self.config.token is not None:
            headers['Authorization'] = self.authorization(self.config.token)
        try:
            connection.request('POST', target, body=body, headers=headers)
            response = connection.getresponse()
            data = response.read(MAX_RESPONSE_BYTES + 1)
            return response.status, data
        finally:
            connection.close()

    def authorization(self, token: str) -> str:
        return f'Bearer {token}'

    def http_error(self, status: int, data: bytes) -> str:
        # Redact before shortening, so that no part of the token survives a cut.
        text = self.redact(data[:65536].decode('utf-8', 'replace'))
        text = ''.join(char if char.isprintable() else ' ' for char in text).strip()[:200]
        return self.redact(f'{self.config.endpoint}: HTTP {status}' + (f': {text}' if text else ''))


class ElasticsearchSender(HTTPSender):
    batch_size = 200
    content_type = 'application/x-ndjson'

    def __init__(self, config: SinkConfig) -> None:
        parts = urllib.parse.urlsplit(config.url or '')
        if not parts.path.rstrip('/').endswith('/_bulk'):
            url = urllib.parse.urlunsplit((parts.scheme, parts.netloc, parts.path.rstrip('/') + '/_bulk', parts.query, ''))
            config = dataclasses.replace(config, url=url)
        super().__init__(config)

    def authorization(self, token: str) -> str:
        return f'ApiKey {token}'

    def _send(self, records: t.Sequence[t.Mapping[str, t.Any]], timeout: float) -> list[Outcome]:
        status, data = self.post(bulk_body(records, self.config.index or DEFAULT_INDEX), {}, timeout)
        if not 200 <= status < 300:
            return [Outcome(RETRY, self.http_error(status, data))] * len(records)
        try:
            answer = json.loads(data)
            items = answer['items']
            if not isinstance(items, list) or len(items) != len(records):
                raise ValueError('item count')
        except (ValueError, KeyError, TypeError):
            return [Outcome(RETRY, f'{self.config.endpoint}: the _bulk answer is not the expected JSON')] * len(records)
        outcomes = []
        for item in items:
            result = next(iter(item.values()), {}) if isinstance(item, dict) and item else {}
            item_status = result.get('status') if isinstance(result, dict) else None
            if isinstance(item_status, int) and (200 <= item_status < 300 or item_status == 409):
                outcomes.append(Outcome(OK))
                continue
            error = result.get('error') if isinstance(result, dict) else None
            reason = f'{error.get("type")}: {error.get("reason")}' if isinstance(error, dict) else str(error)
            message = self.redact(f'{self.config.endpoint}: item status {item_status}: {reason[:200]}')
            retryable = not isinstance(item_status, int) or item_status == 429 or item_status >= 500
            outcomes.append(Outcome(RETRY if retryable else REJECT, message))
        return outcomes


class SplunkHecSender(HTTPSender):
    batch_size = 100

    def authorization(self, token: str) -> str:
        return f'Splunk {token}'

    def _send(self, records: t.Sequence[t.Mapping[str, t.Any]], timeout: float) -> list[Outcome]:
        status, data = self.post(hec_body(records, self.config.index), {}, timeout)
        if 200 <= status < 300:
            return [Outcome(OK)] * len(records)
        return [Outcome(RETRY, self.http_error(status, data))] * len(records)


class WebhookSender(HTTPSender):
    batch_size = 1

    def _send(self, records: t.Sequence[t.Mapping[str, t.Any]], timeout: float) -> list[Outcome]:
        outcomes = []
        for record in records:
            status, data = self.post(canonical(record).encode('utf-8'), {'Idempotency-Key': event_id(record)}, timeout)
            outcomes.append(Outcome(OK) if 200 <= status < 300 else Outcome(RETRY, self.http_error(status, data)))
        return outcomes


def make_sender(config: SinkConfig, hostname: str | None = None) -> Sender:
    if config.type == 'syslog':
        return SyslogSender(config, hostname)
    if config.type == 'elasticsearch':
        return ElasticsearchSender(config)
    if config.type == 'splunk_hec':
        return SplunkHecSender(config)
    return WebhookSender(config)


# ---------------------------------------------------------------------------
# Spool
# ---------------------------------------------------------------------------

@dataclasses.dataclass(frozen=True)
class SpoolItem:
    sink: str
    path: str

    @property
    def name(self) -> str:
        return os.path.basename(self.path)


class Spool:
    """One directory per sink, one file per record; see the module docstring."""

    def __init__(self, directory: str) -> None:
        self.directory = os.path.abspath(directory)

    def _check_dir(self, path: str) -> None:
        try:
            info = os.lstat(path)
        except FileNotFoundError:
            return
        except OSError as exc:
            raise SpoolError(f'cannot examine the spool directory {path}: {exc.strerror}') from exc
        if not os.path.isdir(path) or os.path.islink(path) or info.st_mode & 0o170000 != 0o040000:
            raise SpoolError(f'the spool path {path} exists and is not a directory (symbolic links are refused)')

    def _ensure_dir(self, path: str) -> None:
        self._check_dir(path)
        try:
            os.makedirs(path, mode=DIR_MODE, exist_ok=True)
        except OSError as exc:
            raise SpoolError(f'cannot create the spool directory {path}: {exc.strerror}') from exc
        self._check_dir(path)

    def check(self) -> None:
        """Raise :class:`SpoolError` when the spool path exists and is not a directory (or is a symbolic link)."""
        self._check_dir(self.directory)

    def sink_dir(self, sink: str) -> str:
        if not NAME_PATTERN.match(sink) or sink == REJECTED_DIR:
            raise SpoolError(f'bad sink name for the spool: {sink!r}')
        return os.path.join(self.directory, sink)

    def put(self, sink: str, record: t.Mapping[str, t.Any]) -> SpoolItem:
        """Write ``record`` for ``sink``: temporary file, fsync, link to a new name (never over anything), fsync of the directory."""
        self._ensure_dir(self.directory)
        directory = self.sink_dir(sink)
        self._ensure_dir(directory)
        name = f'{time.time_ns():020d}-{os.getpid()}-{secrets.token_hex(4)}{SPOOL_SUFFIX}'
        final = os.path.join(directory, name)
        data = canonical(record).encode('utf-8') + b'\n'
        try:
            with atomic_write(final, mode=FILE_MODE) as handle:
                handle.write(data)
        except OSError as exc:
            raise SpoolError(f'cannot write to the spool {directory}: {exc.strerror}') from exc
        return SpoolItem(sink, final)

    def items(self, sink: str, limit: int | None = None) -> list[SpoolItem]:
        """Spooled records of ``sink``, oldest first."""
        directory = self.sink_dir(sink)
        self._check_dir(directory)
        try:
            names = sorted(name for name in os.listdir(directory) if SPOOL_FILE_PATTERN.match(name))
        except FileNotFoundError:
            return []
        except OSError as exc:
            raise SpoolError(f'cannot read the spool {directory}: {exc.strerror}') from exc
        return [SpoolItem(sink, os.path.join(directory, name)) for name in names[:limit]]

    def count(self, sink: str) -> int:
        return len(self.items(sink))

    def rejected(self, sink: str) -> int:
        directory = os.path.join(self.sink_dir(sink), REJECTED_DIR)
        try:
            return sum(1 for name in os.listdir(directory) if SPOOL_FILE_PATTERN.match(name))
        except OSError:
            return 0

    def sinks(self) -> list[str]:
        """Names of the sinks that have a spool directory."""
        try:
            names = os.listdir(self.directory)
        except OSError:
            return []
        return sorted(name for name in names if NAME_PATTERN.match(name) and os.path.isdir(os.path.join(self.directory, name)))

    def read(self, item: SpoolItem) -> dict[str, t.Any]:
        try:
            with open(item.path, encoding='utf-8') as handle:
                record = json.load(handle)
        except (OSError, ValueError) as exc:
            raise SpoolError(f'cannot read the spooled record {item.path}: {exc}') from exc
        if not isinstance(record, dict):
            raise SpoolError(f'the spooled record {item.path} is not a JSON object')
        return record

    def ack(self, item: SpoolItem) -> None:
        with contextlib.suppress(FileNotFoundError):
            os.unlink(item.path)

    def reject(self, item: SpoolItem, reason: str) -> None:
        """Move a record the sink refused for good to ``<sink>/rejected/``, with the reason next to it."""
        directory = os.path.join(self.sink_dir(item.sink), REJECTED_DIR)
        self._ensure_dir(directory)
        target = os.path.join(directory, item.name)
        try:
            # The reason file is ours (a regular one from an interrupted earlier move is replaced); the record itself
            # never replaces anything in rejected/.
            with atomic_write(target + '.reason', mode=FILE_MODE, force=True) as handle:
                handle.write((reason + '\n').encode('utf-8'))
            move_no_replace(item.path, target)
        except OSError as exc:
            raise SpoolError(f'cannot move a rejected record to {directory}: {exc.strerror}') from exc

    @contextlib.contextmanager
    def lock(self, timeout: float) -> t.Iterator[bool]:
        """Hold the delivery lock; yields False when another process keeps it longer than ``timeout``."""
        self._ensure_dir(self.directory)
        path = os.path.join(self.directory, LOCK_NAME)
        try:
            descriptor = os.open(path, os.O_RDWR | os.O_CREAT | os.O_NOFOLLOW, FILE_MODE)
        except OSError as exc:
            raise SpoolError(f'cannot open the spool lock {path}: {exc.strerror}') from exc
        try:
            expires = time.monotonic() + max(0.0, timeout)
            while True:
                try:
                    fcntl.flock(descriptor, fcntl.LOCK_EX | fcntl.LOCK_NB)
                    break
                except BlockingIOError:
                    if time.monotonic() >= expires:
                        yield False
                        return
                    time.sleep(0.05)
            yield True
        finally:
            os.close(descriptor)


# ---------------------------------------------------------------------------
# Delivery
# ---------------------------------------------------------------------------

@dataclasses.dataclass
class SinkReport:
    """What happened to one sink's records in one run."""

    name: str
    type: str
    endpoint: str
    queued: int = 0      # records put in the spool by this run
    sent: int = 0        # records the sink acknowledged in this run (new ones and older spooled ones)
    failed: int = 0      # records tried in this run and not acknowledged (still pending, or rejected)
    pending: int = 0     # records left in the spool after this run
    rejected: int = 0    # records the sink refused for good, kept in <spool>/<sink>/rejected/
    error: str | None = None

    def as_dict(self) -> dict[str, t.Any]:
        return dataclasses.asdict(self)


TOTAL_KEYS = ('queued', 'sent', 'failed', 'pending', 'rejected')


def totals(reports: t.Iterable[SinkReport]) -> dict[str, int]:
    reports = list(reports)
    return {key: sum(getattr(report, key) for report in reports) for key in TOTAL_KEYS}


def deliver(spool: Spool, sender: Sender, report: SinkReport, *, deadline: float, max_attempts: int = DEFAULT_MAX_ATTEMPTS,
            max_items: int = DEFAULT_MAX_ITEMS, sleep: t.Callable[[float], None] = time.sleep) -> SinkReport:
    """Send what the spool holds for one sink, oldest first, until ``deadline`` (a ``time.monotonic()`` value).

    Each record is tried at most ``max_attempts`` times in this run, and at most ``max_items`` records are
    taken. Whatever is not acknowledged stays in the spool for the next run. The caller holds the spool lock.
    """
    items = spool.items(report.name, max_items)
    records: dict[str, dict[str, t.Any]] = {}
    waiting: list[SpoolItem] = []
    for item in items:
        try:
            records[item.path] = spool.read(item)
            waiting.append(item)
        except SpoolError as exc:
            spool.reject(item, str(exc))
            report.failed += 1
            report.error = str(exc)
    final: dict[str, str] = {}
    for attempt in range(max(1, max_attempts)):
        if not waiting or time.monotonic() >= deadline:
            break
        if attempt:
            pause = min(0.2 * 2 ** (attempt - 1), deadline - time.monotonic())
            if pause > 0:
                sleep(pause)
        waiting = _attempt(spool, sender, report, waiting, records, final, deadline)
    if waiting and time.monotonic() >= deadline and report.error is None:
        report.error = f'{sender.config.endpoint}: delivery time is up; the rest stays in the spool'
    report.failed += sum(1 for status in final.values() if status != OK)
    report.pending = spool.count(report.name)
    report.rejected = spool.rejected(report.name)
    if not report.failed and not report.pending:
        report.error = None
    return report


def _attempt(spool: Spool, sender: Sender, report: SinkReport, waiting: list[SpoolItem], records: dict[str, dict[str, t.Any]],
             final: dict[str, str], deadline: float) -> list[SpoolItem]:
    """One pass over ``waiting`` in batches; returns what is still to send."""
    still: list[SpoolItem] = []
    position = 0
    while position < len(waiting):
        remaining = deadline - time.monotonic()
        if remaining <= 0:
            still.extend(waiting[position:])
            break
        batch = waiting[position:position + sender.batch_size]
        position += len(batch)
        outcomes = sender.send([records[item.path] for item in batch], remaining)
        for item, outcome in zip(batch, outcomes):
            final[item.path] = outcome.status
            if outcome.status == OK:
                spool.ack(item)
                report.sent += 1
            elif outcome.status == REJECT:
                spool.reject(item, outcome.message)
                report.error = outcome.message
            else:
                still.append(item)
                report.error = outcome.message
        if all(outcome.status == RETRY for outcome in outcomes):
            # The sink is not answering: keep the order and try the rest on the next attempt.
            still.extend(waiting[position:])
            break
    return still


# ---------------------------------------------------------------------------
# Metrics
# ---------------------------------------------------------------------------

EVENTS = f'{METRIC_PREFIX}_events'
PENDING = f'{METRIC_PREFIX}_pending'
REJECTED = f'{METRIC_PREFIX}_rejected'
LAST_SUCCESS = f'{METRIC_PREFIX}_last_success_timestamp_seconds'
STATES = ('queued', 'sent', 'failed')


def write_delivery_metrics(path: str, reports: t.Sequence[SinkReport], now: float | None = None) -> list[str]:
    """Replace the textfile at ``path``; counters continue from the previous file. Returns warnings.

    - ``dihya_audit_delivery_events_total{sink,type,state}``: records queued, sent and failed (counters);
    - ``dihya_audit_delivery_pending{sink,type}`` and ``..._rejected{sink,type}``: records in the spool;
    - ``dihya_audit_delivery_last_success_timestamp_seconds{sink,type}``: last run that sent something.

    The caller holds the spool lock, so two runs never write the file at the same time.
    """
    if not HAS_PROMETHEUS_CLIENT:
        raise MetricsError('writing metrics needs the prometheus_client Python library')
    check_metrics_path(path)
    now = time.time() if now is None else now
    warnings: list[str] = []
    counters: dict[tuple[str, str, str], float] = {}
    last_success: dict[tuple[str, str], float] = {}
    try:
        for family in text_string_to_metric_families(read_textfile(path) or ''):
            for sample in family.samples:
                labels = sample.labels
                if sample.name == f'{EVENTS}_total' and {'sink', 'type', 'state'} <= set(labels):
                    counters[(labels['sink'], labels['type'], labels['state'])] = float(sample.value)
                elif sample.name == LAST_SUCCESS and {'sink', 'type'} <= set(labels):
                    last_success[(labels['sink'], labels['type'])] = float(sample.value)
    except (MetricsError, ValueError, TypeError, KeyError, IndexError) as exc:
        warnings.append(f'cannot read the previous metrics file {path} ({exc}); counters start again from zero')
        counters, last_success = {}, {}
    for report in reports:
        for state in STATES:
            key = (report.name, report.type, state)
            counters[key] = counters.get(key, 0.0) + getattr(report, state)
        if report.sent:
            last_success[(report.name, report.type)] = now

    class Collector:
        def collect(self) -> t.Iterator[t.Any]:
            events = CounterMetricFamily(EVENTS, 'Audit records queued, sent and failed per network sink.', labels=('sink', 'type', 'state'))
            for (sink, kind, state), value in sorted(counters.items()):
                events.add_metric((sink, kind, state), value)
            yield events
            pending = GaugeMetricFamily(PENDING, 'Audit records waiting in the spool for the sink.', labels=('sink', 'type'))
            rejected = GaugeMetricFamily(REJECTED, 'Audit records the sink refused for good, kept in the spool.', labels=('sink', 'type'))
            for report in reports:
                pending.add_metric((report.name, report.type), report.pending)
                rejected.add_metric((report.name, report.type), report.rejected)
            yield pending
            yield rejected
            success = GaugeMetricFamily(LAST_SUCCESS, 'Unix time of the last run that delivered records to the sink.', labels=('sink', 'type'))
            for (sink, kind), value in sorted(last_success.items()):
                success.add_metric((sink, kind), value)
            yield success

    registry = CollectorRegistry(auto_describe=False)
    registry.register(Collector())  # type: ignore[arg-type]
    write_textfile(path, registry, 0o644)
    return warnings


# ---------------------------------------------------------------------------
# One run: plan the sinks, queue the record, deliver, report
# ---------------------------------------------------------------------------

@dataclasses.dataclass
class PlannedSink:
    """A sink as given: its spool name, and either its validated configuration or why it is invalid."""

    name: str
    type: str
    endpoint: str
    config: SinkConfig | None = None
    error: str | None = None


def plan_sinks(raws: t.Sequence[t.Any] | None) -> list[PlannedSink]:
    """Validate every sink; an invalid one keeps a spool name (so its records are kept) and an error."""
    planned: list[PlannedSink] = []
    seen: set[str] = set()
    for position, raw in enumerate(raws or (), start=1):
        mapping = raw if isinstance(raw, t.Mapping) else {}
        kind = mapping.get('type')
        shown_type = kind if isinstance(kind, str) and kind in SINK_TYPES else 'unknown'
        name = sink_name(mapping)
        try:
            config = parse_sink(raw, position)
        except SinkConfigError as exc:
            entry = PlannedSink(name=name, type=shown_type, endpoint='', error=str(exc))
        else:
            entry = PlannedSink(name=config.name, type=config.type, endpoint=config.endpoint, config=config)
        if entry.name in seen:
            entry = PlannedSink(name=entry.name, type=entry.type, endpoint=entry.endpoint,
                                error=f'sink #{position} ({entry.type}): same name as an earlier sink ({entry.name}); give each sink its own name')
        else:
            seen.add(entry.name)
        planned.append(entry)
    return planned


@dataclasses.dataclass
class DeliveryResult:
    reports: list[SinkReport]
    orphaned: list[dict[str, t.Any]] = dataclasses.field(default_factory=list)
    metrics_written: bool = False
    warnings: list[str] = dataclasses.field(default_factory=list)

    def total(self) -> dict[str, int]:
        result = totals(self.reports)
        result['pending'] += sum(item['pending'] for item in self.orphaned)
        result['rejected'] += sum(item['rejected'] for item in self.orphaned)
        return result

    def as_dict(self) -> dict[str, t.Any]:
        return {'total': self.total(), 'sinks': [report.as_dict() for report in self.reports], 'orphaned': list(self.orphaned)}


def _orphans(spool: Spool, planned: t.Sequence[PlannedSink]) -> list[dict[str, t.Any]]:
    """Spool directories of sinks no longer configured, when they still hold records."""
    names = {entry.name for entry in planned}
    found = []
    for name in spool.sinks():
        if name in names:
            continue
        pending, rejected = spool.count(name), spool.rejected(name)
        if pending or rejected:
            found.append({'name': name, 'directory': spool.sink_dir(name), 'pending': pending, 'rejected': rejected})
    return found


def preview(spool: Spool, planned: t.Sequence[PlannedSink]) -> DeliveryResult:
    """What a run would queue, without writing or sending anything (check mode)."""
    spool.check()
    reports = []
    for entry in planned:
        report = SinkReport(entry.name, entry.type, entry.endpoint, queued=1, error=entry.error)
        report.pending = spool.count(entry.name) + 1
        report.rejected = spool.rejected(entry.name)
        reports.append(report)
    return DeliveryResult(reports, _orphans(spool, planned))


def forward(spool: Spool, record: t.Mapping[str, t.Any], planned: t.Sequence[PlannedSink], *,
            delivery_timeout: float = DEFAULT_DELIVERY_TIMEOUT, max_attempts: int = DEFAULT_MAX_ATTEMPTS, max_items: int = DEFAULT_MAX_ITEMS,
            metrics_path: str | None = None, hostname: str | None = None) -> DeliveryResult:
    """Queue ``record`` for every sink (invalid ones included, so it is kept), then deliver what the spool holds.

    Raises :class:`SpoolError` when the record cannot be queued; delivery problems only show in the reports.
    """
    deadline = time.monotonic() + delivery_timeout
    reports = [SinkReport(entry.name, entry.type, entry.endpoint, error=entry.error) for entry in planned]
    for entry, report in zip(planned, reports):
        spool.put(entry.name, record)
        report.queued = 1
    result = DeliveryResult(reports)
    if not planned:
        # No network sink: nothing to send and no metrics to write; only report what an older configuration left.
        result.orphaned = _orphans(spool, planned)
        return result
    with spool.lock(delivery_timeout) as locked:
        for position, (entry, report) in enumerate(zip(planned, reports)):
            if not locked:
                report.error = report.error or 'another run holds the spool lock; the records stay in the spool for the next run'
            elif entry.config is None:
                report.failed = 1
            else:
                # Each sink gets a fair share of the time left, so one silent sink cannot starve the others.
                share = (deadline - time.monotonic()) / (len(planned) - position)
                deliver(spool, make_sender(entry.config, hostname), report, deadline=time.monotonic() + share,
                        max_attempts=max_attempts, max_items=max_items)
            report.pending = spool.count(entry.name)
            report.rejected = spool.rejected(entry.name)
        result.orphaned = _orphans(spool, planned)
        if metrics_path and locked:
            result.warnings.extend(write_delivery_metrics(metrics_path, reports))
            result.metrics_written = True
        elif metrics_path:
            result.warnings.append(f'metrics not written: another run holds the spool lock of {spool.directory}')
    return result
