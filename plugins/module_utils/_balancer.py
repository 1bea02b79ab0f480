# Copyright (c) Dihya ops maintainers
# GNU General Public License v3.0+ (see LICENSES/GPL-3.0-or-later.txt or https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later

# This module utility is PRIVATE to the collection. It can change at any time.

"""The load-balancer interface of the rolling restarts (docs/balancer.md).

A balancer tells the state of one member (a server of a backend) and sets it to ``drain`` (no new sessions, the
sessions in progress go on), ``ready`` or ``maint``.  :func:`drain_and_wait` is the same for every balancer: drain,
then wait until the member's active sessions reach zero or the deadline passes.  A new balancer implements
:class:`Balancer` and is added to :data:`BALANCERS`.
"""

from __future__ import annotations

import re
import time
import typing as t
from dataclasses import dataclass

# Backend and server names: no command syntax (';', spaces, newlines) can get through.
NAME_PATTERN = re.compile(r"[A-Za-z0-9_.:@][A-Za-z0-9_.:@-]{0,127}")
STATES = ("ready", "drain", "maint")


class BalancerError(Exception):
    """The balancer could not be reached or refused a command; the message names the balancer and the member."""


@dataclass(frozen=True)
class Member:
    """One member as the balancer sees it."""

    backend: str
    server: str
    # ready, drain or maint (the administrative state the rollout sets).
    admin_state: str
    # The balancer's own word for the health of the member (UP, DOWN, DRAIN, MAINT, no check).
    status: str
    # Active sessions now.
    sessions: int

    def as_dict(self) -> dict[str, t.Any]:
        return {"backend": self.backend, "server": self.server, "admin_state": self.admin_state, "status": self.status, "sessions": self.sessions}


class Balancer(t.Protocol):
    """What the rollout needs of a balancer."""

    name: str

    def member(self, backend: str, server: str) -> Member:
        """The member's state now; raises BalancerError when it is unknown or the balancer does not answer."""

    def set_state(self, backend: str, server: str, state: str) -> None:
        """Set the member's administrative state (one of STATES)."""


def validate_name(kind: str, value: str) -> str:
    if not isinstance(value, str) or not NAME_PATTERN.fullmatch(value):
        raise ValueError(f"{kind} name {value!r} is not valid: letters, digits and '_.:@-' only, at most 128")
    return value


@dataclass(frozen=True)
class DrainResult:
    member: Member
    drained: bool
    waited: float


def drain_and_wait(balancer: Balancer, backend: str, server: str, timeout: float, poll: float = 0.2,
                   clock: t.Callable[[], float] = time.monotonic, sleep: t.Callable[[float], None] = time.sleep) -> DrainResult:
    """Set the member to drain, then wait until it has no active session or ``timeout`` seconds passed."""
    started = clock()
    balancer.set_state(backend, server, "drain")
    while True:
        member = balancer.member(backend, server)
        waited = clock() - started
        if member.sessions == 0:
            return DrainResult(member, True, waited)
        if waited >= timeout:
            return DrainResult(member, False, waited)
        sleep(min(poll, max(timeout - waited, 0.0)))
