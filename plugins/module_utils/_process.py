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
    process that ``kill`` finds counts as alive.
    """
    if not isinstance(pid, int) or isinstance(pid, bool) or pid <= 0:
        return False
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        pass  # It exists, it just belongs to someone else.
    try:
        with open(f'/proc/{pid}/stat', 'rb') as handle:
            stat = handle.read(4096).decode('ascii', 'replace')
    except OSError:
        return True
    # The command name (second field) is in parentheses and may itself hold ") ": the state follows the last one.
    fields = stat.rsplit(')', 1)[-1].split()
    return not fields or fields[0] not in ('Z', 'X')
