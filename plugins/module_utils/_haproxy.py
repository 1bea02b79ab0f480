# Copyright (c) Dihya ops maintainers
# GNU General Public License v3.0+ (see LICENSES/GPL-3.0-or-later.txt or https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later

# This module utility is PRIVATE to the collection. It can change at any time.

"""HAProxy's runtime API over its stats socket (a unix socket, or ``tcp:HOST:PORT``), from Python.

One command per connection (HAProxy's non-interactive mode): connect, send the line, read the answer until HAProxy
closes.  The connection and every read and write have a deadline.  Names are validated before a command is built,
so nothing can add a second command to the line.
"""

from __future__ import annotations

import csv
import io
import socket
import time
import typing as t

from ansible_collections.dihya.ops.plugins.module_utils._balancer import STATES, BalancerError, Member, validate_name

MAX_ANSWER = 8 * 1024 * 1024


def _admin_state(status: str) -> str:
    word = status.upper()
    if word.startswith("MAINT"):
        return "maint"
    if word.startswith("DRAIN") or "(DRAIN)" in word:
        return "drain"
    return "ready"


class HAProxy:
    """A client of one HAProxy runtime API socket."""

    name = "haproxy"

    def __init__(self, address: str, timeout: float = 5.0) -> None:
        if not address:
            raise ValueError("the HAProxy stats socket is not set")
        self.address = address
        self.timeout = float(timeout)

    def _connect(self, deadline: float) -> socket.socket:
        remaining = deadline - time.monotonic()
        if remaining <= 0:
            raise BalancerError(f"HAProxy {self.address}: no time left to connect")
        if self.address.startswith("tcp:"):
            host, sep, port = self.address[4:].rpartition(":")
            if not sep or not port.isdigit():
                raise ValueError(f"HAProxy address {self.address!r} is not tcp:HOST:PORT")
            try:
                return socket.create_connection((host.strip("[]"), int(port)), timeout=remaining)
            except OSError as exc:
                raise BalancerError(f"HAProxy stats socket {self.address} is unreachable: {exc.strerror or exc}") from exc
        sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        sock.settimeout(remaining)
        try:
            sock.connect(self.address)
        except OSError as exc:
            sock.close()
            raise BalancerError(f"HAProxy stats socket {self.address} is unreachable: {exc.strerror or exc}") from exc
        return sock

    def command(self, line: str) -> str:
        """Send one command and return HAProxy's answer, within the deadline."""
        if "\n" in line or "\r" in line or ";" in line:
            raise ValueError("one HAProxy command, without ';' or a line break")
        deadline = time.monotonic() + self.timeout
        sock = self._connect(deadline)
        chunks: list[bytes] = []
        size = 0
        try:
            sock.settimeout(max(deadline - time.monotonic(), 0.001))
            sock.sendall(line.encode("ascii") + b"\n")
            while True:
                remaining = deadline - time.monotonic()
                if remaining <= 0:
                    raise BalancerError(f"HAProxy {self.address} did not answer {line.split()[0]!r} within {self.timeout:g} s")
                sock.settimeout(remaining)
                chunk = sock.recv(65536)
                if not chunk:
                    break
                size += len(chunk)
                if size > MAX_ANSWER:
                    raise BalancerError(f"HAProxy {self.address} answered more than {MAX_ANSWER} bytes")
                chunks.append(chunk)
        except TimeoutError as exc:
            raise BalancerError(f"HAProxy {self.address} did not answer {line.split()[0]!r} within {self.timeout:g} s") from exc
        except OSError as exc:
            raise BalancerError(f"HAProxy {self.address}: {exc.strerror or exc}") from exc
        finally:
            sock.close()
        return b"".join(chunks).decode("utf-8", "replace")

    def show_stat(self) -> list[dict[str, str]]:
        """The rows of ``show stat``, as dicts by column name."""
        answer = self.command("show stat")
        if not answer.startswith("# "):
            raise BalancerError(f"HAProxy {self.address} refused 'show stat': {answer.strip()[:200]}")
        reader = csv.DictReader(io.StringIO(answer[2:]))
        return [dict(row) for row in reader if row.get("pxname")]

    def member(self, backend: str, server: str) -> Member:
        validate_name("backend", backend)
        validate_name("server", server)
        rows = self.show_stat()
        for row in rows:
            if row.get("pxname") == backend and row.get("svname") == server:
                status = row.get("status") or ""
                try:
                    sessions = int(row.get("scur") or 0)
                except ValueError:
                    sessions = 0
                return Member(backend, server, _admin_state(status), status, sessions)
        backends = sorted({row["pxname"] for row in rows if row.get("svname") == "BACKEND"})
        if backend not in backends:
            raise BalancerError(f"HAProxy {self.address} has no backend {backend!r} (backends: {', '.join(backends) or 'none'})")
        raise BalancerError(f"HAProxy {self.address} has no server {server!r} in backend {backend!r}")

    def set_state(self, backend: str, server: str, state: str) -> None:
        validate_name("backend", backend)
        validate_name("server", server)
        if state not in STATES:
            raise ValueError(f"state {state!r} is not one of {', '.join(STATES)}")
        answer = self.command(f"set server {backend}/{server} state {state}").strip()
        # HAProxy answers nothing (or a blank line) when the command succeeded.
        if answer:
            raise BalancerError(f"HAProxy {self.address} refused to set {backend}/{server} to {state}: {answer[:200]}")


BALANCERS: dict[str, t.Callable[[str, float], HAProxy]] = {"haproxy": HAProxy}
