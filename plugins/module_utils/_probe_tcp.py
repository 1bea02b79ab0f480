# Copyright (c) Dihya ops maintainers
# GNU General Public License v3.0+ (see LICENSES/GPL-3.0-or-later.txt or https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later

# This module utility is PRIVATE to the collection. It can change at any time.

"""TCP within a budget: name resolution and connect bounded by the attempt's time left, and the ``tcp`` check built on them."""

from __future__ import annotations

import dataclasses
import socket
import typing as t

from ansible_collections.dihya.ops.plugins.module_utils._probe_common import Budget, Options, Outcome, bounded_call, port_option, require

TCP_OPTIONS = frozenset(('host', 'port'))


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


@dataclasses.dataclass(frozen=True)
class TcpConfig:
    host: str
    port: int

    def context(self) -> dict[str, t.Any]:
        """Details reported even when the connection fails."""
        return {'host': self.host, 'port': self.port}


def parse_tcp(options: Options) -> TcpConfig:
    """Validate the options of a ``tcp`` check."""
    return TcpConfig(host=str(require(options, 'host', 'tcp')), port=port_option(require(options, 'port', 'tcp')))


def probe_tcp(config: TcpConfig, timeout: float) -> Outcome:
    """Open a TCP connection and close it again, name resolution included within ``timeout``."""
    with connect(config.host, config.port, Budget(timeout)) as sock:
        peer = sock.getpeername()
    return Outcome(True, f'connected to {config.host}:{config.port}', {'host': config.host, 'port': config.port, 'address': peer[0]})
