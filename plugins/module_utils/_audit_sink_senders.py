# Copyright (c) Dihya ops maintainers
# GNU General Public License v3.0+ (see LICENSES/GPL-3.0-or-later.txt or https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later

# This module utility is PRIVATE to the collection. It can change at any time.

"""Send batches of audit records to one network sink and tell, per record, whether the sink acknowledged it.

A sender never raises for network trouble: each record gets an :class:`Outcome`,

- ``OK``: acknowledged. syslog over TCP or TLS: every message of the batch was written and the connection
  closed cleanly; syslog over UDP: the datagram was sent (UDP has no acknowledgement; best effort);
  Elasticsearch ``_bulk``: HTTP 2xx and the item created (or already there, HTTP 409 on ``create`` with the
  record's id); Splunk HEC and webhooks: HTTP 2xx;
- ``RETRY``: not acknowledged, send it again later;
- ``REJECT``: refused for good (an Elasticsearch item error other than 409/429, a datagram too large for UDP).

No message of a sender holds the sink's token.
"""

from __future__ import annotations

import contextlib
import dataclasses
import errno
import http.client
import json
import socket
import ssl
import typing as t
import urllib.parse

from ansible_collections.dihya.ops.plugins.module_utils._audit_sink_config import DEFAULT_INDEX, SinkConfig
from ansible_collections.dihya.ops.plugins.module_utils._audit_wire import bulk_body, event_id, format_syslog, frame_octet_counting, hec_body
from ansible_collections.dihya.ops.plugins.module_utils._canonical import canonical
from ansible_collections.dihya.ops.plugins.module_utils._db_url import scrub

MAX_RESPONSE_BYTES = 16 * 1024 * 1024
MAX_UDP_MESSAGE = 65000
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
        """``text`` with the sink's token masked."""
        return scrub(text, (self.config.token,) if self.config.token else ())

    def ssl_context(self) -> ssl.SSLContext:
        context = ssl.create_default_context(cafile=self.config.ca_path)
        if not self.config.validate_certs:
            context.check_hostname = False
            context.verify_mode = ssl.CERT_NONE
        return context


def _describe(exc: BaseException) -> str:
    if isinstance(exc, ssl.SSLCertVerificationError):
        return f'TLS certificate verification failed ({exc.verify_message or exc.reason})'
    if isinstance(exc, TimeoutError):  # socket.timeout is TimeoutError
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
                    with contextlib.suppress(ssl.SSLError, OSError):
                        sock.unwrap()  # close_notify, so the receiver sees a clean end of stream
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
    except TimeoutError:
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
        outcomes: list[Outcome] = []
        for item in items:
            result: t.Any = next(iter(item.values()), {}) if isinstance(item, dict) and item else {}
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
