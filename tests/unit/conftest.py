# Copyright (c) Dihya ops maintainers
# GNU General Public License v3.0+ (see LICENSES/GPL-3.0-or-later.txt or https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later

"""Real things on loopback for the unit tests: HTTP(S) servers, TLS material, supervisord, PostgreSQL.

Everything binds to 127.0.0.1 on a port the kernel picks, and everything started here is
stopped by PID in teardown (PID 1 on the test machines does not reap orphans).
"""

from __future__ import annotations

import dataclasses
import datetime
import http.server
import ipaddress
import json
import os
import pwd
import shutil
import signal
import socket
import ssl
import subprocess
import sys
import tempfile
import threading
import time
import typing as t

import pytest
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID


# ---------------------------------------------------------------------------
# HTTP
# ---------------------------------------------------------------------------

class Handler(http.server.BaseHTTPRequestHandler):
    """Endpoints the HTTP checks are tested against."""

    protocol_version = 'HTTP/1.1'
    flaky_counts: dict[str, int] = {}
    flaky_lock = threading.Lock()

    def log_message(self, format, *args):  # pylint: disable=redefined-builtin
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

    def get_request(self):
        sock, address = self.socket.accept()
        if self.ssl_context is not None:
            sock = self.ssl_context.wrap_socket(sock, server_side=True, do_handshake_on_connect=False)
        return sock, address

    def handle_error(self, request, client_address):
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
        return sock.getsockname()[1]


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

@dataclasses.dataclass
class TLSMaterial:
    directory: str
    ca_path: str
    cert_path: str
    key_path: str

    def server_context(self, cert_path: str | None = None) -> ssl.SSLContext:
        context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
        context.load_cert_chain(cert_path or self.cert_path, self.key_path)
        return context


def _name(common_name: str) -> x509.Name:
    return x509.Name([x509.NameAttribute(NameOID.ORGANIZATION_NAME, 'Dihya tests'), x509.NameAttribute(NameOID.COMMON_NAME, common_name)])


def make_certificate(
    key: ec.EllipticCurvePrivateKey,
    issuer_key: ec.EllipticCurvePrivateKey,
    issuer: x509.Name,
    subject: x509.Name,
    not_before: datetime.datetime,
    not_after: datetime.datetime,
    ca: bool,
) -> x509.Certificate:
    builder = (
        x509.CertificateBuilder()
        .subject_name(subject)
        .issuer_name(issuer)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(not_before)
        .not_valid_after(not_after)
        .add_extension(x509.BasicConstraints(ca=ca, path_length=None), critical=True)
    )
    if ca:
        builder = builder.add_extension(
            x509.KeyUsage(False, False, False, False, False, True, True, False, False), critical=True,
        ).add_extension(x509.SubjectKeyIdentifier.from_public_key(key.public_key()), critical=False)
    else:
        builder = builder.add_extension(
            x509.SubjectAlternativeName([x509.DNSName('localhost'), x509.IPAddress(ipaddress.ip_address('127.0.0.1'))]), critical=False,
        ).add_extension(x509.ExtendedKeyUsage([x509.oid.ExtendedKeyUsageOID.SERVER_AUTH]), critical=False).add_extension(
            x509.AuthorityKeyIdentifier.from_issuer_public_key(issuer_key.public_key()), critical=False,
        )
    return builder.sign(issuer_key, hashes.SHA256())


@pytest.fixture(scope='session')
def tls_material(tmp_path_factory) -> TLSMaterial:
    """A CA, and a server certificate for localhost/127.0.0.1 it signed that expires in 5 days.

    ``expired.pem`` and ``future.pem`` hold certificates for the same key that expired
    yesterday and become valid tomorrow.
    """
    directory = tmp_path_factory.mktemp('tls')
    now = datetime.datetime.now(datetime.timezone.utc)
    ca_key = ec.generate_private_key(ec.SECP256R1())
    ca_name = _name('Dihya test CA')
    ca_cert = make_certificate(ca_key, ca_key, ca_name, ca_name, now - datetime.timedelta(days=1), now + datetime.timedelta(days=365), ca=True)
    key = ec.generate_private_key(ec.SECP256R1())
    leaf = _name('localhost')
    certs = {
        'server.pem': make_certificate(key, ca_key, ca_name, leaf, now - datetime.timedelta(days=1), now + datetime.timedelta(days=5, hours=1), ca=False),
        'expired.pem': make_certificate(key, ca_key, ca_name, leaf, now - datetime.timedelta(days=30), now - datetime.timedelta(days=2, hours=1), ca=False),
        'future.pem': make_certificate(key, ca_key, ca_name, leaf, now + datetime.timedelta(days=1), now + datetime.timedelta(days=90), ca=False),
        'ca.pem': ca_cert,
    }
    for name, cert in certs.items():
        (directory / name).write_bytes(cert.public_bytes(serialization.Encoding.PEM))
    (directory / 'server.key').write_bytes(
        key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()),
    )
    return TLSMaterial(str(directory), str(directory / 'ca.pem'), str(directory / 'server.pem'), str(directory / 'server.key'))


@pytest.fixture(scope='session')
def https_server(tls_material) -> t.Iterator[Server]:
    server = start_server(tls_material.server_context())
    yield server
    server.stop()


@pytest.fixture
def tls_server_factory(tls_material) -> t.Iterator[t.Callable[[str], Server]]:
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

def stop_process(process: subprocess.Popen, timeout: float = 10) -> None:
    """Terminate one process we started, then kill it if it does not go away."""
    if process.poll() is None:
        process.terminate()
        try:
            process.wait(timeout)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait(timeout)


@pytest.fixture
def sleeper() -> t.Iterator[subprocess.Popen]:
    process = subprocess.Popen(['sleep', '1000'])
    yield process
    stop_process(process)


def venv_tool(name: str) -> str | None:
    """A console script installed next to the running interpreter, else one on PATH."""
    candidate = os.path.join(os.path.dirname(sys.executable), name)
    return candidate if os.access(candidate, os.X_OK) else shutil.which(name)


# ---------------------------------------------------------------------------
# External services: supervisord and PostgreSQL
#
# ansible-test runs every test in a forked child that ends with os._exit(), so a
# session fixture that starts a process inside a test would never see its teardown.
# These services are therefore started by the pytest process itself once collection
# shows that a selected test needs them, and stopped when the session finishes.
# ---------------------------------------------------------------------------

class Unavailable(Exception):
    """The service cannot run on this machine; tests that need it are skipped."""


@dataclasses.dataclass
class Supervisor:
    directory: str
    config: str
    supervisorctl: str
    process: subprocess.Popen | None = None

    def ctl(self, *args: str) -> str:
        completed = subprocess.run([self.supervisorctl, '-c', self.config, *args], capture_output=True, text=True, timeout=30, check=False)
        return completed.stdout

    def wait_for_state(self, program: str, state: str, timeout: float = 15) -> None:
        expires = time.monotonic() + timeout
        output = ''
        while time.monotonic() < expires:
            output = self.ctl('status', program)
            if f' {state} ' in f' {output} '.replace('\n', ' '):
                return
            time.sleep(0.1)
        raise AssertionError(f'{program} did not reach {state}: {output}')

    @classmethod
    def start(cls) -> Supervisor:
        """A real supervisord with programs ``web`` (RUNNING), ``idle`` (STOPPED) and ``crashy`` (FATAL)."""
        supervisord = venv_tool('supervisord')
        supervisorctl = venv_tool('supervisorctl')
        if not supervisord or not supervisorctl:
            raise Unavailable('supervisor is not installed')
        directory = tempfile.mkdtemp(prefix='dihya-supervisor-')
        config = os.path.join(directory, 'supervisord.conf')
        with open(config, 'w', encoding='utf-8') as handle:
            handle.write(SUPERVISORD_CONF.format(dir=directory))
        instance = cls(directory, config, supervisorctl)
        instance.process = subprocess.Popen([supervisord, '-c', config], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        try:
            instance.wait_for_state('web', 'RUNNING')
            instance.wait_for_state('crashy', 'FATAL')
        except BaseException:
            instance.stop()
            raise
        return instance

    def stop(self) -> None:
        # supervisord stops its programs on SIGTERM.
        if self.process is not None:
            stop_process(self.process, timeout=15)
        shutil.rmtree(self.directory, ignore_errors=True)


SUPERVISORD_CONF = """\
[unix_http_server]
file={dir}/supervisor.sock

[supervisord]
logfile={dir}/supervisord.log
pidfile={dir}/supervisord.pid
childlogdir={dir}
nodaemon=true
silent=true

[rpcinterface:supervisor]
supervisor.rpcinterface_factory = supervisor.rpcinterface:make_main_rpcinterface

[supervisorctl]
serverurl=unix://{dir}/supervisor.sock

[program:web]
command=sleep 1000
startsecs=0
stopwaitsecs=2

[program:idle]
command=sleep 1000
autostart=false

[program:crashy]
command=false
startsecs=1
startretries=0
autorestart=false
"""


def _postgres_binaries() -> tuple[str, str] | None:
    """initdb and postgres from PATH or the newest Debian PostgreSQL installation."""
    versions = sorted(os.listdir('/usr/lib/postgresql'), reverse=True) if os.path.isdir('/usr/lib/postgresql') else []
    for directory in [os.path.dirname(shutil.which('initdb') or '')] + [f'/usr/lib/postgresql/{version}/bin' for version in versions]:
        initdb, server = os.path.join(directory, 'initdb'), os.path.join(directory, 'postgres')
        if directory and os.access(initdb, os.X_OK) and os.access(server, os.X_OK):
            return initdb, server
    return None


@dataclasses.dataclass
class Postgres:
    directory: str
    port: int
    password: str
    process: subprocess.Popen | None = None

    def dsn(self, password: str | None = None, database: str = 'postgres') -> str:
        return f'postgresql://postgres:{password or self.password}@127.0.0.1:{self.port}/{database}'

    @classmethod
    def start(cls) -> Postgres:
        """A throw-away PostgreSQL cluster on loopback with password authentication."""
        import psycopg  # pylint: disable=import-outside-toplevel

        binaries = _postgres_binaries()
        if binaries is None:
            raise Unavailable('PostgreSQL server binaries are not installed')
        initdb, server = binaries
        user = None
        if os.geteuid() == 0:
            try:
                user = pwd.getpwnam('postgres')
            except KeyError as exc:
                raise Unavailable('running as root and there is no postgres user to run PostgreSQL as') from exc

        def as_owner() -> None:
            if user is not None:
                os.setgid(user.pw_gid)
                os.setuid(user.pw_uid)

        directory = tempfile.mkdtemp(prefix='dihya-pg-')
        with socket.socket() as sock:
            sock.bind(('127.0.0.1', 0))
            port = sock.getsockname()[1]
        instance = cls(directory, port, 'pg-s3cret-w0rd')
        data = os.path.join(directory, 'data')
        pwfile = os.path.join(directory, 'pwfile')
        with open(pwfile, 'w', encoding='utf-8') as handle:
            handle.write(instance.password + '\n')
        if user is not None:
            for path in (directory, pwfile):
                os.chown(path, user.pw_uid, user.pw_gid)
        try:
            completed = subprocess.run(
                [initdb, '-D', data, '-U', 'postgres', '-A', 'scram-sha-256', '--pwfile', pwfile, '-N'],
                preexec_fn=as_owner, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, timeout=60, check=False,
            )
            if completed.returncode:
                raise Unavailable(f'initdb failed: {completed.stderr.decode()[-300:]}')
            options = ['-c', 'listen_addresses=127.0.0.1', '-c', f'port={port}', '-c', f'unix_socket_directories={directory}', '-c', 'fsync=off']
            with open(os.path.join(directory, 'log'), 'wb') as log:
                instance.process = subprocess.Popen([server, '-D', data, *options], preexec_fn=as_owner, stdout=log, stderr=log)
            expires = time.monotonic() + 30
            while True:
                try:
                    psycopg.connect(instance.dsn(), connect_timeout=2).close()
                    return instance
                except psycopg.OperationalError as exc:
                    if instance.process.poll() is not None or time.monotonic() > expires:
                        raise Unavailable(f'PostgreSQL did not start: {exc}') from exc
                    time.sleep(0.1)
        except BaseException:
            instance.stop()
            raise

    def stop(self) -> None:
        if self.process is not None:
            if self.process.poll() is None:
                self.process.send_signal(signal.SIGINT)  # fast shutdown
            stop_process(self.process)
        shutil.rmtree(self.directory, ignore_errors=True)


SERVICES: dict[str, t.Callable[[], t.Any]] = {'supervisor': Supervisor.start, 'postgres': Postgres.start}
SERVICES_KEY = pytest.StashKey[dict]()


def pytest_collection_finish(session: pytest.Session) -> None:
    """Start the services the selected tests use, in the pytest process itself."""
    wanted = {name for item in session.items for name in getattr(item, 'fixturenames', ()) if name in SERVICES}
    # Tests that use a service without taking its fixture as an argument say so with @pytest.mark.services('postgres').
    for item in session.items:
        for marker in item.iter_markers('services'):
            unknown = [name for name in marker.args if name not in SERVICES]
            if unknown:
                raise pytest.UsageError(f'{item.nodeid}: unknown service(s) {", ".join(map(str, unknown))} in the services marker')
            wanted.update(marker.args)
    started: dict[str, t.Any] = {}
    session.config.stash[SERVICES_KEY] = started
    for name in sorted(wanted):
        try:
            started[name] = SERVICES[name]()
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
        pytest.fail(f'{name} was not started: request the {name} fixture as a test argument or mark the test with @pytest.mark.services({name!r})')
    return service


@pytest.fixture(scope='session')
def supervisor(request: pytest.FixtureRequest) -> Supervisor:
    """The shared supervisord; see :meth:`Supervisor.start`."""
    return _service(request, 'supervisor')


@pytest.fixture(scope='session')
def postgres(request: pytest.FixtureRequest) -> Postgres:
    """The shared PostgreSQL cluster (skipped when PostgreSQL is not installed); see :meth:`Postgres.start`."""
    return _service(request, 'postgres')
