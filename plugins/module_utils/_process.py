# Copyright (c) Dihya ops maintainers
# GNU General Public License v3.0+ (see LICENSES/GPL-3.0-or-later.txt or https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later

# This module utility is PRIVATE to the collection. It can change at any time.

"""Facts about processes on this host, read from ``kill(pid, 0)`` and ``/proc``."""

from __future__ import annotations

import os


def pid_alive(pid: int) -> bool:
    """Whether a process with this PID exists and is not a zombie (or dead but not yet reaped).

    A process of another user exists too (``kill`` says ``EPERM``). Where ``/proc`` cannot be read, a
    process that ``kill`` finds counts as alive. Anything but a positive ``int`` (a bool, a string, a PID
    beyond what the kernel can hold) is no live process.
    """
    if not isinstance(pid, int) or isinstance(pid, bool) or pid <= 0:
        return False
    if not _signal_reaches(pid):
        return False
    try:
        with open(f'/proc/{pid}/stat', 'rb') as handle:
            stat = handle.read(4096).decode('ascii', 'replace')
    except FileNotFoundError:
        # Reaped since kill() found it, or hidden from this user (/proc mounted with hidepid): ask kill() again.
        return _signal_reaches(pid)
    except OSError:
        return True
    # The command name (second field) is in parentheses and may itself hold ") ": the state follows the last one.
    fields = stat.rsplit(')', 1)[-1].split()
    return not fields or fields[0] not in _DEAD_STATES


# Zombie, and dead (``x`` on the kernels of 3.9 to 3.13).
_DEAD_STATES = ('Z', 'X', 'x')


def _signal_reaches(pid: int) -> bool:
    """Whether ``kill(pid, 0)`` finds a process (of any user)."""
    try:
        os.kill(pid, 0)
    except (ProcessLookupError, OverflowError):
        return False
    except PermissionError:
        pass  # It exists, it just belongs to someone else.
    return True
