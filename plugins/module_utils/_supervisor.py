# Copyright (c) Dihya ops maintainers
# GNU General Public License v3.0+ (see LICENSES/GPL-3.0-or-later.txt or https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later

# This module utility is PRIVATE to the collection. It can change at any time.

"""Talk to supervisord through ``supervisorctl``, argv only.

Program names are validated before anything runs and every command is an
argument vector, so a hostile name (``web; rm -rf /``) can never reach a
shell.  The runner is injected: the Ansible module passes
``AnsibleModule.run_command``, the health checks pass :func:`subprocess_runner`.
"""

from __future__ import annotations

import re
import subprocess
import typing as t
from dataclasses import dataclass

# Process and supervisor program names (``group:name`` included): no shell or
# option syntax can get through, and no leading ``-``.
NAME_PATTERN = re.compile(r"[A-Za-z0-9_.:@][A-Za-z0-9_.:@-]{0,127}")

STATES = ("STOPPED", "STARTING", "RUNNING", "BACKOFF", "STOPPING", "EXITED", "FATAL", "UNKNOWN")
STOPPED_STATES = frozenset(("STOPPED", "EXITED", "FATAL"))

# argv -> (rc, stdout, stderr)
Runner = t.Callable[[list[str]], tuple[int, str, str]]


class SupervisorError(Exception):
    """supervisord could not be reached or refused the request."""


@dataclass(frozen=True)
class ProgramStatus:
    """One line of ``supervisorctl status``."""

    name: str
    state: str
    pid: int | None
    uptime: str | None
    description: str

    @property
    def running(self) -> bool:
        return self.state == "RUNNING"


def validate_name(value: t.Any, what: str = "supervisor program name") -> str:
    """Return ``value`` if it matches :data:`NAME_PATTERN`, else raise ValueError naming ``what``."""
    if not isinstance(value, str) or not NAME_PATTERN.fullmatch(value):
        raise ValueError(f"invalid {what} {value!r}: use 1 to 128 letters, digits and the characters _ . : @ - (not starting with -)")
    return value


def parse_status_line(line: str) -> ProgramStatus | None:
    """Parse ``name  STATE  pid 123, uptime 0:01:02`` (or a stopped variant); None if it is no status line."""
    fields = line.split(None, 2)
    if len(fields) < 2 or fields[1] not in STATES:
        return None
    description = fields[2].strip() if len(fields) > 2 else ""
    match = re.match(r"pid (\d+), uptime (\S+)", description)
    return ProgramStatus(
        name=fields[0],
        state=fields[1],
        pid=int(match.group(1)) if match else None,
        uptime=match.group(2) if match else None,
        description=description,
    )


def _one_line(text: str, limit: int = 300) -> str:
    """supervisorctl's output as one bounded line, for messages."""
    return "; ".join(line.strip() for line in text.splitlines() if line.strip())[:limit]


def subprocess_runner(timeout: float) -> Runner:
    """A runner with a time limit, for callers outside an Ansible module."""

    def run(argv: list[str]) -> tuple[int, str, str]:
        try:
            completed = subprocess.run(argv, shell=False, check=False, stdin=subprocess.DEVNULL, capture_output=True, timeout=timeout)
        except subprocess.TimeoutExpired as exc:
            raise SupervisorError(f"supervisorctl timed out after {timeout:g}s") from exc
        except OSError as exc:
            raise SupervisorError(f"cannot run {argv[0]}: {exc.strerror}") from exc
        return completed.returncode, completed.stdout.decode("utf-8", "replace"), completed.stderr.decode("utf-8", "replace")

    return run


class Supervisorctl:
    """A thin, argv-only client for one supervisord instance."""

    def __init__(self, runner: Runner, supervisorctl: str, config: str | None = None) -> None:
        self._runner = runner
        self._base = [supervisorctl] + (["-c", config] if config else [])

    def _run(self, *args: str) -> tuple[int, str]:
        rc, out, err = self._runner(self._base + list(args))
        text = f"{out}\n{err}".strip()
        lowered = text.lower()
        if "refused connection" in lowered or "no such file" in lowered or "shutdown_state" in lowered:
            raise SupervisorError(f"supervisord is not reachable: {_one_line(text)}")
        return rc, text

    def status(self, program: str) -> ProgramStatus:
        """State of ``program``; SupervisorError if supervisord is unreachable or does not know it."""
        validate_name(program)
        rc, text = self._run("status", program)
        for line in text.splitlines():
            status = parse_status_line(line)
            if status is not None and status.name == program:
                return status
        if "no such process" in text.lower():
            raise SupervisorError(f"supervisord has no program named {program}")
        raise SupervisorError(f"cannot read the state of {program}: {_one_line(text) or 'no output'} (exit code {rc})")

    def act(self, action: str, program: str) -> str:
        """Run ``start``, ``stop`` or ``restart`` on ``program``; SupervisorError when it fails."""
        if action not in ("start", "stop", "restart"):
            raise ValueError(f"unknown supervisorctl action {action!r}")
        validate_name(program)
        rc, text = self._run(action, program)
        if rc != 0 or "ERROR" in text:
            raise SupervisorError(f"supervisorctl {action} {program} failed: {_one_line(text) or f'exit code {rc}'}")
        return text
