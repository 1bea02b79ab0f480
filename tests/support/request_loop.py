# Copyright (c) Dihya ops maintainers
# GNU General Public License v3.0+ (see LICENSES/GPL-3.0-or-later.txt or https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later

"""A steady, bounded request loop on loopback: one GET every ``interval`` seconds, every response counted.

Used by the zero-downtime tests, benchmarks/rolling_restart.py and scripts/demo.sh (``python -m`` form:
``request_loop.py URL SECONDS_MAX`` runs until stdin closes or the bound, then prints "N requests, M failed").
"""

from __future__ import annotations

import http.client
import sys
import threading
import time
import typing as t
import urllib.parse
from dataclasses import dataclass, field

ALLOWED_HOSTS = ("127.0.0.1", "localhost", "::1")


@dataclass
class Tally:
    sent: int = 0
    failed: int = 0
    statuses: dict[str, int] = field(default_factory=dict)
    # (start time on the monotonic clock, seconds, ok)
    samples: list[tuple[float, float, bool]] = field(default_factory=list)

    @property
    def ok(self) -> int:
        return self.sent - self.failed


class RequestLoop:
    """A thread sending GET ``url`` every ``interval`` s until stopped, ``max_requests`` or ``max_seconds``."""

    def __init__(self, url: str, interval: float = 0.02, max_requests: int = 20000, max_seconds: float = 600.0, timeout: float = 10.0) -> None:
        parts = urllib.parse.urlsplit(url)
        if parts.scheme != "http" or parts.hostname not in ALLOWED_HOSTS:
            raise ValueError("the request loop only talks to http on loopback")
        self.host, self.port = parts.hostname, parts.port or 80
        self.path = (parts.path or "/") + (f"?{parts.query}" if parts.query else "")
        self.interval, self.max_requests, self.max_seconds, self.timeout = interval, max_requests, max_seconds, timeout
        self.tally = Tally()
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)

    def _one(self) -> str:
        conn = http.client.HTTPConnection(self.host, self.port, timeout=self.timeout)
        try:
            conn.request("GET", self.path, headers={"Connection": "close"})
            response = conn.getresponse()
            response.read()
            return str(response.status)
        except (OSError, http.client.HTTPException) as exc:
            return type(exc).__name__
        finally:
            conn.close()

    def _run(self) -> None:
        deadline = time.monotonic() + self.max_seconds
        next_at = time.monotonic()
        while not self._stop.is_set() and self.tally.sent < self.max_requests and time.monotonic() < deadline:
            started = time.monotonic()
            status = self._one()
            elapsed = time.monotonic() - started
            ok = status == "200"
            self.tally.sent += 1
            self.tally.failed += 0 if ok else 1
            self.tally.statuses[status] = self.tally.statuses.get(status, 0) + 1
            self.tally.samples.append((started, elapsed, ok))
            next_at += self.interval
            self._stop.wait(max(next_at - time.monotonic(), 0.0))

    def __enter__(self) -> RequestLoop:
        self._thread.start()
        return self

    def __exit__(self, *exc: t.Any) -> None:
        self.stop()

    def stop(self) -> Tally:
        self._stop.set()
        self._thread.join(self.timeout + 5)
        return self.tally


def percentile(values: list[float], fraction: float) -> float:
    if not values:
        return 0.0
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, max(0, round(fraction * len(ordered) + 0.5) - 1))]


def main(argv: list[str]) -> int:
    """Wait until URL first answers 200 (the fleet may still be deploying), then loop until stdin closes."""
    if len(argv) != 3:
        print("usage: request_loop.py URL MAX_SECONDS  (stops when stdin closes)", file=sys.stderr)
        return 2
    closed = threading.Event()

    def watch_stdin() -> None:
        sys.stdin.read()
        closed.set()

    threading.Thread(target=watch_stdin, daemon=True).start()
    loop = RequestLoop(argv[1], max_seconds=float(argv[2]))
    deadline = time.monotonic() + float(argv[2])
    while not closed.is_set() and time.monotonic() < deadline and loop._one() != "200":  # pylint: disable=protected-access
        closed.wait(0.5)
    if closed.is_set() or time.monotonic() >= deadline:
        print(f"0 requests: {argv[1]} never answered")
        return 0
    with loop:
        closed.wait(max(deadline - time.monotonic(), 0.0))
    tally = loop.tally
    print(f"{tally.sent} requests, {tally.failed} failed" + (f" ({tally.statuses})" if tally.failed else ""))
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv))
