# Copyright (c) Dihya ops maintainers
# GNU General Public License v3.0+ (see LICENSES/GPL-3.0-or-later.txt or https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later

# This module utility is PRIVATE to the collection. It can change at any time.

"""Read a supervisor program's state over supervisord's XML-RPC interface, the one supervisorctl itself uses.

``supervisorctl`` is a Python program: each call costs a fresh interpreter (about 0.15 s of CPU), which is
most of a health check's cost on a fleet. The health checks read the state directly with the standard
library's ``xmlrpc.client`` over the server URL that the supervisord configuration names, and keep
``supervisorctl`` for what this cannot resolve (no configuration file given, a server URL in an included
file, an expansion other than ``%(here)s`` and ``%(ENV_...)s``).
"""

from __future__ import annotations

import base64
import configparser
import dataclasses
import http.client
import os
import re
import socket
import typing as t
import urllib.parse
import xmlrpc.client

from ansible_collections.dihya.ops.plugins.module_utils._supervisor import ProgramStatus, SupervisorError, parse_status_line, validate_name

EXPANSION = re.compile(r'%\((here|ENV_[A-Za-z_][A-Za-z0-9_]*)\)s')
CONFIG_LIMIT = 1 << 20


@dataclasses.dataclass(frozen=True)
class ServerUrl:
    """Where supervisord listens (``unix:///path`` or ``http://host:port``) and the credentials of supervisorctl."""

    url: str
    username: str | None = None
    password: str | None = dataclasses.field(default=None, repr=False)


def _expand(value: str, here: str) -> str | None:
    """supervisor's ``%(here)s`` and ``%(ENV_X)s``; None for any other expansion (left to supervisorctl)."""
    def replace(match: re.Match[str]) -> str:
        name = match.group(1)
        return here if name == 'here' else os.environ.get(name[4:], '')
    expanded = EXPANSION.sub(replace, value)
    return None if '%(' in expanded else expanded


def server_url(config_path: str) -> ServerUrl | None:
    """The server URL that ``supervisorctl -c config_path`` would use; None when it cannot be resolved from that file alone."""
    parser = configparser.RawConfigParser(inline_comment_prefixes=(';', '#'), strict=False)
    try:
        with open(config_path, encoding='utf-8') as handle:
            parser.read_string(handle.read(CONFIG_LIMIT))
    except (OSError, UnicodeDecodeError, configparser.Error):
        return None
    here = os.path.dirname(os.path.abspath(config_path))

    def get(section: str, key: str) -> str | None:
        if not parser.has_option(section, key):
            return None
        return _expand(parser.get(section, key).strip(), here)

    # Without a serverurl supervisorctl uses its own default, an included file may set one, and https is not
    # read here: all left to supervisorctl.
    url = get('supervisorctl', 'serverurl')
    if url is None or parser.has_section('include') or not url.startswith(('unix:///', 'http://')):
        return None
    return ServerUrl(url, get('supervisorctl', 'username') or None, get('supervisorctl', 'password') or None)


class _Connection(http.client.HTTPConnection):
    """HTTP over the server's unix socket, or over TCP; every socket operation bounded by ``timeout``."""

    def __init__(self, server: ServerUrl, timeout: float) -> None:
        self._unix_path = server.url[len('unix://'):] if server.url.startswith('unix://') else None
        netloc = urllib.parse.urlsplit(server.url).netloc if self._unix_path is None else 'localhost'
        super().__init__(netloc, timeout=timeout)

    def connect(self) -> None:
        if self._unix_path is None:
            super().connect()
            return
        sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        sock.settimeout(self.timeout)
        try:
            sock.connect(self._unix_path)
        except OSError:
            sock.close()
            raise
        self.sock = sock


class _Transport(xmlrpc.client.Transport):
    def __init__(self, server: ServerUrl, timeout: float) -> None:
        super().__init__()
        self._server = server
        self._timeout = timeout

    def make_connection(self, host: t.Any) -> http.client.HTTPConnection:
        return _Connection(self._server, self._timeout)

    def send_headers(self, connection: http.client.HTTPConnection, headers: list[tuple[str, str]]) -> None:
        if self._server.username is not None:
            secret = f'{self._server.username}:{self._server.password or ""}'.encode()
            headers = [*headers, ('Authorization', 'Basic ' + base64.b64encode(secret).decode('ascii'))]
        super().send_headers(connection, headers)


def status(server: ServerUrl, program: str, timeout: float) -> ProgramStatus:
    """State of ``program`` (``name`` or ``group:name``); SupervisorError when supervisord is unreachable or does not know it."""
    validate_name(program)
    proxy = xmlrpc.client.ServerProxy('http://localhost/RPC2', transport=_Transport(server, timeout), allow_none=False)
    try:
        info = proxy.supervisor.getProcessInfo(program)
    except xmlrpc.client.Fault as exc:
        if 'BAD_NAME' in str(exc.faultString):
            raise SupervisorError(f'supervisord has no program named {program}') from None
        raise SupervisorError(f'supervisord refused the state of {program}: {str(exc.faultString)[:200]}') from None
    except xmlrpc.client.ProtocolError as exc:
        raise SupervisorError(f'supervisord at {server.url} answered HTTP {exc.errcode} {exc.errmsg}') from None
    except (OSError, http.client.HTTPException, xmlrpc.client.Error) as exc:
        raise SupervisorError(f'supervisord is not reachable: {server.url} ({getattr(exc, "strerror", None) or exc})') from None
    if not isinstance(info, dict):
        raise SupervisorError(f'supervisord at {server.url} gave no state for {program}')
    name, group = str(info.get('name', '')), str(info.get('group', ''))
    line = f"{name if not group or group == name else group + ':' + name} {info.get('statename', 'UNKNOWN')} {info.get('description', '')}"
    parsed = parse_status_line(line)
    if parsed is None:
        raise SupervisorError(f'supervisord at {server.url} gave an unreadable state for {program}')
    return parsed
