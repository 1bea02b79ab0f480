# Copyright (c) Dihya ops maintainers
# GNU General Public License v3.0+ (see LICENSES/GPL-3.0-or-later.txt or https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later

"""Real receivers for audit sinks, on loopback: an rsyslog daemon and a flaky HTTP collector.

Plain module (no fixtures) so unit and functional tests can both use it:

    with Rsyslog.start(tmp_path, tls=tls_material) as rsyslog:
        ... send to rsyslog.udp_port / rsyslog.tcp_port / rsyslog.tls_port ...
        messages = rsyslog.wait_for(2)

    with FlakyHTTPReceiver(fail_first=2, failure='reset') as receiver:
        ... POST to receiver.url('/_bulk') ...
        assert receiver.duplicates() == {}

Every wait is bounded; every process started here is stopped by PID.
"""

from __future__ import annotations

import collections
import http.server
import json
import os
import shutil
import signal
import socket
import subprocess
import threading
import time
import typing as t

RSYSLOG_CONF = """\
global(workDirectory="{dir}/work" maxMessageSize="64k")
module(load="imudp")
module(load="imtcp" maxSessions="200")
input(type="imudp" address="127.0.0.1" port="0" ruleset="audit")
input(type="imtcp" address="127.0.0.1" port="0" listenPortFileName="{dir}/tcp.port" ruleset="audit")
{tls_input}
template(name="audit_json" type="list" option.jsonf="on") {{
  property(outname="pri" name="pri" format="jsonf")
  property(outname="facility" name="syslogfacility-text" format="jsonf")
  property(outname="severity" name="syslogseverity-text" format="jsonf")
  property(outname="version" name="protocol-version" format="jsonf")
  property(outname="timestamp" name="timereported" dateFormat="rfc3339" format="jsonf")
  property(outname="hostname" name="hostname" format="jsonf")
  property(outname="app_name" name="app-name" format="jsonf")
  property(outname="procid" name="procid" format="jsonf")
  property(outname="msgid" name="msgid" format="jsonf")
  property(outname="structured_data" name="structured-data" format="jsonf")
  property(outname="input" name="inputname" format="jsonf")
  property(outname="msg" name="msg" format="jsonf")
}}
ruleset(name="audit") {{
  action(type="omfile" file="{dir}/messages.jsonl" template="audit_json" flushOnTXEnd="on" asyncWriting="off")
}}
"""

TLS_INPUT = """\
input(type="imtcp" address="127.0.0.1" port="0" listenPortFileName="{dir}/tls.port" ruleset="audit"
      streamDriver.name="gtls" streamDriver.mode="1" streamDriver.authMode="anon"
      streamDriver.CAFile="{ca}" streamDriver.CertFile="{cert}" streamDriver.KeyFile="{key}")
"""


class ReceiverUnavailable(Exception):
    """The receiver cannot run on this machine (for example rsyslog is not installed)."""


def rsyslogd_path() -> str | None:
    return shutil.which('rsyslogd') or next((path for path in ('/usr/sbin/rsyslogd', '/sbin/rsyslogd') if os.access(path, os.X_OK)), None)


def rsyslog_has_tls() -> bool:
    """Whether the GnuTLS network stream driver (Debian package rsyslog-gnutls) is installed."""
    return any(os.path.exists(os.path.join(directory, 'lmnsd_gtls.so'))
               for directory in ('/usr/lib/x86_64-linux-gnu/rsyslog', '/usr/lib/aarch64-linux-gnu/rsyslog', '/usr/lib/rsyslog', '/usr/lib64/rsyslog'))


def _udp_port_of(pid: int) -> int | None:
    """The loopback UDP port the process ``pid`` listens on, from /proc (imudp has no port file)."""
    inodes = set()
    try:
        for name in os.listdir(f'/proc/{pid}/fd'):
            with_link = os.readlink(f'/proc/{pid}/fd/{name}')
            if with_link.startswith('socket:['):
                inodes.add(with_link[8:-1])
        with open('/proc/net/udp', encoding='ascii') as handle:
            for line in handle.readlines()[1:]:
                fields = line.split()
                if fields[9] in inodes and fields[1].startswith('0100007F:'):
                    return int(fields[1].split(':')[1], 16)
    except (OSError, IndexError, ValueError):
        return None
    return None


class Rsyslog:
    """A real rsyslogd in the foreground (``-n``), with its own config, work directory and pid file.

    It receives RFC 5424 messages on loopback UDP, TCP and (when ``tls`` is given and rsyslog-gnutls is
    installed) TLS, and writes each one as a JSON line of its parsed fields to ``messages.jsonl``.
    """

    def __init__(self, directory: str, process: subprocess.Popen[bytes], udp_port: int, tcp_port: int, tls_port: int | None) -> None:
        self.directory = directory
        self.process = process
        self.udp_port = udp_port
        self.tcp_port = tcp_port
        self.tls_port = tls_port
        self.output = os.path.join(directory, 'messages.jsonl')

    @classmethod
    def start(cls, directory: str | os.PathLike[str], tls: t.Any = None, timeout: float = 15) -> Rsyslog:
        """Start rsyslogd in ``directory``; ``tls`` is an object with ``ca_path``, ``cert_path`` and ``key_path``."""
        binary = rsyslogd_path()
        if binary is None:
            raise ReceiverUnavailable('rsyslogd is not installed (Debian package rsyslog)')
        directory = os.fspath(directory)
        os.makedirs(os.path.join(directory, 'work'), exist_ok=True)
        tls_input = ''
        if tls is not None:
            if not rsyslog_has_tls():
                raise ReceiverUnavailable('the rsyslog GnuTLS driver is not installed (Debian package rsyslog-gnutls)')
            tls_input = TLS_INPUT.format(dir=directory, ca=tls.ca_path, cert=tls.cert_path, key=tls.key_path)
        config = os.path.join(directory, 'rsyslog.conf')
        with open(config, 'w', encoding='utf-8') as handle:
            handle.write(RSYSLOG_CONF.format(dir=directory, tls_input=tls_input))
        with open(os.path.join(directory, 'rsyslogd.log'), 'wb') as log:
            process = subprocess.Popen(  # pylint: disable=consider-using-with
                [binary, '-n', '-f', config, '-i', os.path.join(directory, 'rsyslogd.pid')],
                stdout=log, stderr=log, stdin=subprocess.DEVNULL,
            )
        expires = time.monotonic() + timeout
        ports: dict[str, int | None] = {'tcp': None, 'tls': None, 'udp': None}
        try:
            while True:
                for name in ('tcp', 'tls'):
                    path = os.path.join(directory, f'{name}.port')
                    if ports[name] is None and os.path.exists(path):
                        with open(path, encoding='ascii') as handle:
                            text = handle.read().strip()
                        ports[name] = int(text) if text.isdigit() else None
                if ports['udp'] is None:
                    ports['udp'] = _udp_port_of(process.pid)
                if ports['tcp'] and ports['udp'] and (ports['tls'] or tls is None):
                    break
                if process.poll() is not None or time.monotonic() > expires:
                    raise ReceiverUnavailable(f'rsyslogd did not start: {cls._log_tail(directory)}')
                time.sleep(0.05)
        except BaseException:
            _stop(process)
            raise
        return cls(directory, process, ports['udp'], ports['tcp'], ports['tls'])

    @staticmethod
    def _log_tail(directory: str) -> str:
        try:
            with open(os.path.join(directory, 'rsyslogd.log'), encoding='utf-8', errors='replace') as handle:
                return handle.read()[-500:]
        except OSError:
            return ''

    def log(self) -> str:
        """rsyslogd's own messages (errors and warnings)."""
        return self._log_tail(self.directory)

    def messages(self) -> list[dict[str, t.Any]]:
        """Messages received so far, one dictionary of parsed fields each (see ``RSYSLOG_CONF``)."""
        try:
            with open(self.output, encoding='utf-8') as handle:
                return [json.loads(line) for line in handle if line.endswith('\n')]
        except FileNotFoundError:
            return []

    def wait_for(self, count: int, timeout: float = 10) -> list[dict[str, t.Any]]:
        """Wait until at least ``count`` messages arrived; return them all (fewer if the time is up)."""
        expires = time.monotonic() + timeout
        while True:
            found = self.messages()
            if len(found) >= count or time.monotonic() > expires:
                return found
            time.sleep(0.05)

    def stop(self) -> None:
        _stop(self.process)

    def __enter__(self) -> Rsyslog:
        return self

    def __exit__(self, *exc_info: t.Any) -> None:
        self.stop()


def _stop(process: subprocess.Popen[bytes], timeout: float = 10) -> None:
    if process.poll() is None:
        process.send_signal(signal.SIGTERM)
        try:
            process.wait(timeout)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait(timeout)


# ---------------------------------------------------------------------------
# HTTP collector
# ---------------------------------------------------------------------------

class _Handler(http.server.BaseHTTPRequestHandler):
    protocol_version = 'HTTP/1.1'
    server: _Server

    def log_message(self, format: str, *args: t.Any) -> None:  # pylint: disable=redefined-builtin
        """Quiet."""

    def do_POST(self) -> None:  # pylint: disable=invalid-name
        receiver = self.server.receiver
        length = int(self.headers.get('Content-Length') or 0)
        body = self.rfile.read(length) if length else b''
        with receiver.lock:
            receiver.requests += 1
            number = receiver.requests
            receiver.headers.append({name.lower(): value for name, value in self.headers.items()})
        if number <= receiver.fail_first:
            if receiver.failure == 'reset':
                # Close with RST: the client sees "connection reset by peer".
                self.connection.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, b'\x01\x00\x00\x00\x00\x00\x00\x00')
                self.close_connection = True
                self.connection.close()
                return
            page: dict[str, t.Any] = {}
            if receiver.echo_on_failure:
                # A careless server that echoes the request headers in its error page.
                page['authorization'] = self.headers.get('Authorization')
                page['request_headers'] = dict(self.headers.items())
            page.update({'error': 'temporarily unavailable', 'attempt': number})
            self._reply(receiver.failure_status, page)
            return
        if receiver.token is not None and self.headers.get('Authorization') != receiver.expected_authorization():
            self._reply(401 if receiver.kind != 'splunk_hec' else 403, {'text': 'Invalid token', 'code': 4})
            return
        if receiver.answer is not None:
            self._reply(200, receiver.answer)
            return
        events = receiver.parse(self.path, body)
        if events is None:
            self._reply(400, {'text': 'Invalid data format', 'code': 6})
            return
        items: list[dict[str, t.Any]] = []
        with receiver.lock:
            for event_id, document in events:
                status = receiver.item_status.get(event_id, 201)
                if status < 300:
                    receiver.events.append((event_id, document))
                    receiver.received_ids[event_id] += 1
                items.append({'create': {'_index': 'x', '_id': event_id, 'status': status,
                                         **({'error': {'type': 'mapper_parsing_exception', 'reason': 'failed to parse'}} if status >= 300 else {})}})
        if receiver.kind == 'elasticsearch':
            self._reply(200, {'took': 1, 'errors': any(item['create']['status'] >= 300 for item in items), 'items': items})
        elif receiver.kind == 'splunk_hec':
            self._reply(200, {'text': 'Success', 'code': 0})
        else:
            self._reply(202, {'accepted': True})

    def _reply(self, status: int, body: t.Any) -> None:
        data = json.dumps(body).encode()
        self.send_response(status)
        self.send_header('Content-Type', 'application/json')
        self.send_header('Content-Length', str(len(data)))
        self.end_headers()
        self.wfile.write(data)


class _Server(http.server.ThreadingHTTPServer):
    daemon_threads = True
    receiver: FlakyHTTPReceiver

    def handle_error(self, request: t.Any, client_address: t.Any) -> None:
        """Resets are part of the tests."""


class FlakyHTTPReceiver:
    """An HTTP collector on 127.0.0.1 that fails its first ``fail_first`` requests, then accepts.

    ``kind`` picks the protocol it speaks: ``elasticsearch`` (``_bulk`` NDJSON in, bulk answer out,
    ``item_status`` forces an item status by event id), ``splunk_hec`` (``{"event": ...}`` objects,
    ``Authorization: Splunk <token>``) or ``webhook`` (one JSON record per request). ``failure`` is
    ``'500'`` (HTTP ``failure_status``) or ``'reset'`` (connection reset). Every accepted event is kept
    with its id, so tests can count duplicates. ``echo_on_failure`` puts the request headers in the
    failure answers, as careless servers do.
    """

    def __init__(self, kind: str = 'webhook', fail_first: int = 0, failure: str = '500', failure_status: int = 500,
                 token: str | None = None, tls_context: t.Any = None, echo_on_failure: bool = False) -> None:
        self.kind = kind
        self.echo_on_failure = echo_on_failure
        self.fail_first = fail_first
        self.failure = failure
        self.failure_status = failure_status
        self.token = token
        self.item_status: dict[str, int] = {}
        # When set, every accepted request gets this JSON answer (HTTP 200) and nothing is recorded.
        self.answer: t.Any = None
        self.lock = threading.Lock()
        self.requests = 0
        self.headers: list[dict[str, str]] = []
        self.events: list[tuple[str, dict[str, t.Any]]] = []
        self.received_ids: collections.Counter[str] = collections.Counter()
        self.bad_bodies: list[bytes] = []
        self.server = _Server(('127.0.0.1', 0), _Handler)
        self.server.receiver = self
        if tls_context is not None:
            self.server.socket = tls_context.wrap_socket(self.server.socket, server_side=True)
        self.scheme = 'https' if tls_context is not None else 'http'
        self.thread = threading.Thread(target=self.server.serve_forever, kwargs={'poll_interval': 0.05}, daemon=True)
        self.thread.start()

    @property
    def port(self) -> int:
        return self.server.server_address[1]

    def url(self, path: str = '/') -> str:
        return f'{self.scheme}://127.0.0.1:{self.port}{path}'

    def expected_authorization(self) -> str:
        scheme = {'elasticsearch': 'ApiKey', 'splunk_hec': 'Splunk'}.get(self.kind, 'Bearer')
        return f'{scheme} {self.token}'

    def parse(self, path: str, body: bytes) -> list[tuple[str, dict[str, t.Any]]] | None:
        """Events of one request as (id, document); None when the body is not in the expected format."""
        try:
            if self.kind == 'elasticsearch':
                if not path.split('?')[0].endswith('/_bulk') or not body.endswith(b'\n'):
                    raise ValueError('not a _bulk request')
                lines = body.decode().split('\n')[:-1]
                if len(lines) % 2:
                    raise ValueError('odd line count')
                found = []
                for action_line, document_line in zip(lines[::2], lines[1::2], strict=True):
                    action = json.loads(action_line)['create']
                    found.append((action['_id'], json.loads(document_line)))
                return found
            if self.kind == 'splunk_hec':
                decoder = json.JSONDecoder()
                text = body.decode()
                found, position = [], 0
                while position < len(text):
                    if text[position].isspace():
                        position += 1
                        continue
                    envelope, position = decoder.raw_decode(text, position)
                    record = envelope['event']
                    found.append((record['dihya']['audit']['hmac'], envelope))
                return found
            record = json.loads(body)
            return [(self.headers[-1].get('idempotency-key', ''), record)]
        except (ValueError, KeyError, TypeError):
            self.bad_bodies.append(body)
            return None

    def duplicates(self) -> dict[str, int]:
        """Event ids received more than once, with their counts."""
        with self.lock:
            return {event_id: count for event_id, count in self.received_ids.items() if count > 1}

    def stop(self) -> None:
        self.server.shutdown()
        self.server.server_close()
        self.thread.join(5)

    def __enter__(self) -> FlakyHTTPReceiver:
        return self

    def __exit__(self, *exc_info: t.Any) -> None:
        self.stop()
