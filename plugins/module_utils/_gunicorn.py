# Copyright (c) Dihya ops maintainers
# GNU General Public License v3.0+ (see LICENSES/GPL-3.0-or-later.txt or https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later

# This module utility is PRIVATE to the collection. It can change at any time.

"""Graceful reloads and binary upgrades of a gunicorn master, through its pidfile (Linux, /proc).

``reload``: HUP to the master, which starts new workers and stops the old ones gracefully.

``upgrade`` in three steps, so that the caller's health gate runs between them:

1. :func:`upgrade_start` sends USR2 to the old master, which forks and execs a new master on the same listening
   sockets.  The new master writes ``PIDFILE.2`` (gunicorn 20 and later); older releases renamed the old master's
   pidfile to ``PIDFILE.oldbin`` and the new one wrote ``PIDFILE``: both are understood.  The new master must have
   workers alive for ``settle`` seconds (a release whose application fails to import makes them exit, and the new
   master with them).
2. :func:`upgrade_commit` sends TERM (gunicorn's graceful stop: in-flight requests are finished; QUIT would drop them)
   to the old master, waits for it to exit and for the new master to take the pidfile over.
3. :func:`upgrade_rollback`, when the new master failed: TERM to the new master, and the old master's pidfile back in
   place.  The old master never stopped its workers, so it serves throughout.

A master whose parent is supervisord is refused for ``upgrade``: once the old master exits, supervisord would see its
program end and start it again.  The program must run gunicorn under a keeper (docs/balancer.md) that outlives the
old master and adopts the new one.
"""

from __future__ import annotations

import os
import signal
import time
import typing as t
from dataclasses import dataclass, field


class GunicornError(Exception):
    """A step could not be done; the message says which master and why."""


@dataclass
class Outcome:
    ok: bool
    message: str
    old_pid: int | None = None
    new_pid: int | None = None
    workers: list[int] = field(default_factory=list)

    def as_dict(self) -> dict[str, t.Any]:
        return {"ok": self.ok, "message": self.message, "old_pid": self.old_pid, "new_pid": self.new_pid, "workers": self.workers}


def _stat(pid: int) -> tuple[str, int] | None:
    """(state, ppid) of a process, or None when it does not exist."""
    try:
        with open(f"/proc/{pid}/stat", encoding="ascii", errors="replace") as handle:
            data = handle.read()
    except OSError:
        return None
    rest = data[data.rfind(")") + 2:].split()
    if len(rest) < 2:
        return None
    return rest[0], int(rest[1])


def alive(pid: int | None) -> bool:
    if not pid or pid <= 1:
        return False
    stat = _stat(pid)
    return stat is not None and stat[0] not in ("Z", "X")


def children(pid: int) -> list[int]:
    found = []
    for entry in os.listdir("/proc"):
        if entry.isdigit():
            stat = _stat(int(entry))
            if stat is not None and stat[1] == pid and stat[0] not in ("Z", "X"):
                found.append(int(entry))
    return sorted(found)


def cmdline(pid: int) -> str:
    try:
        with open(f"/proc/{pid}/cmdline", "rb") as handle:
            return handle.read().replace(b"\0", b" ").decode("utf-8", "replace").strip()
    except OSError:
        return ""


def read_pid(path: str) -> int | None:
    try:
        with open(path, encoding="ascii") as handle:
            text = handle.read().strip()
    except (OSError, UnicodeDecodeError):
        return None
    return int(text) if text.isdigit() else None


def master(pidfile: str) -> int:
    pid = read_pid(pidfile)
    if pid is None:
        raise GunicornError(f"the pidfile {pidfile} holds no process id (is gunicorn running?)")
    if not alive(pid):
        raise GunicornError(f"the gunicorn master {pid} of {pidfile} is not running")
    return pid


def supervised_by_supervisord(pid: int) -> int | None:
    """The pid of supervisord when it is the master's direct parent."""
    stat = _stat(pid)
    if stat is None:
        return None
    parent = stat[1]
    return parent if "supervisord" in cmdline(parent) else None


def _signal(pid: int, sig: signal.Signals) -> None:
    try:
        os.kill(pid, sig)
    except OSError as exc:
        raise GunicornError(f"could not send {sig.name} to gunicorn master {pid}: {exc.strerror}") from exc


def _wait(predicate: t.Callable[[], bool], deadline: float, poll: float = 0.1) -> bool:
    while True:
        if predicate():
            return True
        if time.monotonic() >= deadline:
            return False
        time.sleep(poll)


def reload(pidfile: str, timeout: float) -> Outcome:
    """HUP to the master; wait until its workers are all new ones."""
    pid = master(pidfile)
    old_workers = set(children(pid))
    deadline = time.monotonic() + timeout
    _signal(pid, signal.SIGHUP)

    def renewed() -> bool:
        now = set(children(pid))
        return bool(now) and not now & old_workers

    if not _wait(renewed, deadline):
        if not alive(pid):
            return Outcome(False, f"gunicorn master {pid} exited after HUP (the new workers failed to boot?)", pid, None)
        return Outcome(False, f"gunicorn master {pid} did not replace its workers within {timeout:g} s", pid, pid, children(pid))
    return Outcome(True, f"gunicorn master {pid} reloaded its workers", pid, pid, children(pid))


def _new_master(pidfile: str, old: int) -> int | None:
    for candidate in (read_pid(pidfile + ".2"), read_pid(pidfile) if read_pid(pidfile + ".oldbin") == old else None):
        if candidate and candidate != old and alive(candidate):
            return candidate
    return None


def upgrade_start(pidfile: str, timeout: float, settle: float) -> Outcome:
    """USR2 to the old master; wait for a new master whose workers stay up ``settle`` seconds. Rolls back on failure."""
    old = master(pidfile)
    owner = supervised_by_supervisord(old)
    if owner is not None:
        raise GunicornError(
            f"gunicorn master {old} is supervisord's own process (parent {owner}): after the upgrade supervisord would start it again. "
            "Run gunicorn under a keeper (docs/balancer.md) or use the method restart or reload")
    deadline = time.monotonic() + timeout
    _signal(old, signal.SIGUSR2)
    found: list[int] = []

    def started() -> bool:
        pid = _new_master(pidfile, old)
        if pid is None:
            return False
        found[:] = [pid]
        return bool(children(pid))

    if not _wait(started, deadline):
        new = found[0] if found else None
        rolled = upgrade_rollback(pidfile, old, new, max(deadline - time.monotonic(), 5.0))
        return Outcome(False, f"the new gunicorn master did not start workers within {timeout:g} s; {rolled.message}", old, new)
    new = found[0]
    settled_at = time.monotonic() + settle
    while time.monotonic() < settled_at:
        if not alive(new) or not children(new):
            rolled = upgrade_rollback(pidfile, old, new, max(deadline - time.monotonic(), 5.0))
            return Outcome(False, f"the new gunicorn master {new} lost its workers or exited within {settle:g} s (the new release failed to boot); "
                           f"{rolled.message}", old, new)
        time.sleep(0.1)
    return Outcome(True, f"new gunicorn master {new} runs beside old master {old}", old, new, children(new))


def upgrade_commit(pidfile: str, old: int, new: int, timeout: float) -> Outcome:
    """TERM to the old master once the new one passed the gate; wait for the new master to own the pidfile."""
    if not alive(new):
        rolled = upgrade_rollback(pidfile, old, new, timeout)
        return Outcome(False, f"the new gunicorn master {new} is gone; {rolled.message}", old, new)
    deadline = time.monotonic() + timeout
    if alive(old):
        _signal(old, signal.SIGTERM)
    if not _wait(lambda: not alive(old), deadline):
        return Outcome(False, f"the old gunicorn master {old} did not exit within {timeout:g} s", old, new)
    if not _wait(lambda: read_pid(pidfile) == new, deadline):
        return Outcome(False, f"the new gunicorn master {new} did not take over {pidfile} within {timeout:g} s", old, new)
    return Outcome(True, f"gunicorn master {old} replaced by {new}", old, new, children(new))


def upgrade_rollback(pidfile: str, old: int, new: int | None, timeout: float) -> Outcome:
    """Stop the new master and put the old master's pidfile back; the old master serves on."""
    deadline = time.monotonic() + timeout
    if new and alive(new) and new != old:
        _signal(new, signal.SIGTERM)
        if not _wait(lambda: not alive(new), deadline):
            _signal(new, signal.SIGQUIT)
            _wait(lambda: not alive(new), time.monotonic() + 5)
    if not alive(old):
        return Outcome(False, f"rolled back, but the old gunicorn master {old} is not running either", old, new)
    oldbin = pidfile + ".oldbin"
    if read_pid(pidfile) != old:
        tmp = f"{pidfile}.{os.getpid()}.tmp"
        with open(tmp, "w", encoding="ascii") as handle:
            handle.write(f"{old}\n")
        os.replace(tmp, pidfile)
    if read_pid(oldbin) == old:
        os.unlink(oldbin)
    return Outcome(True, f"rolled back to old gunicorn master {old}, which kept serving", old, new, children(old))
