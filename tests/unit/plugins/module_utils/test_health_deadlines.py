# Copyright (c) Dihya ops maintainers
# GNU General Public License v3.0+ (see LICENSES/GPL-3.0-or-later.txt or https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later

"""Tests of the deadlines: every phase of an attempt and the whole run stay bounded, whatever the peer or the system does."""

from __future__ import annotations

import contextlib
import json
import os
import pathlib
import socket
import threading
import time
import typing as t

import pytest

from ansible_collections.dihya.ops.plugins.module_utils import _probe_common, _probe_process
from ansible_collections.dihya.ops.plugins.module_utils._health import CheckSpec, run_checks
from ansible_collections.dihya.ops.tests.unit.plugins.module_utils.health_utils import check

if t.TYPE_CHECKING:
    from ansible_collections.dihya.ops.tests.unit.conftest import Server


# ---------------------------------------------------------------------------
# Deadlines: the whole attempt, every phase, whatever the peer does
# ---------------------------------------------------------------------------

# Seconds over the bound a loaded machine may take (a bound, not a benchmark); below every hung peer's own delay
# (3 s and more), and the messages say which deadline ended the check.
MARGIN = 2.5

# What a slow peer does with each connection: (connection, stopped).
Script = t.Callable[[socket.socket, threading.Event], None]
Peers = t.Callable[[Script], 'SlowPeer']


class SlowPeer:
    """A loopback TCP server that runs ``script(connection, stopped)`` for every connection, in its own thread."""

    def __init__(self, script: Script) -> None:
        self.script = script
        self.pause = 0.0  # seconds between two bytes, for the scripts that trickle
        self.stopped = threading.Event()
        self.sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        self.sock.bind(('127.0.0.1', 0))
        self.sock.listen(16)
        self.sock.settimeout(0.1)
        self.port = self.sock.getsockname()[1]
        self.threads = [threading.Thread(target=self._accept, daemon=True)]
        self.threads[0].start()

    def _accept(self) -> None:
        while not self.stopped.is_set():
            try:
                connection, _address = self.sock.accept()
            except OSError:
                continue
            thread = threading.Thread(target=self._serve, args=(connection,), daemon=True)
            self.threads.append(thread)
            thread.start()

    def _serve(self, connection: socket.socket) -> None:
        with connection, contextlib.suppress(OSError):
            self.script(connection, self.stopped)

    def stop(self) -> None:
        self.stopped.set()
        self.sock.close()
        for thread in self.threads:
            thread.join(5)


def _read_request(connection: socket.socket) -> None:
    data = b''
    while b'\r\n\r\n' not in data:
        chunk = connection.recv(4096)
        if not chunk:
            return
        data += chunk


def _trickle(connection: socket.socket, stopped: threading.Event, data: bytes, pause: float) -> None:
    for index in range(len(data)):
        if stopped.wait(pause):
            return
        connection.sendall(data[index:index + 1])


def trickled_status_line(connection: socket.socket, stopped: threading.Event) -> None:
    _read_request(connection)
    _trickle(connection, stopped, b'HTTP/1.1 200 ' + b'O' * 60000, 0.05)


def trickled_headers(connection: socket.socket, stopped: threading.Event) -> None:
    _read_request(connection)
    connection.sendall(b'HTTP/1.1 200 OK\r\n')
    for index in range(99):
        if stopped.wait(0.2):
            return
        connection.sendall(f'X-Pad-{index}: {index}\r\n'.encode())


def trickled_body(connection: socket.socket, stopped: threading.Event) -> None:
    _read_request(connection)
    connection.sendall(b'HTTP/1.1 200 OK\r\nContent-Length: 100000\r\n\r\n')
    _trickle(connection, stopped, b'x' * 100000, 0.05)


def trickled_chunks(connection: socket.socket, stopped: threading.Event) -> None:
    _read_request(connection)
    connection.sendall(b'HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n')
    while not stopped.wait(0.1):
        connection.sendall(b'1\r\nx\r\n')


def never_respond(connection: socket.socket, stopped: threading.Event) -> None:
    stopped.wait(30)


@pytest.fixture
def slow_peer() -> t.Iterator[Peers]:
    peers: list[SlowPeer] = []

    def start(script: Script) -> SlowPeer:
        peers.append(SlowPeer(script))
        return peers[-1]

    yield start
    for peer in peers:
        peer.stop()


@pytest.fixture
def slow_tls_proxy(https_server: Server) -> t.Iterator[SlowPeer]:
    """A proxy in front of the HTTPS server that relays the server's bytes one every 20 ms (``peer.pause``): a handshake of many seconds."""
    def relay(client: socket.socket, stopped: threading.Event) -> None:
        with socket.create_connection(('127.0.0.1', https_server.port), timeout=5) as upstream:
            def forward() -> None:
                try:
                    while not stopped.is_set():
                        data = client.recv(4096)
                        if not data:
                            return
                        upstream.sendall(data)
                except OSError:
                    return
            threading.Thread(target=forward, daemon=True).start()
            upstream.settimeout(0.2)
            while not stopped.is_set():
                try:
                    data = upstream.recv(4096)
                except TimeoutError:
                    continue
                if not data:
                    return
                _trickle(client, stopped, data, peer.pause)

    peer = SlowPeer(relay)
    peer.pause = 0.02
    yield peer
    peer.stop()


class TestDeadlines:
    @pytest.mark.parametrize('script, phase', [
        (trickled_status_line, 'while reading the status line and headers'),
        (trickled_headers, 'while reading the status line and headers'),
        (trickled_body, 'while reading the response body'),
        (trickled_chunks, 'while reading the response body'),
        (never_respond, 'while reading the status line and headers'),
    ])
    @pytest.mark.parametrize('timeout, deadline, retries', [(0.6, None, 0), (2, 0.8, 0), (0.4, 1.2, 3)])
    def test_http_attempt_and_run_are_bounded(self, slow_peer: Peers, script: Script, phase: str, timeout: float, deadline: float | None,
                                              retries: int) -> None:
        peer = slow_peer(script)
        started = time.monotonic()
        [result] = run_checks([CheckSpec('slow', 'http', {'url': f'http://127.0.0.1:{peer.port}/'}, timeout=timeout)],
                              retries=retries, delay=0.1, deadline=deadline)
        elapsed = time.monotonic() - started
        bound = deadline if deadline is not None else timeout * (retries + 1)
        assert elapsed < bound + MARGIN, f'{elapsed:.2f} s'
        assert result.status == 'failed'
        assert result.message.startswith(f'deadline exceeded {phase} ('), result.message
        if deadline is not None and deadline < timeout:
            assert result.message.endswith(f'(run deadline {deadline:g} s)')

    def test_the_case_of_the_report(self, slow_peer: Peers) -> None:
        """A header every 0.5 s, timeout 2, deadline 4: the check ends at the deadline, not after 50 s."""
        def every_half_second(connection: socket.socket, stopped: threading.Event) -> None:
            _read_request(connection)
            connection.sendall(b'HTTP/1.1 200 OK\r\n')
            for index in range(99):
                if stopped.wait(0.5):
                    return
                connection.sendall(f'X-Pad-{index}: {index}\r\n'.encode())

        peer = slow_peer(every_half_second)
        started = time.monotonic()
        [result] = run_checks([CheckSpec('slow', 'http', {'url': f'http://127.0.0.1:{peer.port}/'}, timeout=2)], retries=5, delay=0, deadline=4)
        assert time.monotonic() - started < 4 + MARGIN
        assert result.message.startswith('deadline exceeded while reading the status line and headers')
        assert result.attempts == 2

    @pytest.mark.parametrize('check_type, options', [
        ('https', {'validate_certs': False}),
        ('tls_cert', {}),
    ])
    @pytest.mark.parametrize('peer_kind', ['silent', 'trickled handshake'])
    def test_tls_handshake_is_bounded(self, slow_peer: Peers, slow_tls_proxy: SlowPeer, check_type: str, options: dict[str, t.Any],
                                      peer_kind: str) -> None:
        port = slow_peer(never_respond).port if peer_kind == 'silent' else slow_tls_proxy.port
        options = dict(options, url=f'https://127.0.0.1:{port}/') if check_type == 'https' else dict(options, host='127.0.0.1', port=port)
        started = time.monotonic()
        # The deadline leaves a loaded machine time to build the TLS context before the first attempt (else the check
        # rightly ends before it starts); the handshake is still cut by the attempt's timeout, then by the deadline.
        [result] = run_checks([CheckSpec('tls', check_type, options, timeout=1)], retries=1, delay=0, deadline=2)
        assert time.monotonic() - started < 2 + MARGIN
        assert result.attempts >= 1, result.message
        assert result.message.startswith('deadline exceeded during the TLS handshake ('), result.message

    def test_trickled_tls_proxy_does_work_given_time(self, slow_tls_proxy: SlowPeer) -> None:
        """The proxy relays a real server: the time-outs above come from its slowness, nothing else."""
        slow_tls_proxy.pause = 0.001
        result = check('tls_cert', host='127.0.0.1', port=slow_tls_proxy.port, timeout=120)
        assert result.status == 'ok' or result.message.startswith('expires in'), result

    def test_connect_is_bounded(self) -> None:
        """A listener whose backlog is full: the kernel drops the SYN, connect() waits."""
        listener = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        listener.bind(('127.0.0.1', 0))
        listener.listen(0)
        port = listener.getsockname()[1]
        fillers = []
        try:
            for _index in range(4):
                filler = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
                filler.setblocking(False)
                fillers.append(filler)
                with contextlib.suppress(BlockingIOError):
                    filler.connect(('127.0.0.1', port))
            time.sleep(0.2)
            for check_type, options in (('tcp', {'host': '127.0.0.1', 'port': port}), ('http', {'url': f'http://127.0.0.1:{port}/'})):
                started = time.monotonic()
                [result] = run_checks([CheckSpec('c', check_type, options, timeout=1)])
                assert time.monotonic() - started < 1 + MARGIN
                if result.message.startswith('deadline exceeded while connecting'):
                    assert result.message == f'deadline exceeded while connecting to 127.0.0.1:{port} (timeout 1 s)'
                else:  # pragma: no cover - a kernel that completes the handshake anyway leaves the request unanswered
                    assert result.message.startswith('deadline exceeded'), result.message
        finally:
            for filler in fillers:
                filler.close()
            listener.close()

    def test_name_resolution_is_bounded(self, monkeypatch: pytest.MonkeyPatch) -> None:
        """The system resolver takes no timeout; a hung one must not hold the check."""
        real = socket.getaddrinfo

        def hung_resolver(host: str, *args: t.Any, **kwargs: t.Any) -> t.Any:
            if host == 'hung.example.test':
                if len(args) >= 5 and args[4] & socket.AI_NUMERICHOST:
                    raise socket.gaierror(socket.EAI_NONAME, 'not numeric')
                time.sleep(5)
            return real(host, *args, **kwargs)

        monkeypatch.setattr(socket, 'getaddrinfo', hung_resolver)
        for check_type, options in (('tcp', {'host': 'hung.example.test', 'port': 1}), ('http', {'url': 'http://hung.example.test/'}),
                                    ('tls_cert', {'host': 'hung.example.test'})):
            started = time.monotonic()
            [result] = run_checks([CheckSpec('dns', check_type, options, timeout=0.5)])
            assert time.monotonic() - started < 0.5 + MARGIN
            assert result.message == 'deadline exceeded while resolving hung.example.test (timeout 0.5 s)'

    def test_postgresql_server_that_never_answers(self, slow_peer: Peers) -> None:
        pytest.importorskip('psycopg')  # imported before the clock starts: a cold import is not the connection's time
        peer = slow_peer(never_respond)
        started = time.monotonic()
        # One attempt: the connection is bounded by the check's timeout (the run deadline is tested on its own).
        [result] = run_checks([CheckSpec('db', 'sql', {'db_url': f'postgresql://app:S3cret-pw@127.0.0.1:{peer.port}/app'}, timeout=0.5)])
        assert time.monotonic() - started < 0.5 + MARGIN
        assert result.message.startswith('deadline exceeded while connecting to the database ('), result.message
        assert 'S3cret-pw' not in json.dumps(result.to_dict())

    def test_supervisor_check_is_bounded(self, tmp_path: pathlib.Path) -> None:
        script = tmp_path / 'supervisorctl'
        script.write_text('#!/bin/sh\nsleep 10\n')
        script.chmod(0o755)
        started = time.monotonic()
        [result] = run_checks([CheckSpec('p', 'process', {'supervisor_program': 'web', 'supervisorctl': str(script)}, timeout=5)], deadline=1)
        assert time.monotonic() - started < 1 + MARGIN
        assert not result.healthy

    def test_budget(self) -> None:
        budget = _probe_common.Budget(0.05, 'while waiting')
        assert 0 < budget.remaining() <= 0.05
        time.sleep(0.06)
        with pytest.raises(_probe_common.DeadlineExceeded, match=r'^deadline exceeded while sleeping$'):
            budget.remaining('while sleeping')

    def test_bounded_call_discards_late_results(self) -> None:
        closed = threading.Event()
        budget = _probe_common.Budget(0.1)

        def late() -> str:
            time.sleep(0.3)
            return 'late'

        with pytest.raises(_probe_common.DeadlineExceeded, match='while waiting'):
            _probe_common.bounded_call(late, budget, 'while waiting', discard=lambda value: closed.set())
        assert closed.wait(2)
        assert _probe_common.bounded_call(lambda: 'fast', _probe_common.Budget(1), 'x') == 'fast'
        with pytest.raises(ZeroDivisionError):
            _probe_common.bounded_call(lambda: 1 / 0, _probe_common.Budget(1), 'x')


@pytest.mark.parametrize('check_type, options, phase', [
    ('disk', {'path': '/', 'min_free_bytes': 1}, 'while reading the file system of /'),
    ('process', {'pidfile': '/run/hung.pid'}, 'while reading /run/hung.pid'),
])
def test_file_system_calls_that_hang_are_bounded(monkeypatch: pytest.MonkeyPatch, check_type: str, options: dict[str, t.Any], phase: str) -> None:
    """statvfs or a read on a dead network file system blocks in the kernel; the check still ends at its timeout."""
    real_statvfs, real_read = os.statvfs, _probe_process._read_text

    def hung_statvfs(path: str) -> os.statvfs_result:
        time.sleep(3)
        return real_statvfs(path)

    def hung_read(path: str, limit: int = 4096) -> str:
        time.sleep(3)
        return real_read(path, limit)

    monkeypatch.setattr(os, 'statvfs', hung_statvfs)
    monkeypatch.setattr(_probe_process, '_read_text', hung_read)
    started = time.monotonic()
    [result] = run_checks([CheckSpec('hung', check_type, options, timeout=0.3)])
    assert time.monotonic() - started < 0.3 + MARGIN
    assert result.message == f'deadline exceeded {phase} (timeout 0.3 s)'
