# Copyright (c) Dihya ops maintainers
# GNU General Public License v3.0+ (see LICENSES/GPL-3.0-or-later.txt or https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later

# This module utility is PRIVATE to the collection. It can change at any time.

"""What every health probe family shares: the error types, the attempt's time budget, the outcome and the option readers.

A probe family (``_probe_http``, ``_probe_sql``, ...) has a parser, which turns the loose options of one
check into a typed configuration and raises :class:`CheckConfigError` for bad input, and a probe, which
performs one attempt within a :class:`Budget` and returns an :class:`Outcome`.
"""

from __future__ import annotations

import contextlib
import dataclasses
import http.client
import json
import math
import socket
import ssl
import threading
import time
import typing as t

Options = t.Mapping[str, t.Any]


class CheckConfigError(ValueError):
    """Bad input for one check: reported as a result with status ``error``, never retried."""


class DeadlineExceeded(TimeoutError):
    """An attempt ran out of time; ``phase`` says what it was doing (``while reading the response headers``)."""

    def __init__(self, phase: str) -> None:
        super().__init__(f'deadline exceeded {phase}')
        self.phase = phase


@dataclasses.dataclass(frozen=True)
class Outcome:
    """The result of one probe attempt."""

    healthy: bool
    message: str
    details: t.Mapping[str, t.Any] = dataclasses.field(default_factory=dict)


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


_T = t.TypeVar('_T')


def bounded_call(function: t.Callable[[], _T], budget: Budget, phase: str, discard: t.Callable[[_T], None] | None = None) -> _T:
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
            with contextlib.suppress(Exception):
                discard(value)

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
    return t.cast(_T, state['value'])


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


def as_text(value: t.Any) -> str:
    """Render a JSON or SQL value the way it is compared with an expected value."""
    if isinstance(value, str):
        return value
    if isinstance(value, bytes):
        return value.decode('utf-8', errors='replace')
    if value is None or isinstance(value, (bool, dict, list)):
        return json.dumps(value, sort_keys=True)
    return str(value)


def positive(value: t.Any) -> bool:
    """Whether ``value`` is a finite number greater than 0 (a boolean is not a number here)."""
    return isinstance(value, (int, float)) and not isinstance(value, bool) and math.isfinite(value) and value > 0


def option(options: Options, key: str, default: t.Any = None) -> t.Any:
    """The value of ``key``, or ``default`` when it is missing or None."""
    value = options.get(key)
    return default if value is None else value


def require(options: Options, key: str, kind: str) -> t.Any:
    """The value of ``key``; raise :class:`CheckConfigError` when it is missing or empty."""
    value = options.get(key)
    if value is None or value == '':
        raise CheckConfigError(f'{key} is required for a {kind} check')
    return value


def port_option(value: t.Any, key: str = 'port') -> int:
    """``value`` as a TCP port; raise :class:`CheckConfigError` unless it is an integer between 1 and 65535."""
    if isinstance(value, bool) or not isinstance(value, int) or not 1 <= value <= 65535:
        raise CheckConfigError(f'{key} must be an integer between 1 and 65535 (got {value!r})')
    return value


def bool_option(options: Options, key: str, default: bool) -> bool:
    """The boolean value of ``key`` (``default`` when missing); raise :class:`CheckConfigError` for anything else."""
    value = option(options, key, default)
    if not isinstance(value, bool):
        raise CheckConfigError(f'{key} must be a boolean (got {value!r})')
    return value
