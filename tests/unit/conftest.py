# Copyright (c) Dihya ops maintainers
# GNU General Public License v3.0+ (see LICENSES/GPL-3.0-or-later.txt or https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later

"""Real things on loopback for the unit and integration tests, and the split into the two tiers.

In-process HTTP(S) servers and TLS material serve the unit tier; supervisord and PostgreSQL
(``tests/support/services.py``) serve the tests marked ``services``, the integration tier.
``--tier unit`` runs the tests that need no service and refuses to start one; ``--tier integration``
runs the others (see ``tests/support/tiers.py``).

Everything binds to 127.0.0.1 on a port the kernel picks, and everything started here is
stopped by PID in teardown (PID 1 on the test machines does not reap orphans).
"""

from __future__ import annotations

import dataclasses
import http.server
import json
import os
import socket
import ssl
import subprocess
import threading
import time
import typing as t

import pytest

from ansible_collections.dihya.ops.tests.support import tiers
from ansible_collections.dihya.ops.tests.support.processes import stop_process
from ansible_collections.dihya.ops.tests.support.services import SESSION_SERVICES, Postgres, Supervisor, Unavailable
from ansible_collections.dihya.ops.tests.support.tls import TLSMaterial, make_tls_material

__all__ = ['Postgres', 'Server', 'Supervisor', 'TLSMaterial']


# ---------------------------------------------------------------------------
# HTTP
# ---------------------------------------------------------------------------

class Handler(http.server.BaseHTTPRequestHandler):
    """Endpoints the HTTP checks are tested against."""

    protocol_version = 'HTTP/1.1'
    flaky_counts: t.ClassVar[dict[str, int]] = {}
    flaky_lock = threading.Lock()

    def log_message(self, format: str, *args: t.Any) -> None:  # pylint: disable=redefined-builtin
        """Keep the test output quiet."""

    def _send(self, status: int, body: bytes | str, content_type: str = 'application/json', headers: dict[str, str] | None = None) -> None:
        data = body.encode() if isinstance(body, str) else body
        self.send_response(status)
        self.send_header('Content-Type', content_type)
        self.send_header('Content-Length', str(len(data)))
        for name, value in (headers or {}).items():
            self.send_header(name, value)
        self.end_headers()
        if self.command != 'HEAD':
            self.wfile.write(data)

    def _route(self) -> None:
        path = self.path.split('?', 1)[0]
        length = int(self.headers.get('Content-Length') or 0)
        request_body = self.rfile.read(length) if length else b''
        if path in ('/', '/ok'):
            self._send(200, json.dumps({'status': 'ok', 'database': {'status': 'ok', 'latency_ms': 3}, 'replicas': [{'state': 'up'}], 'ready': True}))
        elif path == '/unavailable':
            self._send(503, json.dumps({'status': 'down'}))
        elif path == '/slow':
            time.sleep(0.3)
            self._send(200, '{"status": "ok"}')
        elif path == '/badjson':
            self._send(200, 'this is {not json')
        elif path == '/text':
            self._send(200, 'ready: yes\n', content_type='text/plain')
        elif path.startswith('/flaky/'):
            # Fails the first two requests for each key, then succeeds.
            with self.flaky_lock:
                count = self.flaky_counts[path] = self.flaky_counts.get(path, 0) + 1
            self._send(200 if count > 2 else 503, json.dumps({'attempt': count}))
        elif path == '/echo':
            self._send(200, json.dumps({
                'method': self.command,
                'path': self.path,
                'headers': {name.lower(): value for name, value in self.headers.items()},
                'body': request_body.decode(),
            }))
        elif path == '/redirect':
            self._send(302, '', headers={'Location': '/ok'})
        elif path == '/big':
            self._send(200, b'x' * (3 * 1024 * 1024), content_type='text/plain')
        elif path == '/drip':
            self.send_response(200)
            self.send_header('Content-Length', '100')
            self.end_headers()
            for _byte in range(20):
                self.wfile.write(b'x')
                self.wfile.flush()
                time.sleep(0.1)
        elif path == '/hangup':
            self.close_connection = True
            self.connection.shutdown(socket.SHUT_RDWR)
        else:
            self._send(404, '{"error": "not found"}')

    do_GET = do_POST = do_HEAD = do_PUT = do_DELETE = do_PATCH = do_OPTIONS = _route


class TLSHTTPServer(http.server.ThreadingHTTPServer):
    """Does the TLS handshake in the request thread, so a client that never speaks cannot block the server."""

    daemon_threads = True
    ssl_context: ssl.SSLContext | None = None

    def get_request(self) -> tuple[socket.socket, t.Any]:
        sock, address = self.socket.accept()
        if self.ssl_context is not None:
            sock = self.ssl_context.wrap_socket(sock, server_side=True, do_handshake_on_connect=False)
        return sock, address

    def handle_error(self, request: t.Any, client_address: t.Any) -> None:
        """Clients that hang up or reject the certificate are part of the tests."""


@dataclasses.dataclass
class Server:
    server: TLSHTTPServer
    thread: threading.Thread
    scheme: str

    @property
    def port(self) -> int:
        return self.server.server_address[1]

    def url(self, path: str = '/ok', host: str = '127.0.0.1') -> str:
        return f'{self.scheme}://{host}:{self.port}{path}'

    def stop(self) -> None:
        self.server.shutdown()
        self.server.server_close()
        self.thread.join(5)


def start_server(ssl_context: ssl.SSLContext | None = None) -> Server:
    server = TLSHTTPServer(('127.0.0.1', 0), Handler)
    server.ssl_context = ssl_context
    thread = threading.Thread(target=server.serve_forever, kwargs={'poll_interval': 0.05}, daemon=True)
    thread.start()
    return Server(server, thread, 'https' if ssl_context else 'http')


@pytest.fixture(scope='session')
def http_server() -> t.Iterator[Server]:
    server = start_server()
    yield server
    server.stop()


@pytest.fixture
def closed_port() -> int:
    """A loopback port nothing listens on: connecting to it is refused."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(('127.0.0.1', 0))
        return int(sock.getsockname()[1])


@pytest.fixture
def silent_listener() -> t.Iterator[int]:
    """A loopback port that accepts connections and never sends a byte."""
    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    sock.bind(('127.0.0.1', 0))
    sock.listen(16)
    yield sock.getsockname()[1]
    sock.close()


# ---------------------------------------------------------------------------
# TLS
# ---------------------------------------------------------------------------

@pytest.fixture(scope='session')
def tls_material(tmp_path_factory: pytest.TempPathFactory) -> TLSMaterial:
    """A CA, and a server certificate for localhost/127.0.0.1 it signed that expires in 5 days; see ``make_tls_material``."""
    return make_tls_material(tmp_path_factory.mktemp('tls'))


@pytest.fixture(scope='session')
def https_server(tls_material: TLSMaterial) -> t.Iterator[Server]:
    server = start_server(tls_material.server_context())
    yield server
    server.stop()


@pytest.fixture
def tls_server_factory(tls_material: TLSMaterial) -> t.Iterator[t.Callable[[str], Server]]:
    """Start an HTTPS server presenting the named certificate file of ``tls_material``."""
    servers: list[Server] = []

    def start(cert_name: str) -> Server:
        server = start_server(tls_material.server_context(os.path.join(tls_material.directory, cert_name)))
        servers.append(server)
        return server

    yield start
    for server in servers:
        server.stop()


# ---------------------------------------------------------------------------
# Processes
# ---------------------------------------------------------------------------

@pytest.fixture
def sleeper() -> t.Iterator[subprocess.Popen[bytes]]:
    process = subprocess.Popen(['sleep', '1000'])
    yield process
    stop_process(process)


# ---------------------------------------------------------------------------
# Tiers: the services marker, --tier, and the guard of the unit tier
# ---------------------------------------------------------------------------

def pytest_addoption(parser: pytest.Parser) -> None:
    parser.addoption('--tier', choices=tiers.TIERS, default=None,
                     help='unit: only the tests that need no service, and refuse to start one (same tests as -m "not services"); '
                          'integration: only the tests marked services; all (default): both')


def pytest_configure(config: pytest.Config) -> None:
    tier = config.getoption('tier')
    if tier is None:
        tier = tiers.UNIT if (config.getoption('markexpr') or '').strip() == 'not services' else tiers.ALL
    tiers.configure(tier)


@pytest.hookimpl(tryfirst=True)
def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    """Mark ``services`` every test that needs one (before -m selects on it), then keep the tests of ``--tier``."""
    keep: list[pytest.Item] = []
    drop: list[pytest.Item] = []
    for item in items:
        needed = tiers.needed_services(item)
        unknown = sorted(needed - set(tiers.SERVICES))
        if unknown:
            raise pytest.UsageError(f'{item.nodeid}: unknown service(s) {", ".join(unknown)} in the services marker')
        if needed:
            item.add_marker(pytest.mark.services(*sorted(needed)))
        (keep if tiers.in_tier(needed, tiers.current()) else drop).append(item)
    if drop:
        config.hook.pytest_deselected(items=drop)
        items[:] = keep


@pytest.fixture(autouse=True)
def _no_service_in_the_unit_tier() -> t.Iterator[None]:
    """Fail a unit-tier test that started a service, even if it caught the refusal."""
    yield
    refused = tiers.take_violations()
    if refused:
        pytest.fail('\n'.join(refused), pytrace=False)


# ---------------------------------------------------------------------------
# Session services: supervisord and PostgreSQL
#
# ansible-test runs every test in a forked child that ends with os._exit(), so a
# session fixture that starts a process inside a test would never see its teardown.
# These services are therefore started by the pytest process itself once collection
# shows that a selected test needs them, and stopped when the session finishes.
# ---------------------------------------------------------------------------

SERVICES_KEY = pytest.StashKey[dict[str, t.Any]]()


def pytest_collection_finish(session: pytest.Session) -> None:
    """Start the session services the selected tests use (their ``services`` markers say which), in the pytest process itself."""
    wanted = {name for item in session.items for marker in item.iter_markers('services') for name in marker.args if name in SESSION_SERVICES}
    started: dict[str, t.Any] = {}
    session.config.stash[SERVICES_KEY] = started
    for name in sorted(wanted):
        try:
            started[name] = SESSION_SERVICES[name]()
        except Unavailable as exc:
            started[name] = exc
        except Exception as exc:  # pylint: disable=broad-exception-caught
            started[name] = AssertionError(f'{name} did not start: {exc!r}')


def pytest_sessionfinish(session: pytest.Session) -> None:
    """Stop the services; only the process that started them gets here (forked test processes end with os._exit)."""
    for service in session.config.stash.get(SERVICES_KEY, {}).values():
        if not isinstance(service, Exception):
            service.stop()


def _service(request: pytest.FixtureRequest, name: str) -> t.Any:
    service = request.config.stash.get(SERVICES_KEY, {}).get(name)
    if isinstance(service, Unavailable):
        pytest.skip(str(service))
    if isinstance(service, Exception):
        pytest.fail(str(service))
    if service is None:  # pragma: no cover - the fixture was requested in a way collection could not see
        tiers.refuse_in_unit_tier(name, f'the {name} fixture')
        pytest.fail(f'{name} was not started: request the {name} fixture as a test argument or mark the test with @pytest.mark.services({name!r})')
    return service


@pytest.fixture(scope='session')
def supervisor(request: pytest.FixtureRequest) -> Supervisor:
    """The shared supervisord; see :meth:`Supervisor.start`."""
    return t.cast(Supervisor, _service(request, 'supervisor'))


@pytest.fixture(scope='session')
def postgres(request: pytest.FixtureRequest) -> Postgres:
    """The shared PostgreSQL cluster (skipped when PostgreSQL is not installed); see :meth:`Postgres.start`."""
    return t.cast(Postgres, _service(request, 'postgres'))
