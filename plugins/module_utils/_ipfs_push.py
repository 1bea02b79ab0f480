# Copyright (c) Dihya ops maintainers
# GNU General Public License v3.0+ (see LICENSES/GPL-3.0-or-later.txt or https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later

# This module utility is PRIVATE to the collection. It can change at any time.

"""Sending a CAR file to a Kubo node: ``POST /api/v0/dag/import``, within one deadline.

The request is Kubo's RPC (https://docs.ipfs.tech/reference/kubo/rpc/#api-v0-dag-import): a
``multipart/form-data`` body with the CAR as its one file, ``pin-roots`` as asked. The body is streamed from
the open file (its length is known, so no chunked encoding), never loaded. One absolute deadline bounds
everything: the connection, every send and every read of the answer wait only for the time left, so a peer
that reads or answers slowly cannot stretch the push. The answer is Kubo's: HTTP 200 and JSON lines; with
``pin-roots`` a line ``{"Root": {"Cid": {"/": CID}, "PinErrorMsg": ""}}`` which must name the CAR's root and
carry no pin error; an error is ``{"Message": ...}`` with a status other than 200.

Credentials (basic or bearer, from Vault) go in the ``Authorization`` header only; a URL that holds a user or
password is refused (it would be shown). Messages name the endpoint without them.
"""

from __future__ import annotations

import base64
import dataclasses
import http.client
import json
import os
import ssl
import time
import typing as t
import urllib.parse

from ansible_collections.dihya.ops.plugins.module_utils._ipfs_unixfs import IpfsError


IMPORT_PATH = '/api/v0/dag/import'
MAX_ANSWER = 1 << 20
SEND_CHUNK = 1 << 20


class PushError(IpfsError):
    """The push failed; the CAR file is in place (the message says so)."""


@dataclasses.dataclass
class PushTarget:
    """Where and how to push."""

    url: str
    username: str | None = None
    password: str | None = None
    token: str | None = None
    pin: bool = False
    timeout: float = 60.0
    validate_certs: bool = True

    def endpoint(self) -> urllib.parse.SplitResult:
        """The parsed URL of ``dag/import``; :class:`IpfsError` for a URL that cannot be used."""
        try:
            parts = urllib.parse.urlsplit(self.url)
            port = parts.port
        except ValueError as exc:
            raise IpfsError(f'push url is not a valid URL ({exc})') from None
        if parts.scheme not in ('http', 'https') or not parts.hostname:
            raise IpfsError('push url must be an http:// or https:// URL of a Kubo RPC API (for example http://127.0.0.1:5001)')
        if parts.username is not None or parts.password is not None:
            raise IpfsError('push url must not hold a user name or password: give push.username and push.password (from Vault)')
        if parts.query or parts.fragment:
            raise IpfsError('push url must not have a query or fragment')
        if self.token and (self.username or self.password):
            raise IpfsError('push takes either a token or a username and password, not both')
        if bool(self.username) != bool(self.password):
            raise IpfsError('push.username and push.password go together')
        if not 0 < self.timeout <= 3600:
            raise IpfsError('push.timeout must be more than 0 and at most 3600 seconds')
        path = parts.path.rstrip('/')
        if not path.endswith(IMPORT_PATH):
            path += IMPORT_PATH
        netloc = parts.hostname if port is None else f'{parts.hostname}:{port}'
        if ':' in parts.hostname:
            netloc = f'[{parts.hostname}]' + ('' if port is None else f':{port}')
        return urllib.parse.SplitResult(parts.scheme, netloc, path, '', '')

    def shown(self) -> str:
        """The endpoint as messages and results show it."""
        return urllib.parse.urlunsplit(self.endpoint())


class _Deadline:
    def __init__(self, seconds: float, where: str) -> None:
        self.end = time.monotonic() + seconds
        self.where = where

    def left(self, phase: str) -> float:
        remaining = self.end - time.monotonic()
        if remaining <= 0:
            raise PushError(f'{self.where}: the push deadline passed during {phase}')
        return remaining


def _connection(target: PushTarget, url: urllib.parse.SplitResult, timeout: float) -> http.client.HTTPConnection:
    host = url.hostname or ''
    if url.scheme == 'https':
        context = ssl.create_default_context()
        if not target.validate_certs:
            context.check_hostname = False
            context.verify_mode = ssl.CERT_NONE
        return http.client.HTTPSConnection(host, url.port, timeout=timeout, context=context)
    return http.client.HTTPConnection(host, url.port, timeout=timeout)


def push(target: PushTarget, car: t.BinaryIO, size: int, root: str) -> dict[str, t.Any]:
    """POST the CAR (``car`` open at its start, ``size`` bytes) to the node; return what the node said.

    Raises :class:`PushError` (unreachable, deadline, refused, wrong root, pin error).
    """
    url = target.endpoint()
    shown = urllib.parse.urlunsplit(url)
    deadline = _Deadline(target.timeout, shown)
    boundary = 'dihya-ops-' + os.urandom(12).hex()
    head = (f'--{boundary}\r\nContent-Disposition: form-data; name="file"; filename="export.car"\r\n'
            'Content-Type: application/vnd.ipld.car\r\n\r\n').encode('ascii')
    tail = f'\r\n--{boundary}--\r\n'.encode('ascii')
    query = urllib.parse.urlencode({'pin-roots': 'true' if target.pin else 'false'})
    headers = {'Content-Type': f'multipart/form-data; boundary={boundary}', 'Content-Length': str(len(head) + size + len(tail)),
               'Accept': 'application/json'}
    if target.token:
        headers['Authorization'] = f'Bearer {target.token}'
    elif target.username:
        pair = f'{target.username}:{target.password}'.encode()
        headers['Authorization'] = 'Basic ' + base64.b64encode(pair).decode('ascii')
    connection = _connection(target, url, deadline.left('connect'))
    try:
        try:
            connection.connect()
            sock = connection.sock
            connection.putrequest('POST', f'{url.path}?{query}', skip_accept_encoding=True)
            for name, value in headers.items():
                connection.putheader(name, value)
            sock.settimeout(deadline.left('sending the request'))
            connection.endheaders()
            sock.settimeout(deadline.left('sending the request'))
            sock.sendall(head)
            sent = 0
            while sent < size:
                data = car.read(min(SEND_CHUNK, size - sent))
                if not data:
                    raise PushError(f'{shown}: the CAR file ended early while it was being sent')
                sock.settimeout(deadline.left('sending the CAR'))
                sock.sendall(data)
                sent += len(data)
            sock.settimeout(deadline.left('sending the request'))
            sock.sendall(tail)
            sock.settimeout(deadline.left('waiting for the answer'))
            response = connection.getresponse()
            body = b''
            while True:
                sock.settimeout(deadline.left('reading the answer'))
                data = response.read1(65536) if hasattr(response, 'read1') else response.read(65536)
                if not data:
                    break
                body += data
                if len(body) > MAX_ANSWER:
                    raise PushError(f'{shown}: the answer is larger than {MAX_ANSWER} bytes')
        except PushError:
            raise
        except TimeoutError:
            raise PushError(f'{shown}: no answer within the push deadline ({target.timeout:g} s)') from None
        except (OSError, http.client.HTTPException) as exc:
            raise PushError(f'{shown}: cannot push the CAR ({type(exc).__name__}: {exc})') from None
    finally:
        connection.close()
    return _answer(shown, response.status, body, root, target.pin)


def _answer(shown: str, status: int, body: bytes, root: str, pin: bool) -> dict[str, t.Any]:
    lines = []
    for raw in body.splitlines():
        if raw.strip():
            try:
                lines.append(json.loads(raw))
            except ValueError:
                lines.append({'Message': raw[:200].decode('utf-8', 'replace')})
    if status != 200:
        message = next((str(line.get('Message')) for line in lines if isinstance(line, dict) and 'Message' in line), '')
        raise PushError(f'{shown}: the node refused the CAR (HTTP {status}{": " + message[:300] if message else ""})')
    reported = [line['Root'] for line in lines if isinstance(line, dict) and isinstance(line.get('Root'), dict)]
    result: dict[str, t.Any] = {'endpoint': shown, 'pinned': False, 'roots': []}
    for item in reported:
        cid = item.get('Cid', {}).get('/') if isinstance(item.get('Cid'), dict) else None
        error = item.get('PinErrorMsg') or ''
        if error:
            raise PushError(f'{shown}: the node imported the CAR but could not pin {cid}: {str(error)[:300]}')
        result['roots'].append(cid)
    if pin:
        if root not in result['roots']:
            raise PushError(f'{shown}: the node did not report pinning the root {root} (it reported {result["roots"] or "nothing"})')
        result['pinned'] = True
    return result


__all__ = ['IMPORT_PATH', 'PushError', 'PushTarget', 'push']
