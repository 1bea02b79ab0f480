# Copyright (c) Dihya ops maintainers
# GNU General Public License v3.0+ (see LICENSES/GPL-3.0-or-later.txt or https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later

"""Processes the tests start: stopping them by PID, and finding the tools of the test environment.

PID 1 on the test machines does not reap orphans: whatever a test starts, it stops.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import typing as t


def stop_process(process: subprocess.Popen[t.Any], timeout: float = 10) -> None:
    """Terminate one process we started, then kill it if it does not go away."""
    if process.poll() is None:
        process.terminate()
        try:
            process.wait(timeout)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait(timeout)


def venv_tool(name: str) -> str | None:
    """A console script installed next to the running interpreter, else one on PATH."""
    candidate = os.path.join(os.path.dirname(sys.executable), name)
    return candidate if os.access(candidate, os.X_OK) else shutil.which(name)
