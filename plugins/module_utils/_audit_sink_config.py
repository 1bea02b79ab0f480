# Copyright (c) Dihya ops maintainers
# GNU General Public License v3.0+ (see LICENSES/GPL-3.0-or-later.txt or https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later

# This module utility is PRIVATE to the collection. It can change at any time.

"""The network sinks of the audit trail as the user gives them: their options, their validation, their names.

:func:`parse_sink` turns one ``sinks`` entry into a :class:`SinkConfig` or raises :class:`SinkConfigError`
(whose message never holds the token); :func:`plan_sinks` does it for the whole list, keeping a spool name for
an invalid sink so that its records are kept until it is fixed.
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import os
import re
import typing as t
import urllib.parse

from ansible_collections.dihya.ops.plugins.module_utils._audit_spool import is_sink_name

SINK_TYPES = ('syslog', 'elasticsearch', 'splunk_hec', 'webhook')
SYSLOG_PROTOCOLS = ('udp', 'tcp', 'tls')
SYSLOG_DEFAULT_PORTS = {'udp': 514, 'tcp': 514, 'tls': 6514}
FACILITIES = {
    'kern': 0, 'user': 1, 'mail': 2, 'daemon': 3, 'auth': 4, 'syslog': 5, 'lpr': 6, 'news': 7, 'uucp': 8, 'cron': 9,
    'authpriv': 10, 'ftp': 11, 'local0': 16, 'local1': 17, 'local2': 18, 'local3': 19, 'local4': 20, 'local5': 21,
    'local6': 22, 'local7': 23,
}
DEFAULT_APP_NAME = 'dihya-audit'
DEFAULT_FACILITY = 'local0'
DEFAULT_INDEX = 'dihya-audit'
DEFAULT_TIMEOUT = 5.0
SINK_KEYS = frozenset((
    'type', 'name', 'url', 'host', 'port', 'protocol', 'index', 'token', 'ca_path', 'validate_certs', 'timeout', 'app_name', 'facility',
))


class SinkConfigError(Exception):
    """A sink specification is wrong. The message never holds the token."""


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
    if is_sink_name(name):
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
    if name is not None and not is_sink_name(name):
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
