# Copyright (c) Dihya ops maintainers
# GNU General Public License v3.0+ (see LICENSES/GPL-3.0-or-later.txt or https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later

# This module utility is PRIVATE to the collection. It can change at any time.

"""Health check engine: run HTTP, TCP, process, disk, TLS certificate and SQL probes concurrently.

The engine knows nothing about Ansible. A caller builds :class:`CheckSpec` objects, hands them to
:func:`run_checks` and gets one :class:`CheckResult` per spec back, in the same order.

Each check type has a parser, which turns the loose per-check options into a typed configuration
and raises :class:`CheckConfigError` for bad input, and a probe, which performs one attempt and
returns an :class:`Outcome`. Bad input never raises out of :func:`run_checks`: it becomes a result
with status ``error``. Network and system failures become results with status ``failed``.
"""

from __future__ import annotations

import base64
import dataclasses
import datetime
import http.client
import importlib
import io
import json
import math
import os
import re
import select
import shutil
import socket
import sqlite3
import ssl
import sys
import threading
import time
import typing as t
import urllib.parse
from concurrent.futures import ThreadPoolExecutor

from ansible_collections.dihya.ops.plugins.module_utils._supervisor import NAME_PATTERN
from ansible_collections.dihya.ops.plugins.module_utils._supervisor import SupervisorError
from ansible_collections.dihya.ops.plugins.module_utils._supervisor import Supervisorctl
from ansible_collections.dihya.ops.plugins.module_utils._supervisor import subprocess_runner


def optional_library(name: str, purpose: str) -> t.Any:
    """Import an optional library when a check first needs it, not at module start-up.

    cryptography and psycopg take most of the module's import time; a run
    without tls_cert or postgresql checks never loads them.
    """
    try:
        return importlib.import_module(name)
    except ImportError as exc:
        raise CheckConfigError(f'{purpose} need the {name.split(".")[0]} Python library ({exc})') from exc


CHECK_TYPES = ('http', 'https', 'tcp', 'process', 'disk', 'tls_cert', 'sql')
HTTP_METHODS = ('GET', 'HEAD', 'POST', 'PUT', 'PATCH', 'DELETE', 'OPTIONS')

STATUS_OK = 'ok'
STATUS_FAILED = 'failed'
STATUS_ERROR = 'error'

DEFAULT_TIMEOUT = 5.0
DEFAULT_CONCURRENCY = 32
DEFAULT_MIN_DAYS_VALID = 14
DEFAULT_QUERY = 'SELECT 1'

# Only this much of an HTTP response body is read; health endpoints are small.
MAX_BODY_BYTES = 1024 * 1024
USER_AGENT = 'dihya.ops.health_check'
MASK = '********'

HEADER_NAME_PATTERN = re.compile(r"[!#$%&'*+.^_`|~0-9A-Za-z-]+")

# Options every check accepts, whatever its type.
COMMON_OPTIONS = frozenset(('name', 'type', 'timeout', 'latency_budget'))


class CheckConfigError(ValueError):
    """Bad input for one check: reported as a result with status ``error``, never retried."""


class DeadlineExceeded(TimeoutError):
    """An attempt ran out of time; ``phase`` says what it was doing (``while reading the response headers``)."""

    def __init__(self, phase: str) -> None:
        super().__init__(f'deadline exceeded {phase}')
        self.phase = phase


class Budget:
    """The absolute end of one attempt, on the monotonic clock, and the phase the attempt is in.

    Socket timeouts only bound one system call each: a peer that sends a byte just before each
    timeout expires keeps a reader waiting forever. Every blocking step of a probe therefore asks
    the budget for the time left (:meth:`remaining`) right before it blocks, and uses that as its
    timeout, so that the sum of all steps never passes :attr:`expires`.
    """

    def __init__(self, timeout: float, phase: str = 'before starting') -> None:
        self.expires = time.monotonic() + timeout
        self.phase = phase

    def remaining(self, phase: str | None = None) -> float:
        """Seconds left (always > 0); enter ``phase`` first when given. Raise :class:`DeadlineExceeded` when none are left."""
        if phase is not None:
            self.phase = phase
        left = self.expires - time.monotonic()
        if left <= 0:
            raise DeadlineExceeded(self.phase)
        return left

    def exceeded(self) -> DeadlineExceeded:
        """The exception for a time-out in the current phase."""
        return DeadlineExceeded(self.phase)


def bounded_call(function: t.Callable[[], t.Any], budget: Budget, phase: str,
                 discard: t.Callable[[t.Any], None] | None = None) -> t.Any:
    """Run a blocking call that takes no timeout of its own (a DNS lookup, a database driver's connect) within ``budget``.

    The call runs in a daemon thread; when the budget runs out first, the caller gets
    :class:`DeadlineExceeded` at once, and whatever the call returns later is handed to
    ``discard`` (to close a connection nobody will use) and dropped.
    """
    state: dict[str, t.Any] = {}
    lock = threading.Lock()

    def work() -> None:
        try:
            value = function()
        except BaseException as exc:  # pylint: disable=broad-exception-caught
            state['error'] = exc
            return
        with lock:
            abandoned = state.get('abandoned', False)
            state['value'] = value
        if abandoned and discard is not None:
            try:
                discard(value)
            except Exception:  # pylint: disable=broad-exception-caught
                pass

    wait = budget.remaining(phase)
    worker = threading.Thread(target=work, name='health-check-bounded', daemon=True)
    worker.start()
    worker.join(wait)
    with lock:
        if 'value' not in state and 'error' not in state:
            state['abandoned'] = True
            raise budget.exceeded()
    if 'error' in state:
        raise state['error']
    return state['value']


@dataclasses.dataclass(frozen=True)
class CheckSpec:
    """What to check: the common settings plus the type-specific ``options``."""

    name: str
    type: str
    options: t.Mapping[str, t.Any] = dataclasses.field(default_factory=dict)
    timeout: float = DEFAULT_TIMEOUT
    latency_budget: float | None = None


@dataclasses.dataclass(frozen=True)
class Outcome:
    """The result of one probe attempt."""

    healthy: bool
    message: str
    details: t.Mapping[str, t.Any] = dataclasses.field(default_factory=dict)


@dataclasses.dataclass
class CheckResult:
    """The final result of one check, after any retries."""

    name: str
    type: str
    healthy: bool
    status: str
    message: str
    latency_seconds: float = 0.0
    attempts: int = 0
    details: dict[str, t.Any] = dataclasses.field(default_factory=dict)

    def to_dict(self) -> dict[str, t.Any]:
        """Plain data, ready to be serialised."""
        return dataclasses.asdict(self)


# ---------------------------------------------------------------------------
# Validation helpers
# ---------------------------------------------------------------------------

def validate_run_options(
    timeout: float | None = None,
    concurrency: int = DEFAULT_CONCURRENCY,
    retries: int = 0,
    delay: float = 0.0,
    deadline: float | None = None,
) -> list[str]:
    """Return one message per invalid run-wide setting (empty when all are valid)."""
    errors = []
    if timeout is not None and not _positive(timeout):
        errors.append(f'timeout must be greater than 0 (got {timeout})')
    if concurrency < 1:
        errors.append(f'concurrency must be at least 1 (got {concurrency})')
    if retries < 0:
        errors.append(f'retries must be 0 or more (got {retries})')
    if not (delay >= 0 and math.isfinite(delay)):
        errors.append(f'delay must be 0 or more (got {delay})')
    if deadline is not None and not _positive(deadline):
        errors.append(f'deadline must be greater than 0 (got {deadline})')
    return errors


def duplicate_names(specs: t.Iterable[CheckSpec]) -> list[str]:
    """Names used by more than one check, in order of first repetition."""
    seen: set[str] = set()
    duplicates: list[str] = []
    for spec in specs:
        if spec.name in seen and spec.name not in duplicates:
            duplicates.append(spec.name)
        seen.add(spec.name)
    return duplicates


def validate_name(value: str, what: str) -> str:
    """Check a process or supervisor program name against :data:`NAME_PATTERN`."""
    if not isinstance(value, str) or not NAME_PATTERN.fullmatch(value):
        raise CheckConfigError(f'invalid {what} {value!r}: use 1 to 128 letters, digits and the characters _ . : @ - (not starting with -)')
    return value


def validate_spec(spec: CheckSpec) -> t.Any:
    """Validate one check and return its typed configuration; raise :class:`CheckConfigError` if it is unusable."""
    if not isinstance(spec.name, str) or not spec.name:
        raise CheckConfigError('every check needs a non-empty name')
    if spec.type not in _CHECKS:
        raise CheckConfigError(f"unknown check type {spec.type!r} (expected one of: {', '.join(CHECK_TYPES)})")
    if not _positive(spec.timeout):
        raise CheckConfigError(f'timeout must be greater than 0 (got {spec.timeout})')
    if spec.latency_budget is not None and not _positive(spec.latency_budget):
        raise CheckConfigError(f'latency_budget must be greater than 0 (got {spec.latency_budget})')
    parser, _probe, allowed = _CHECKS[spec.type]
    unknown = sorted(key for key, value in spec.options.items() if value is not None and key not in allowed and key not in COMMON_OPTIONS)
    if unknown:
        raise CheckConfigError(f"option(s) not valid for a {spec.type} check: {', '.join(unknown)}")
    return parser(spec.options)


def _positive(value: t.Any) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool) and math.isfinite(value) and value > 0


# ---------------------------------------------------------------------------
# Runner
# ---------------------------------------------------------------------------

def run_checks(
    specs: t.Sequence[CheckSpec],
    concurrency: int = DEFAULT_CONCURRENCY,
    retries: int = 0,
    delay: float = 1.0,
    deadline: float | None = None,
) -> list[CheckResult]:
    """Run all checks concurrently and return their results in input order.

    A check whose attempt fails is attempted again, up to ``retries`` more times, ``delay`` seconds
    apart. ``deadline`` (seconds from now) bounds the whole run: every attempt's timeout is cut to
    the time left, no retry starts after it and a check still queued when it passes is reported as
    failed without being attempted.
    """
    errors = validate_run_options(concurrency=concurrency, retries=retries, delay=delay, deadline=deadline)
    if errors:
        raise ValueError('; '.join(errors))
    if not specs:
        return []
    deadline_at = time.monotonic() + deadline if deadline is not None else None
    workers = min(concurrency, len(specs))
    with ThreadPoolExecutor(max_workers=workers, thread_name_prefix='health-check') as pool:
        futures = [pool.submit(_run_one, spec, retries, delay, deadline_at, deadline) for spec in specs]
        return [future.result() for future in futures]


def _run_one(spec: CheckSpec, retries: int, delay: float, deadline_at: float | None, deadline: float | None = None) -> CheckResult:
    secrets = url_secrets(spec.options.get('url')) if isinstance(spec.options, t.Mapping) else ()
    result = _run_one_unmasked(spec, retries, delay, deadline_at, deadline)
    # A URL's user information never leaves the engine: not in names (metrics labels), not in messages.
    result.name = mask_url_credentials(result.name, secrets)
    result.message = mask_url_credentials(result.message, secrets)
    return result


def _run_one_unmasked(spec: CheckSpec, retries: int, delay: float, deadline_at: float | None, deadline: float | None) -> CheckResult:
    try:
        config = validate_spec(spec)
    except CheckConfigError as exc:
        return CheckResult(name=str(spec.name), type=str(spec.type), healthy=False, status=STATUS_ERROR, message=str(exc))
    except Exception as exc:  # pylint: disable=broad-exception-caught
        # Options of an unexpected shape, such as a number where a list belongs.
        return CheckResult(name=str(spec.name), type=str(spec.type), healthy=False, status=STATUS_ERROR, message=f'invalid options: {describe_error(exc)}')

    _parser, probe, _allowed = _CHECKS[spec.type]
    attempts = 0
    latency = 0.0
    status = STATUS_FAILED
    outcome = Outcome(False, 'deadline exceeded before the check could start')
    while True:
        timeout = spec.timeout
        limit = f'timeout {spec.timeout:g} s'
        if deadline_at is not None:
            remaining = deadline_at - time.monotonic()
            if remaining <= 0:
                break
            if remaining < timeout:
                timeout = remaining
                limit = f'run deadline {deadline:g} s' if deadline is not None else 'run deadline'
        attempts += 1
        started = time.monotonic()
        status, outcome = _attempt(probe, config, timeout, limit)
        latency = time.monotonic() - started
        if status == STATUS_OK and spec.latency_budget is not None and latency > spec.latency_budget:
            status = STATUS_FAILED
            outcome = Outcome(False, f'latency {latency:.3f}s over budget {spec.latency_budget:g}s', outcome.details)
        if status != STATUS_FAILED or attempts > retries:
            break
        if deadline_at is not None and time.monotonic() + delay >= deadline_at:
            break
        time.sleep(delay)
    return CheckResult(
        name=spec.name,
        type=spec.type,
        healthy=status == STATUS_OK,
        status=status,
        message=outcome.message,
        latency_seconds=round(latency, 6),
        attempts=attempts,
        details=dict(outcome.details),
    )


def _attempt(probe: t.Callable[[t.Any, float], Outcome], config: t.Any, timeout: float, limit: str = '') -> tuple[str, Outcome]:
    try:
        outcome = probe(config, timeout)
    except CheckConfigError as exc:
        return STATUS_ERROR, Outcome(False, str(exc))
    except DeadlineExceeded as exc:
        context = getattr(config, 'context', None)
        return STATUS_FAILED, Outcome(False, f'{exc} ({limit})' if limit else str(exc), context() if context else {})
    except Exception as exc:  # pylint: disable=broad-exception-caught
        # A probe must never take the whole run down: anything it raises is this check's failure.
        context = getattr(config, 'context', None)
        return STATUS_FAILED, Outcome(False, describe_error(exc), context() if context else {})
    return (STATUS_OK if outcome.healthy else STATUS_FAILED), outcome


def describe_error(exc: BaseException) -> str:
    """A short, human-readable description of a network or system error."""
    if isinstance(exc, ssl.SSLCertVerificationError):
        return f'certificate verification failed: {exc.verify_message or exc.reason}'
    if isinstance(exc, ssl.SSLError):
        return f"TLS error: {getattr(exc, 'reason', None) or exc}"
    if isinstance(exc, ConnectionRefusedError):
        return 'connection refused'
    if isinstance(exc, http.client.RemoteDisconnected):
        return 'connection closed without a response'
    if isinstance(exc, ConnectionResetError):
        return 'connection reset by peer'
    if isinstance(exc, (TimeoutError, socket.timeout)):
        return 'timed out'
    if isinstance(exc, socket.gaierror):
        return f'cannot resolve host: {exc.strerror}'
    if isinstance(exc, OSError) and exc.strerror:
        text = exc.strerror[:1].lower() + exc.strerror[1:]
        return f'{text}: {exc.filename}' if exc.filename else text
    if isinstance(exc, http.client.HTTPException):
        return f'invalid HTTP response ({type(exc).__name__})'
    return f'{type(exc).__name__}: {exc}' if str(exc) else type(exc).__name__


def summarize(results: t.Sequence[CheckResult]) -> str:
    """One line for humans, e.g. ``2/3 checks healthy; failed: healthz (HTTP 503 not in [200])``."""
    healthy = sum(1 for result in results if result.healthy)
    text = f'{healthy}/{len(results)} checks healthy'
    failed = [f'{result.name} ({result.message})' for result in results if not result.healthy]
    if failed:
        text += '; failed: ' + ', '.join(failed)
    return text


# ---------------------------------------------------------------------------
# Shared helpers
# ---------------------------------------------------------------------------

def as_text(value: t.Any) -> str:
    """Render a JSON or SQL value the way it is compared with an expected value."""
    if isinstance(value, str):
        return value
    if isinstance(value, bytes):
        return value.decode('utf-8', errors='replace')
    if value is None or isinstance(value, (bool, dict, list)):
        return json.dumps(value, sort_keys=True)
    return str(value)


def _opt(options: t.Mapping[str, t.Any], key: str, default: t.Any = None) -> t.Any:
    value = options.get(key)
    return default if value is None else value


def _require(options: t.Mapping[str, t.Any], key: str, kind: str) -> t.Any:
    value = options.get(key)
    if value is None or value == '':
        raise CheckConfigError(f'{key} is required for a {kind} check')
    return value


def _port(value: t.Any, key: str = 'port') -> int:
    if isinstance(value, bool) or not isinstance(value, int) or not 1 <= value <= 65535:
        raise CheckConfigError(f'{key} must be an integer between 1 and 65535 (got {value!r})')
    return value


def _bool(options: t.Mapping[str, t.Any], key: str, default: bool) -> bool:
    value = _opt(options, key, default)
    if not isinstance(value, bool):
        raise CheckConfigError(f'{key} must be a boolean (got {value!r})')
    return value


def _ssl_context(validate_certs: bool, ca_path: str | None) -> ssl.SSLContext:
    if ca_path is not None and not os.path.exists(ca_path):
        raise CheckConfigError(f'ca_path {ca_path} does not exist')
    try:
        if ca_path is not None and os.path.isdir(ca_path):
            context = ssl.create_default_context(capath=ca_path)
        else:
            context = ssl.create_default_context(cafile=ca_path)
    except (ssl.SSLError, OSError) as exc:
        raise CheckConfigError(f'cannot load CA certificates from {ca_path}: {describe_error(exc)}') from exc
    if not validate_certs:
        context.check_hostname = False
        context.verify_mode = ssl.CERT_NONE
    return context


def _read_text(path: str, limit: int = 4096) -> str:
    with open(path, 'rb') as handle:
        return handle.read(limit).decode('utf-8', errors='replace')


def _format_bytes(value: float) -> str:
    for unit in ('B', 'KiB', 'MiB', 'GiB', 'TiB'):
        if abs(value) < 1024 or unit == 'TiB':
            return f'{value:.0f} {unit}' if unit == 'B' else f'{value:.1f} {unit}'
        value /= 1024
    return f'{value:.1f} PiB'  # pragma: no cover - unreachable, the loop returns at TiB


# ---------------------------------------------------------------------------
# Credentials in URLs
# ---------------------------------------------------------------------------

_URL_USERINFO = re.compile(r'(?i)\b([a-z][a-z0-9+.-]*://)[^/?#\s@]*@')


def url_secrets(url: t.Any) -> tuple[str, ...]:
    """The password held in ``url``'s user information (raw and percent-decoded), longest first.

    The user name is left out: it is not a secret, and masking a short one everywhere would garble the output.
    """
    if not isinstance(url, str) or '@' not in url:
        return ()
    userinfo = url.split('://', 1)[-1].split('/', 1)[0].split('?', 1)[0].split('#', 1)[0].rpartition('@')[0]
    if ':' not in userinfo:
        return ()
    password = userinfo.split(':', 1)[1]
    found = {password, urllib.parse.unquote(password)}
    return tuple(sorted((item for item in found if item), key=len, reverse=True))


def mask_url_credentials(text: str, secrets: t.Sequence[str] = ()) -> str:
    """``text`` with the user information of every URL in it, and each of ``secrets``, replaced by ``********``."""
    if not isinstance(text, str):
        return text
    return _scrub(_URL_USERINFO.sub(lambda match: match.group(1) + MASK + '@', text), secrets)


# ---------------------------------------------------------------------------
# Connections within a budget
# ---------------------------------------------------------------------------

def resolve(host: str, port: int, budget: Budget) -> list[tuple[t.Any, ...]]:
    """``getaddrinfo`` for a TCP connection, bounded by ``budget`` (the system resolver takes no timeout)."""
    try:
        # A literal address needs no resolver.
        return socket.getaddrinfo(host, port, 0, socket.SOCK_STREAM, 0, socket.AI_NUMERICHOST)
    except socket.gaierror:
        pass
    return bounded_call(lambda: socket.getaddrinfo(host, port, 0, socket.SOCK_STREAM), budget, f'while resolving {host}')


def connect(host: str, port: int, budget: Budget) -> socket.socket:
    """A TCP connection to the first address of ``host`` that accepts one, within ``budget``."""
    addresses = resolve(host, port, budget)
    phase = f'while connecting to {host}:{port}'
    error: OSError | None = None
    for family, kind, proto, _canonname, address in addresses:
        sock = socket.socket(family, kind, proto)
        try:
            sock.settimeout(budget.remaining(phase))
            sock.connect(address)
        except TimeoutError:
            sock.close()
            raise budget.exceeded() from None
        except OSError as exc:
            sock.close()
            error = exc
            continue
        except BaseException:
            sock.close()
            raise
        return sock
    raise error if error is not None else OSError(f'no address found for {host}')


def tls_handshake(sock: socket.socket, context: ssl.SSLContext, server_name: str, budget: Budget) -> ssl.SSLSocket:
    """Wrap ``sock`` in TLS and finish the handshake before the budget runs out, however slowly the peer answers.

    The handshake runs on a non-blocking socket, waiting with ``poll`` for the time left, so a peer
    that trickles its handshake records cannot stretch it.
    """
    phase = 'during the TLS handshake'
    try:
        budget.remaining(phase)
        sock.setblocking(False)
        tls = context.wrap_socket(sock, server_hostname=server_name, do_handshake_on_connect=False)
    except BaseException:
        sock.close()
        raise
    try:
        poller = select.poll()
        poller.register(tls.fileno(), select.POLLIN)
        while True:
            try:
                tls.do_handshake()
                break
            except ssl.SSLWantReadError:
                poller.modify(tls.fileno(), select.POLLIN)
            except ssl.SSLWantWriteError:
                poller.modify(tls.fileno(), select.POLLOUT)
            if not poller.poll(max(1, math.ceil(budget.remaining(phase) * 1000))):
                budget.remaining(phase)
        tls.settimeout(budget.remaining(phase))
    except BaseException:
        tls.close()
        raise
    return tls


class _BudgetReader(io.RawIOBase):
    """Raw reads from a socket, each one waiting at most for the time left in the budget."""

    def __init__(self, sock: socket.socket, budget: Budget) -> None:
        super().__init__()
        self._sock = sock
        self._budget = budget

    def readable(self) -> bool:
        return True

    def readinto(self, buffer: t.Any) -> int:
        self._sock.settimeout(self._budget.remaining())
        try:
            return self._sock.recv_into(buffer)
        except TimeoutError:
            raise self._budget.exceeded() from None


class _BudgetSocket:
    """What :class:`http.client.HTTPResponse` needs of a socket: a ``makefile`` whose reads obey the budget."""

    def __init__(self, sock: socket.socket, budget: Budget) -> None:
        self._sock = sock
        self._budget = budget

    def makefile(self, mode: str = 'rb') -> io.BufferedReader:  # pylint: disable=unused-argument
        return io.BufferedReader(_BudgetReader(self._sock, self._budget))


class _BudgetHTTPConnection(http.client.HTTPConnection):
    """An HTTP(S) connection whose connect and TLS handshake obey a :class:`Budget`."""

    def __init__(self, host: str, port: int, budget: Budget, ssl_context: ssl.SSLContext | None) -> None:
        super().__init__(host, port, timeout=budget.remaining())
        self._budget = budget
        self._ssl_context = ssl_context
        if ssl_context is not None:
            self.default_port = 443  # The Host header leaves out the scheme's default port.

    def connect(self) -> None:
        sock = connect(self.host, self.port, self._budget)
        try:
            sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
            if self._ssl_context is not None:
                sock = tls_handshake(sock, self._ssl_context, self.host, self._budget)
        except BaseException:
            sock.close()
            raise
        self.sock = sock


# ---------------------------------------------------------------------------
# HTTP and HTTPS
# ---------------------------------------------------------------------------

@dataclasses.dataclass(frozen=True)
class HttpConfig:
    scheme: str
    host: str
    port: int
    target: str
    method: str
    status_codes: tuple[int, ...]
    headers: tuple[tuple[str, str], ...]
    body: bytes | None
    body_regex: re.Pattern[str] | None
    json_field: tuple[str, ...] | None
    json_value: str | None
    ssl_context: ssl.SSLContext | None


HTTP_OPTIONS = frozenset(('url', 'url_username', 'url_password', 'method', 'status_codes', 'body_regex', 'json_field', 'json_value', 'headers', 'body',
                          'validate_certs', 'ca_path'))

URL_CREDENTIALS_REFUSED = (
    'url must not hold a user name or password, which the task output would show: '
    'give them as url_username and url_password, or as an Authorization header in headers (both are hidden from the output)'
)


def parse_http(options: t.Mapping[str, t.Any], kind: str = 'http') -> HttpConfig:
    """Validate the options of an ``http`` or ``https`` check."""
    url = _require(options, 'url', kind)
    if not isinstance(url, str):
        raise CheckConfigError(f'url must be a string (got {type(url).__name__})')
    try:
        parts = urllib.parse.urlsplit(url)
    except ValueError as exc:
        raise CheckConfigError(f'malformed url: {mask_url_credentials(str(exc), url_secrets(url))}') from exc
    if '@' in parts.netloc:
        raise CheckConfigError(URL_CREDENTIALS_REFUSED)
    try:
        port = parts.port
    except ValueError as exc:
        raise CheckConfigError(f'malformed url: {mask_url_credentials(str(exc), url_secrets(url))}') from exc
    scheme = parts.scheme.lower()
    if scheme not in ('http', 'https'):
        raise CheckConfigError(f"url must use the http or https scheme (got {parts.scheme or 'none'!r})")
    if kind == 'https' and scheme != 'https':
        raise CheckConfigError('an https check needs an https:// url')
    if not parts.hostname:
        raise CheckConfigError('url has no host')
    if port == 0:
        raise CheckConfigError('url port must be between 1 and 65535')
    if any(char in url for char in '\r\n\t ') or any(ord(char) < 32 for char in url):
        raise CheckConfigError('url must not contain whitespace or control characters')

    method = str(_opt(options, 'method', 'GET')).upper()
    if method not in HTTP_METHODS:
        raise CheckConfigError(f"method must be one of {', '.join(HTTP_METHODS)} (got {method!r})")

    status_codes = _opt(options, 'status_codes', [200])
    if not status_codes or not all(isinstance(code, int) and not isinstance(code, bool) and 100 <= code <= 599 for code in status_codes):
        raise CheckConfigError(f'status_codes must be a non-empty list of HTTP status codes between 100 and 599 (got {status_codes!r})')

    headers = _parse_headers(_opt(options, 'headers', {}))
    username, password = options.get('url_username'), options.get('url_password')
    if password is not None and username is None:
        raise CheckConfigError('url_password needs url_username')
    if username is not None:
        if any(name.lower() == 'authorization' for name, _value in headers):
            raise CheckConfigError('give either url_username and url_password or an Authorization header, not both')
        if not isinstance(username, str) or ':' in username or any(ord(char) < 32 for char in username + str(password or '')):
            raise CheckConfigError('url_username must be a string without colons or control characters')
        credentials = f'{username}:{password or ""}'
        headers += (('Authorization', 'Basic ' + base64.b64encode(credentials.encode('utf-8')).decode('ascii')),)
    if not any(name.lower() == 'user-agent' for name, _value in headers):
        headers += (('User-Agent', USER_AGENT),)

    body = options.get('body')
    body_regex = options.get('body_regex')
    try:
        pattern = re.compile(body_regex) if body_regex is not None else None
    except re.error as exc:
        raise CheckConfigError(f'body_regex is not a valid regular expression: {exc}') from exc

    json_field = options.get('json_field')
    json_path = None
    if json_field is not None:
        json_path = tuple(str(json_field).split('.'))
        if not all(json_path):
            raise CheckConfigError(f'json_field {json_field!r} must be a dotted path such as database.status')
    json_value = options.get('json_value')
    if json_value is not None and json_path is None:
        raise CheckConfigError('json_value needs json_field')

    validate_certs = _bool(options, 'validate_certs', True)
    context = _ssl_context(validate_certs, options.get('ca_path')) if scheme == 'https' else None
    target = urllib.parse.urlunsplit(('', '', parts.path or '/', parts.query, ''))
    return HttpConfig(
        scheme=scheme,
        host=parts.hostname,
        port=port or (443 if scheme == 'https' else 80),
        target=target,
        method=method,
        status_codes=tuple(status_codes),
        headers=headers,
        body=str(body).encode('utf-8') if body is not None else None,
        body_regex=pattern,
        json_field=json_path,
        json_value=as_text(json_value) if json_value is not None else None,
        ssl_context=context,
    )


def _parse_headers(headers: t.Any) -> tuple[tuple[str, str], ...]:
    if not isinstance(headers, t.Mapping):
        raise CheckConfigError('headers must be a dictionary')
    parsed = []
    for name, value in headers.items():
        name = str(name)
        value = as_text(value)
        if not HEADER_NAME_PATTERN.fullmatch(name):
            raise CheckConfigError(f'invalid HTTP header name {name!r}')
        if any(char in value for char in '\r\n\0'):
            raise CheckConfigError(f'the value of HTTP header {name} must not contain line breaks')
        parsed.append((name, value))
    return tuple(parsed)


def probe_http(config: HttpConfig, timeout: float) -> Outcome:
    """Send one request and judge the response; every phase, headers included, within ``timeout`` in total."""
    budget = Budget(timeout)
    connection = _BudgetHTTPConnection(config.host, config.port, budget, config.ssl_context)
    response: http.client.HTTPResponse | None = None
    try:
        connection.connect()
        sock = t.cast(socket.socket, connection.sock)
        sock.settimeout(budget.remaining('while sending the request'))
        connection.request(config.method, config.target, body=config.body, headers=dict(config.headers))
        budget.remaining('while reading the status line and headers')
        response = http.client.HTTPResponse(t.cast(socket.socket, _BudgetSocket(sock, budget)), method=config.method)
        response.begin()
        budget.phase = 'while reading the response body'
        body = _read_body(response)
    except TimeoutError as exc:
        if isinstance(exc, DeadlineExceeded):
            raise
        raise budget.exceeded() from None
    finally:
        if response is not None:
            response.close()
        connection.close()

    details: dict[str, t.Any] = {'status_code': response.status, 'body_bytes': len(body)}
    if response.status not in config.status_codes:
        return Outcome(False, f'HTTP {response.status} not in {list(config.status_codes)}', details)
    text = body.decode('utf-8', errors='replace')
    if config.body_regex is not None and not config.body_regex.search(text):
        return Outcome(False, f'HTTP {response.status} but the body does not match {config.body_regex.pattern!r}', details)
    if config.json_field is not None:
        field = '.'.join(config.json_field)
        try:
            document = json.loads(text)
        except ValueError:
            return Outcome(False, f'HTTP {response.status} but the body is not valid JSON', details)
        found, value = _json_lookup(document, config.json_field)
        if not found:
            return Outcome(False, f'JSON field {field!r} not found', details)
        details['json_value'] = as_text(value)
        if config.json_value is not None and details['json_value'] != config.json_value:
            return Outcome(False, f"JSON field {field!r} is {details['json_value']!r}, expected {config.json_value!r}", details)
    return Outcome(True, f'HTTP {response.status}', details)


def _read_body(response: http.client.HTTPResponse) -> bytes:
    """At most :data:`MAX_BODY_BYTES` of the body; the reads obey the response's budget."""
    chunks = []
    size = 0
    while size < MAX_BODY_BYTES:
        chunk = response.read1(min(65536, MAX_BODY_BYTES - size))
        if not chunk:
            break
        chunks.append(chunk)
        size += len(chunk)
    return b''.join(chunks)


def _json_lookup(document: t.Any, path: t.Sequence[str]) -> tuple[bool, t.Any]:
    current = document
    for key in path:
        if isinstance(current, dict) and key in current:
            current = current[key]
        elif isinstance(current, list) and key.isdigit() and int(key) < len(current):
            current = current[int(key)]
        else:
            return False, None
    return True, current


# ---------------------------------------------------------------------------
# TCP
# ---------------------------------------------------------------------------

@dataclasses.dataclass(frozen=True)
class TcpConfig:
    host: str
    port: int

    def context(self) -> dict[str, t.Any]:
        """Details reported even when the connection fails."""
        return {'host': self.host, 'port': self.port}


def parse_tcp(options: t.Mapping[str, t.Any]) -> TcpConfig:
    """Validate the options of a ``tcp`` check."""
    return TcpConfig(host=str(_require(options, 'host', 'tcp')), port=_port(_require(options, 'port', 'tcp')))


def probe_tcp(config: TcpConfig, timeout: float) -> Outcome:
    """Open a TCP connection and close it again, name resolution included within ``timeout``."""
    with connect(config.host, config.port, Budget(timeout)) as sock:
        peer = sock.getpeername()
    return Outcome(True, f'connected to {config.host}:{config.port}', {'host': config.host, 'port': config.port, 'address': peer[0]})


# ---------------------------------------------------------------------------
# Process: pidfile, process name or supervisor program
# ---------------------------------------------------------------------------

@dataclasses.dataclass(frozen=True)
class ProcessConfig:
    pidfile: str | None = None
    process_name: str | None = None
    supervisor_program: str | None = None
    supervisorctl: str | None = None
    supervisor_config: str | None = None


def parse_process(options: t.Mapping[str, t.Any]) -> ProcessConfig:
    """Validate the options of a ``process`` check: exactly one of pidfile, process_name, supervisor_program."""
    given = [key for key in ('pidfile', 'process_name', 'supervisor_program') if options.get(key) is not None]
    if len(given) != 1:
        raise CheckConfigError(f"a process check needs exactly one of pidfile, process_name, supervisor_program (got {', '.join(given) or 'none'})")
    if given[0] != 'supervisor_program':
        for key in ('supervisorctl', 'supervisor_config'):
            if options.get(key) is not None:
                raise CheckConfigError(f'{key} is only valid together with supervisor_program')
    if given[0] == 'pidfile':
        return ProcessConfig(pidfile=str(options['pidfile']))
    if given[0] == 'process_name':
        return ProcessConfig(process_name=validate_name(options['process_name'], 'process name'))

    program = validate_name(options['supervisor_program'], 'supervisor program name')
    wanted = str(_opt(options, 'supervisorctl', 'supervisorctl'))
    executable = shutil.which(wanted)
    if executable is None:
        raise CheckConfigError(f'supervisorctl executable not found: {wanted}')
    config = options.get('supervisor_config')
    if config is not None and not os.path.isfile(config):
        raise CheckConfigError(f'supervisor_config {config} does not exist')
    return ProcessConfig(supervisor_program=program, supervisorctl=executable, supervisor_config=config)


def probe_process(config: ProcessConfig, timeout: float) -> Outcome:
    """Dispatch to the pidfile, process name or supervisor probe."""
    budget = Budget(timeout)
    if config.pidfile is not None:
        return t.cast(Outcome, bounded_call(lambda: _probe_pidfile(t.cast(str, config.pidfile)), budget, f'while reading {config.pidfile}'))
    if config.process_name is not None:
        return t.cast(Outcome, bounded_call(lambda: _probe_process_name(t.cast(str, config.process_name)), budget, 'while listing the processes'))
    return _probe_supervisor(config, timeout)


def pid_alive(pid: int) -> bool:
    """Whether a process with this PID exists and is not a zombie."""
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        pass  # It exists, it just belongs to someone else.
    try:
        stat = _read_text(f'/proc/{pid}/stat')
    except OSError:
        return True
    fields = stat.rsplit(')', 1)[-1].split()
    return not fields or fields[0] not in ('Z', 'X')


def _probe_pidfile(pidfile: str) -> Outcome:
    details: dict[str, t.Any] = {'pidfile': pidfile}
    try:
        content = _read_text(pidfile, 64).strip()
    except FileNotFoundError:
        return Outcome(False, f'pidfile {pidfile} not found', details)
    if not content.isdigit() or int(content) <= 0:
        return Outcome(False, f'pidfile {pidfile} does not contain a PID', details)
    pid = details['pid'] = int(content)
    if not pid_alive(pid):
        return Outcome(False, f'process {pid} from {pidfile} is not running', details)
    return Outcome(True, f'process {pid} is running', details)


def _probe_process_name(name: str) -> Outcome:
    if not os.path.isdir('/proc'):  # pragma: no cover - every supported platform has /proc
        raise CheckConfigError('process_name checks need /proc')
    own = os.getpid()
    pids = []
    for entry in os.listdir('/proc'):
        if not entry.isdigit() or int(entry) == own:
            continue
        try:
            comm = _read_text(f'/proc/{entry}/comm').strip()
            argv0 = _read_text(f'/proc/{entry}/cmdline').split('\0', 1)[0]
        except OSError:
            continue  # The process went away while we were looking.
        if (comm == name or os.path.basename(argv0) == name) and pid_alive(int(entry)):
            pids.append(int(entry))
    pids.sort()
    details = {'process_name': name, 'count': len(pids), 'pids': pids[:20]}
    if not pids:
        return Outcome(False, f'no process named {name} is running', details)
    return Outcome(True, f'{len(pids)} process(es) named {name} running', details)


def _probe_supervisor(config: ProcessConfig, timeout: float) -> Outcome:
    program = t.cast(str, config.supervisor_program)
    details: dict[str, t.Any] = {'supervisor_program': program}
    ctl = Supervisorctl(subprocess_runner(timeout), t.cast(str, config.supervisorctl), config.supervisor_config)
    try:
        status = ctl.status(program)
    except SupervisorError as exc:
        return Outcome(False, str(exc), details)
    details['supervisor_state'] = status.state
    if status.pid is not None:
        details['pid'] = status.pid
        details['uptime'] = status.uptime
    message = f'supervisor program {program} is {status.state}' + (f' ({status.description})' if status.description else '')
    return Outcome(status.running, message, details)


# ---------------------------------------------------------------------------
# Disk
# ---------------------------------------------------------------------------

@dataclasses.dataclass(frozen=True)
class DiskConfig:
    path: str
    min_free_bytes: int | None
    min_free_percent: float | None


def parse_disk(options: t.Mapping[str, t.Any]) -> DiskConfig:
    """Validate the options of a ``disk`` check."""
    path = str(_require(options, 'path', 'disk'))
    min_bytes = options.get('min_free_bytes')
    min_percent = options.get('min_free_percent')
    if min_bytes is None and min_percent is None:
        raise CheckConfigError('a disk check needs min_free_bytes, min_free_percent or both')
    if min_bytes is not None and (isinstance(min_bytes, bool) or not isinstance(min_bytes, int) or min_bytes < 0):
        raise CheckConfigError(f'min_free_bytes must be an integer of 0 or more (got {min_bytes!r})')
    if min_percent is not None and (isinstance(min_percent, bool) or not isinstance(min_percent, (int, float)) or not 0 <= min_percent <= 100):
        raise CheckConfigError(f'min_free_percent must be between 0 and 100 (got {min_percent!r})')
    return DiskConfig(path=path, min_free_bytes=min_bytes, min_free_percent=min_percent)


def probe_disk(config: DiskConfig, timeout: float) -> Outcome:
    """Compare the space available to unprivileged users with the thresholds (a hung file system cannot hold the check)."""
    try:
        stats = bounded_call(lambda: os.statvfs(config.path), Budget(timeout), f'while reading the file system of {config.path}')
    except FileNotFoundError:
        return Outcome(False, f'path {config.path} does not exist', {'path': config.path})
    free = stats.f_bavail * stats.f_frsize
    used = (stats.f_blocks - stats.f_bfree) * stats.f_frsize
    total = stats.f_blocks * stats.f_frsize
    # Like df: the share of the space usable by unprivileged users that is still free.
    percent = round(100.0 * free / (used + free), 2) if used + free else 0.0
    details = {'path': config.path, 'free_bytes': free, 'total_bytes': total, 'free_percent': percent}
    summary = f'{_format_bytes(free)} free ({percent:g} %)'
    if config.min_free_bytes is not None and free < config.min_free_bytes:
        return Outcome(False, f'{summary}, below {_format_bytes(config.min_free_bytes)}', details)
    if config.min_free_percent is not None and percent < config.min_free_percent:
        return Outcome(False, f'{summary}, below {config.min_free_percent:g} %', details)
    return Outcome(True, summary, details)


# ---------------------------------------------------------------------------
# TLS certificate
# ---------------------------------------------------------------------------

@dataclasses.dataclass(frozen=True)
class TlsCertConfig:
    host: str
    port: int
    server_name: str | None
    min_days_valid: int
    ssl_context: ssl.SSLContext

    def context(self) -> dict[str, t.Any]:
        """Details reported even when the connection fails."""
        return {'host': self.host, 'port': self.port}


TLS_CERT_OPTIONS = frozenset(('host', 'port', 'server_name', 'min_days_valid', 'validate_certs', 'ca_path'))


def parse_tls_cert(options: t.Mapping[str, t.Any]) -> TlsCertConfig:
    """Validate the options of a ``tls_cert`` check."""
    optional_library('cryptography.x509', 'tls_cert checks')
    host = str(_require(options, 'host', 'tls_cert'))
    min_days = _opt(options, 'min_days_valid', DEFAULT_MIN_DAYS_VALID)
    if isinstance(min_days, bool) or not isinstance(min_days, int) or min_days < 0:
        raise CheckConfigError(f'min_days_valid must be an integer of 0 or more (got {min_days!r})')
    server_name = options.get('server_name')
    return TlsCertConfig(
        host=host,
        port=_port(_opt(options, 'port', 443)),
        server_name=str(server_name) if server_name else None,
        min_days_valid=min_days,
        ssl_context=_ssl_context(_bool(options, 'validate_certs', False), options.get('ca_path')),
    )


def probe_tls_cert(config: TlsCertConfig, timeout: float) -> Outcome:
    """Fetch the peer certificate and report how many days it stays valid."""
    budget = Budget(timeout)
    with tls_handshake(connect(config.host, config.port, budget), config.ssl_context, config.server_name or config.host, budget) as tls:
        der = tls.getpeercert(binary_form=True)
    if not der:  # pragma: no cover - a TLS server always presents a certificate to a client that asks
        return Outcome(False, 'the server sent no certificate')
    certificate = optional_library('cryptography.x509', 'tls_cert checks').load_der_x509_certificate(der)
    not_after = certificate.not_valid_after_utc
    not_before = certificate.not_valid_before_utc
    now = datetime.datetime.now(datetime.timezone.utc)
    days_left = math.floor((not_after - now).total_seconds() / 86400)
    details = {
        'days_left': days_left,
        'not_after': not_after.isoformat(),
        'not_before': not_before.isoformat(),
        'subject': certificate.subject.rfc4514_string(),
        'issuer': certificate.issuer.rfc4514_string(),
    }
    if now < not_before:
        return Outcome(False, f'not valid before {not_before.isoformat()}', details)
    if now >= not_after:
        ago = math.floor((now - not_after).total_seconds() / 86400)
        return Outcome(False, f'expired {ago} day(s) ago' if ago else 'expired less than a day ago', details)
    message = f'expires in {days_left} days'
    if days_left < config.min_days_valid:
        return Outcome(False, f'{message} (< {config.min_days_valid})', details)
    return Outcome(True, message, details)


# ---------------------------------------------------------------------------
# SQL
# ---------------------------------------------------------------------------

@dataclasses.dataclass(frozen=True)
class SqlConfig:
    backend: str
    dsn: str = dataclasses.field(repr=False)
    path: str | None
    query: str
    expect: str | None
    secrets: tuple[str, ...] = dataclasses.field(repr=False)


def mask_dsn(dsn: str) -> str:
    """The DSN with its password replaced by ``********``."""
    result = dsn
    for secret in _dsn_secrets(dsn):
        result = result.replace(secret, MASK)
    return result


def _dsn_secrets(dsn: str) -> tuple[str, ...]:
    secrets: set[str] = set()
    try:
        parts = urllib.parse.urlsplit(dsn)
        password = parts.password
    except ValueError:
        password = None
        parts = None
    if password:
        secrets.update((password, urllib.parse.unquote(password)))
    if parts is not None:
        for value in urllib.parse.parse_qs(parts.query).get('password', []):
            secrets.update((value, urllib.parse.quote(value, safe='')))
    for match in re.finditer(r"password\s*=\s*('(?:[^'\\]|\\.)*'|\S+)", dsn):
        value = match.group(1)
        secrets.update((value, value.strip("'")))
    # Longest first, so that a secret containing another one is masked whole.
    return tuple(sorted((secret for secret in secrets if secret), key=len, reverse=True))


def _scrub(text: str, secrets: t.Sequence[str]) -> str:
    for secret in secrets:
        text = text.replace(secret, MASK)
    return text


READ_ONLY_KEYWORDS = ('SELECT', 'WITH', 'VALUES')
_DOLLAR_TAG = re.compile(r'\$([A-Za-z_][A-Za-z0-9_]*)?\$')


def sql_code(query: str, dialect: str) -> str:
    """``query`` with its comments, string literals and quoted identifiers blanked out, leaving only code.

    Follows the quoting rules of ``dialect`` (``sqlite`` or ``postgresql``: nested block comments,
    ``E''`` strings and dollar quoting). Raise :class:`CheckConfigError` on an unterminated literal or comment.
    """
    out: list[str] = []
    index = 0
    length = len(query)
    while index < length:
        char = query[index]
        two = query[index:index + 2]
        if two == '--':
            end = query.find('\n', index)
            index = length if end < 0 else end
            out.append(' ')
        elif two == '/*':
            depth, index = 1, index + 2
            while depth:
                if index >= length:
                    raise CheckConfigError('query has an unterminated /* comment')
                if dialect == 'postgresql' and query.startswith('/*', index):
                    depth, index = depth + 1, index + 2
                elif query.startswith('*/', index):
                    depth, index = depth - 1, index + 2
                else:
                    index += 1
            out.append(' ')
        elif char in '\'"`' or (char == '[' and dialect == 'sqlite'):
            close = ']' if char == '[' else char
            escapes = dialect == 'postgresql' and char == "'" and index > 0 and query[index - 1] in 'eE' and (
                index < 2 or not (query[index - 2].isalnum() or query[index - 2] == '_'))
            index += 1
            while True:
                if index >= length:
                    raise CheckConfigError('query has an unterminated quoted string or identifier')
                if escapes and query[index] == '\\':
                    index += 2
                elif query[index] == close:
                    if close != ']' and query.startswith(close * 2, index):
                        index += 2
                    else:
                        index += 1
                        break
                else:
                    index += 1
            out.append(' 0 ' if char == "'" else ' x ')
        elif char == '$' and dialect == 'postgresql' and (match := _DOLLAR_TAG.match(query, index)) and not (
                index > 0 and (query[index - 1].isalnum() or query[index - 1] == '_')):
            tag = match.group(0)
            end = query.find(tag, match.end())
            if end < 0:
                raise CheckConfigError('query has an unterminated dollar-quoted string')
            index = end + len(tag)
            out.append(' 0 ')
        else:
            out.append(char)
            index += 1
    return ''.join(out)


def check_read_only_query(query: str, dialect: str) -> None:
    """Refuse anything but one ``SELECT``, ``WITH`` or ``VALUES`` statement (a trailing ``;`` is fine).

    This is the first of several guards: the connection itself is read-only too (see :func:`probe_sql`).
    """
    statements = [part for part in sql_code(query, dialect).split(';') if part.strip()]
    if len(statements) != 1:
        raise CheckConfigError(f'query must be a single statement (found {len(statements)})')
    words = re.findall(r'[A-Za-z_]+', statements[0].lstrip(' \t\r\n('))
    first = words[0].upper() if words else ''
    if first not in READ_ONLY_KEYWORDS:
        raise CheckConfigError(f"query must be a read-only SELECT or WITH statement (got {first or 'none'})")


def parse_sql(options: t.Mapping[str, t.Any]) -> SqlConfig:
    """Validate the options of a ``sql`` check."""
    dsn = _require(options, 'dsn', 'sql')
    if not isinstance(dsn, str):
        raise CheckConfigError('dsn must be a string')
    query = str(_opt(options, 'query', DEFAULT_QUERY))
    if not query.strip():
        raise CheckConfigError('query must not be empty')
    expect = options.get('expect')
    expect_text = as_text(expect) if expect is not None else None
    secrets = _dsn_secrets(dsn)
    scheme = dsn.split(':', 1)[0].lower() if ':' in dsn else ''
    check_read_only_query(query, 'postgresql' if scheme in ('postgresql', 'postgres') else 'sqlite')

    if scheme == 'sqlite':
        parts = urllib.parse.urlsplit(dsn)
        if parts.netloc or not parts.path.startswith('/') or parts.query or parts.fragment:
            raise CheckConfigError('a sqlite dsn looks like sqlite:///absolute/path/to/file.db')
        path = '/' + parts.path.lstrip('/')
        return SqlConfig(backend='sqlite', dsn=dsn, path=path, query=query, expect=expect_text, secrets=secrets)

    if scheme in ('postgresql', 'postgres'):
        psycopg = optional_library('psycopg', 'postgresql checks')
        try:
            psycopg.conninfo.conninfo_to_dict(dsn)
        except psycopg.Error as exc:
            raise CheckConfigError('invalid postgresql dsn: ' + _scrub(str(exc), secrets)) from exc
        return SqlConfig(backend='postgresql', dsn=dsn, path=None, query=query, expect=expect_text, secrets=secrets)

    raise CheckConfigError(f"unsupported dsn scheme {scheme or 'none'!r} (use sqlite:/// or postgresql://)")


def probe_sql(config: SqlConfig, timeout: float) -> Outcome:
    """Run the query read-only and compare the first column of the first row."""
    details: dict[str, t.Any] = {'backend': config.backend}
    budget = Budget(timeout)
    try:
        if config.backend == 'sqlite':
            if not os.path.isfile(t.cast(str, config.path)):
                return Outcome(False, f'database file {config.path} not found', details)
            row = _query_sqlite(t.cast(str, config.path), config.query, timeout)
        else:
            row = _query_postgresql(config.dsn, config.query, budget)
    except DeadlineExceeded:
        raise
    except sqlite3.Error as exc:
        text = str(exc)
        if text == 'interrupted':
            raise DeadlineExceeded('while running the query') from None
        message = f'query refused, it does more than read: {text}' if 'authoriz' in text else f'database error: {text}'
        return Outcome(False, _scrub(message, config.secrets), details)
    except Exception as exc:  # pylint: disable=broad-exception-caught
        psycopg = sys.modules.get('psycopg')
        if psycopg is not None and isinstance(exc, psycopg.Error):
            if isinstance(exc, psycopg.errors.QueryCanceled) and budget.expires - time.monotonic() < 0.5:
                raise DeadlineExceeded('while running the query') from None
            return Outcome(False, _describe_psycopg_error(exc, config.secrets), details)
        return Outcome(False, _scrub(describe_error(exc), config.secrets), details)

    if row is None:
        if config.expect is not None:
            return Outcome(False, f'query returned no rows, expected {config.expect!r}', details)
        return Outcome(True, 'query returned no rows', details)
    value = details['value'] = as_text(row[0])[:200] if row else ''
    if config.expect is not None and value != config.expect:
        return Outcome(False, f'query returned {value!r}, expected {config.expect!r}', details)
    return Outcome(True, f'query returned {value!r}', details)


# What a health query may do in SQLite: read tables and call functions; nothing else, whatever the SQL says.
_SQLITE_ALLOWED_ACTIONS = frozenset(
    getattr(sqlite3, name) for name in ('SQLITE_SELECT', 'SQLITE_READ', 'SQLITE_FUNCTION', 'SQLITE_RECURSIVE') if hasattr(sqlite3, name)
)
_SQLITE_DENIED_FUNCTIONS = frozenset(('load_extension', 'readfile', 'writefile', 'edit', 'fts3_tokenizer'))


def _sqlite_authorizer(action: int, arg1: str | None, arg2: str | None, _database: str | None, _trigger: str | None) -> int:
    if action not in _SQLITE_ALLOWED_ACTIONS:
        return sqlite3.SQLITE_DENY
    if action == getattr(sqlite3, 'SQLITE_FUNCTION', -1) and (arg2 or '').lower() in _SQLITE_DENIED_FUNCTIONS:
        return sqlite3.SQLITE_DENY
    return sqlite3.SQLITE_OK


def _query_sqlite(path: str, query: str, timeout: float) -> tuple[t.Any, ...] | None:
    """Run ``query`` on a connection that cannot write: ``mode=ro``, ``query_only`` and an authorizer that denies all but reads."""
    uri = 'file:' + urllib.parse.quote(path) + '?mode=ro'
    expires = time.monotonic() + timeout
    # ``timeout`` is also the busy timeout: a locked database makes the check wait no longer than that.
    connection = sqlite3.connect(uri, uri=True, timeout=timeout)
    try:
        # Abort a query that runs past the timeout; a non-zero return interrupts it.
        connection.set_progress_handler(lambda: int(time.monotonic() > expires), 1000)
        # Reading the schema proves the file is a database, which SELECT 1 alone does not.
        connection.execute('PRAGMA schema_version').fetchone()
        connection.execute('PRAGMA query_only = ON')
        connection.set_authorizer(_sqlite_authorizer)
        return connection.execute(query).fetchone()
    finally:
        connection.close()


def _query_postgresql(dsn: str, query: str, budget: Budget) -> tuple[t.Any, ...] | None:
    """Run ``query`` in a read-only session, connection and query within ``budget``."""
    psycopg = optional_library('psycopg', 'postgresql checks')
    # libpq counts its connect timeout in whole seconds, at least 2, per address: the connection
    # attempt runs in a bounded call, so the check still ends when the budget does.
    connect_timeout = max(2, math.ceil(budget.remaining('while connecting to the database')))
    connection = bounded_call(lambda: psycopg.connect(dsn, connect_timeout=connect_timeout, autocommit=True),
                              budget, 'while connecting to the database', discard=lambda late: late.close())
    try:
        milliseconds = str(max(1, int(budget.remaining('while running the query') * 1000)))
        with connection.cursor() as cursor:
            # The session is read-only, not just this transaction, and no statement outlives the budget.
            cursor.execute(
                "SELECT set_config('default_transaction_read_only', 'on', false),"
                " set_config('statement_timeout', %s, false), set_config('lock_timeout', %s, false)",
                (milliseconds, milliseconds),
            )
        connection.autocommit = False
        connection.read_only = True
        with connection.cursor() as cursor:
            # prepare=True sends the query with the extended protocol, which runs exactly one statement.
            cursor.execute(query, prepare=True)
            row = cursor.fetchone() if cursor.description is not None else None
        connection.rollback()
        return row
    finally:
        connection.close()


def _describe_psycopg_error(exc: Exception, secrets: t.Sequence[str]) -> str:
    text = str(exc).strip()
    lowered = text.lower()
    if 'connection refused' in lowered:
        return 'connection refused'
    if 'timeout expired' in lowered or 'statement timeout' in lowered:
        return 'timed out'
    first = text.splitlines()[0] if text else type(exc).__name__
    return _scrub('database error: ' + first[:300], secrets)


# ---------------------------------------------------------------------------
# Registry: type -> (parser, probe, options it accepts)
# ---------------------------------------------------------------------------

_CHECKS: dict[str, tuple[t.Callable[[t.Mapping[str, t.Any]], t.Any], t.Callable[[t.Any, float], Outcome], frozenset[str]]] = {
    'http': (parse_http, probe_http, HTTP_OPTIONS),
    'https': (lambda options: parse_http(options, 'https'), probe_http, HTTP_OPTIONS),
    'tcp': (parse_tcp, probe_tcp, frozenset(('host', 'port'))),
    'process': (parse_process, probe_process, frozenset(('pidfile', 'process_name', 'supervisor_program', 'supervisorctl', 'supervisor_config'))),
    'disk': (parse_disk, probe_disk, frozenset(('path', 'min_free_bytes', 'min_free_percent'))),
    'tls_cert': (parse_tls_cert, probe_tls_cert, TLS_CERT_OPTIONS),
    'sql': (parse_sql, probe_sql, frozenset(('dsn', 'query', 'expect'))),
}

OPTIONS_BY_TYPE: dict[str, frozenset[str]] = {name: entry[2] for name, entry in _CHECKS.items()}
