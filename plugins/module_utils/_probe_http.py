# Copyright (c) Dihya ops maintainers
# GNU General Public License v3.0+ (see LICENSES/GPL-3.0-or-later.txt or https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later

# This module utility is PRIVATE to the collection. It can change at any time.

"""The ``http`` and ``https`` checks: one request, every phase (headers and body included) within the attempt's budget.

Also the rule for credentials in URLs: a URL's user information is refused as an option and masked
wherever a URL could show (check names, messages, the module's echoed arguments).
"""

from __future__ import annotations

import base64
import dataclasses
import http.client
import io
import json
import re
import socket
import ssl
import typing as t
import urllib.parse

from ansible_collections.dihya.ops.plugins.module_utils._db_url import MASK, scrub
from ansible_collections.dihya.ops.plugins.module_utils._probe_common import (
    Budget,
    CheckConfigError,
    DeadlineExceeded,
    Options,
    Outcome,
    as_text,
    bool_option,
    option,
    require,
)
from ansible_collections.dihya.ops.plugins.module_utils._probe_tcp import connect
from ansible_collections.dihya.ops.plugins.module_utils._probe_tls import client_context, tls_handshake

HTTP_METHODS = ('GET', 'HEAD', 'POST', 'PUT', 'PATCH', 'DELETE', 'OPTIONS')
# Only this much of an HTTP response body is read; health endpoints are small.
MAX_BODY_BYTES = 1024 * 1024
USER_AGENT = 'dihya.ops.health_check'
HEADER_NAME_PATTERN = re.compile(r"[!#$%&'*+.^_`|~0-9A-Za-z-]+")


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


_Text = t.TypeVar('_Text')


def mask_url_credentials(text: _Text, secrets: t.Sequence[str] = ()) -> _Text:
    """``text`` with the user information of every URL in it, and each of ``secrets``, replaced by ``********`` (a non-string as it is)."""
    if not isinstance(text, str):
        return text
    return t.cast(_Text, scrub(_URL_USERINFO.sub(lambda match: match.group(1) + MASK + '@', text), secrets))


# ---------------------------------------------------------------------------
# A connection whose every read obeys the budget
# ---------------------------------------------------------------------------

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


def parse_http(options: Options, kind: str = 'http') -> HttpConfig:
    """Validate the options of an ``http`` or ``https`` check."""
    url = require(options, 'url', kind)
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

    method = str(option(options, 'method', 'GET')).upper()
    if method not in HTTP_METHODS:
        raise CheckConfigError(f"method must be one of {', '.join(HTTP_METHODS)} (got {method!r})")

    status_codes = option(options, 'status_codes', [200])
    if not status_codes or not all(isinstance(code, int) and not isinstance(code, bool) and 100 <= code <= 599 for code in status_codes):
        raise CheckConfigError(f'status_codes must be a non-empty list of HTTP status codes between 100 and 599 (got {status_codes!r})')

    headers = _parse_headers(option(options, 'headers', {}))
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

    validate_certs = bool_option(options, 'validate_certs', True)
    context = client_context(validate_certs, options.get('ca_path')) if scheme == 'https' else None
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
    for key, raw in headers.items():
        name, value = str(key), as_text(raw)
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
