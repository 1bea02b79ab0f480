# Copyright (c) Dihya ops maintainers
# GNU General Public License v3.0+ (see LICENSES/GPL-3.0-or-later.txt or https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later

"""Keeper of a gunicorn master under supervisord, for upgrades without downtime (docs/balancer.md).

    command = /venv/bin/python /path/gunicorn_keeper.py /path/gunicorn.pid /venv/bin/gunicorn --config ...

supervisord supervises this keeper, not the master.  The keeper starts gunicorn, becomes the child subreaper of its
descendants (Linux prctl), so that the new master of a USR2 upgrade is adopted by the keeper when the old master
exits, and lives as long as any gunicorn master does.  Signals it gets (TERM, INT, QUIT, HUP, USR1, USR2, WINCH, TTIN,
TTOU) go to the master named by the pidfile.  It exits with the status of the last master.
"""

from __future__ import annotations

import contextlib
import ctypes
import os
import signal
import subprocess
import sys
import time

PR_SET_CHILD_SUBREAPER = 36
FORWARDED = (signal.SIGTERM, signal.SIGINT, signal.SIGQUIT, signal.SIGHUP, signal.SIGUSR1, signal.SIGUSR2,
             signal.SIGWINCH, signal.SIGTTIN, signal.SIGTTOU)


def main(argv: list[str]) -> int:
    if len(argv) < 3:
        print("usage: gunicorn_keeper.py PIDFILE GUNICORN [ARGS...]", file=sys.stderr)
        return 2
    pidfile, command = argv[1], argv[2:]
    libc = ctypes.CDLL(None, use_errno=True)
    if libc.prctl(PR_SET_CHILD_SUBREAPER, 1, 0, 0, 0) != 0:
        print("gunicorn_keeper: cannot become a child subreaper", file=sys.stderr)
        return 1
    child = subprocess.Popen(command)  # pylint: disable=consider-using-with
    first = child.pid

    def forward(signum: int, frame: object) -> None:
        del frame
        target = first
        try:
            with open(pidfile, encoding="ascii") as handle:
                target = int(handle.read().strip())
        except (OSError, ValueError):
            pass
        with contextlib.suppress(OSError):
            os.kill(target, signum)

    for sig in FORWARDED:
        signal.signal(sig, forward)
    status = 0
    while True:
        try:
            pid, code = os.waitpid(-1, 0)
        except ChildProcessError:
            return status
        except InterruptedError:
            continue
        if pid == first or pid > 0:
            status = os.waitstatus_to_exitcode(code)
            if status < 0:
                status = 128 - status
        time.sleep(0)


if __name__ == "__main__":
    sys.exit(main(sys.argv))
