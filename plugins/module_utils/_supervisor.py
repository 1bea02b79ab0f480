# Copyright (c) Dihya ops maintainers
# GNU General Public License v3.0+ (see LICENSES/GPL-3.0-or-later.txt or https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later
"""Talk to supervisord through ``supervisorctl``, argv only.

Program names are validated before anything runs and every command is an
argument vector, so a hostile name (``web; rm -rf /``) can never reach a
shell.  The runner is injected so the Ansible module can pass
``AnsibleModule.run_command`` and unit tests can pass ``subprocess``.
"""

from __future__ import annotations

import re
import typing as t
from dataclasses import dataclass

PROGRAM_NAME_RE = re.compile(r"^[A-Za-z0-9_.@-]{1,128}(:[A-Za-z0-9_.@-]{1,128})?$")

RUNNING_STATES = frozenset(("RUNNING",))
STARTING_STATES = frozenset(("STARTING", "BACKOFF"))
STOPPED_STATES = frozenset(("STOPPED", "EXITED", "FATAL"))
KNOWN_STATES = RUNNING_STATES | STARTING_STATES | STOPPED_STATES | frozenset(("STOPPING", "UNKNOWN"))

# (rc, stdout, stderr)
Runner = t.Callable[[t.List[str]], t.Tuple[int, str, str]]


class SupervisorError(Exception):
    """supervisord could not be reached or refused the request."""


@dataclass(frozen=True)
class ProgramStatus:
    """One line of ``supervisorctl status``."""

    name: str
    state: str
    pid: int | None
    description: str

    @property
    def running(self) -> bool:
        return self.state in RUNNING_STATES


def validate_program_name(name: str) -> str:
    """Return ``name`` if it is a plain supervisor program name, else raise ValueError."""
    if not isinstance(name, str) or not PROGRAM_NAME_RE.match(name):
        raise ValueError(
            f"invalid supervisor program name {name!r}: use letters, digits, '_', '.', '@', '-' "
            "(optionally group:name), at most 128 characters"
        )
    return name


def parse_status_line(line: str) -> ProgramStatus | None:
    """Parse ``name  STATE  pid 123, uptime 0:01:02`` (or a stopped variant)."""
    fields = line.split(None, 2)
    if len(fields) < 2 or fields[1] not in KNOWN_STATES:
        return None
    description = fields[2].strip() if len(fields) > 2 else ""
    pid = None
    match = re.match(r"pid (\d+),", description)
    if match:
        pid = int(match.group(1))
    return ProgramStatus(name=fields[0], state=fields[1], pid=pid, description=description)


class Supervisorctl:
    """A thin, argv-only client for one supervisord instance."""

    def __init__(self, runner: Runner, supervisorctl: str, config: str | None = None) -> None:
        self._runner = runner
        self._base = [supervisorctl] + (["-c", config] if config else [])

    def _run(self, *args: str) -> tuple[int, str, str]:
        rc, out, err = self._runner(self._base + list(args))
        text = f"{out}\n{err}"
        if "refused connection" in text or "no such file" in text.lower() or "SHUTDOWN_STATE" in text:
            raise SupervisorError(f"supervisord is not reachable: {(out or err).strip()}")
        return rc, out, err

    def status(self, program: str) -> ProgramStatus:
        validate_program_name(program)
        dummy_rc, out, err = self._run("status", program)
        for line in out.splitlines():
            status = parse_status_line(line)
            if status is not None and status.name == program:
                return status
        message = (out or err).strip()
        if "no such process" in message.lower():
            raise SupervisorError(f"supervisord has no program named {program!r}")
        raise SupervisorError(f"cannot read the state of {program!r}: {message or 'no output'}")

    def _act(self, action: str, program: str) -> str:
        validate_program_name(program)
        rc, out, err = self._run(action, program)
        message = (out + err).strip()
        if rc != 0 or "ERROR" in message:
            raise SupervisorError(f"supervisorctl {action} {program} failed: {message or f'exit code {rc}'}")
        return message

    def start(self, program: str) -> str:
        return self._act("start", program)

    def stop(self, program: str) -> str:
        return self._act("stop", program)

    def restart(self, program: str) -> str:
        return self._act("restart", program)
