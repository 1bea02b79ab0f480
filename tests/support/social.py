# Copyright (c) Dihya ops maintainers
# GNU General Public License v3.0+ (see LICENSES/GPL-3.0-or-later.txt or https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later

"""The second sample backend of the functional tests: chirp (tests/social_backend), one instance.

It is deployed by tests/social_backend/deploy.yml with its own inventory (tests/social_backend/inventory)
into a sandbox of the test run, on a loopback port of its own; the ``chirp`` fixture of
tests/functional/test_social_backend.py deploys it once and tears it down by PID.  ``state()`` is what
check mode must leave alone: the gunicorn master's PID, every file of the sandbox (logs by identity only:
the checks' own requests append to them) and every row of the database.
"""

from __future__ import annotations

import json
import os
import pathlib
import re
import sqlite3
import subprocess
import typing as t
import urllib.error
import urllib.request
from dataclasses import dataclass

from .fleet import BIN, ROOT, run

HOST = "chirp-1"
INVENTORY = ROOT / "tests" / "social_backend" / "inventory"


def recap(output: str) -> dict[str, dict[str, int]]:
    """The PLAY RECAP counters per host (of the last recap when there are several)."""
    stats: dict[str, dict[str, int]] = {}
    for host, counters in re.findall(r"^(\S+)\s+:\s+(ok=.*)$", output, re.MULTILINE):
        stats[host] = {key: int(value) for key, value in re.findall(r"(\w+)=(\d+)", counters)}
    return stats


@dataclass
class Social:
    """The chirp instance of this test run."""

    sandbox: pathlib.Path
    base_port: int

    @property
    def env(self) -> dict[str, str]:
        env = dict(os.environ)
        env.update(DIHYA_SOCIAL_SANDBOX=str(self.sandbox), DIHYA_SOCIAL_BASE_PORT=str(self.base_port),
                   ANSIBLE_NOCOLOR="1", ANSIBLE_FORCE_COLOR="0", PY_COLORS="0")
        return env

    @property
    def root(self) -> pathlib.Path:
        return self.sandbox / HOST

    @property
    def shared(self) -> pathlib.Path:
        return self.root / "shared"

    @property
    def log_dir(self) -> pathlib.Path:
        return self.shared / "log"

    @property
    def db_path(self) -> pathlib.Path:
        return self.shared / "db" / "chirp.sqlite3"

    @property
    def venv(self) -> pathlib.Path:
        return self.sandbox / "venvs" / HOST

    @property
    def audit_log(self) -> pathlib.Path:
        return self.shared / "audit" / "audit.log"

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.base_port + 1}"

    def gunicorn_pid(self) -> int | None:
        try:
            pid = int((self.shared / "pids" / "gunicorn.pid").read_text().strip())
        except (OSError, ValueError):
            return None
        return pid if pathlib.Path(f"/proc/{pid}").exists() else None

    def processes(self) -> list[int]:
        """PIDs of every process started with a configuration file of this sandbox (supervisord, gunicorn)."""
        proc = subprocess.run(["pgrep", "--full", "--", re.escape(str(self.shared / "config"))],
                              capture_output=True, text=True, check=False, timeout=10)
        return [int(pid) for pid in proc.stdout.split()]

    def request(self, path: str, data: dict[str, t.Any] | None = None, token: str | None = None) -> tuple[int, str, str]:
        """(status, content type, body) of one request to the instance; status 0 when it does not answer."""
        headers = {"Content-Type": "application/json"} if data is not None else {}
        if token:
            headers["Authorization"] = f"Bearer {token}"
        body = json.dumps(data).encode() if data is not None else None
        req = urllib.request.Request(self.url + path, data=body, headers=headers, method="POST" if data is not None else "GET")
        try:
            with urllib.request.build_opener(urllib.request.ProxyHandler({})).open(req, timeout=10) as response:
                return int(response.status), response.headers.get("Content-Type", ""), response.read().decode()
        except urllib.error.HTTPError as exc:
            return exc.code, exc.headers.get("Content-Type", ""), exc.read().decode()
        except OSError:
            return 0, "", ""

    def playbook(self, *args: str, timeout: int = 600) -> subprocess.CompletedProcess[str]:
        return run([str(BIN / "ansible-playbook"), "-i", str(INVENTORY), *args], env=self.env, timeout=timeout)

    def query(self, sql: str, *params: t.Any) -> list[tuple[t.Any, ...]]:
        """Rows of one read-only query of the live database."""
        with sqlite3.connect(f"file:{self.db_path}?mode=ro", uri=True, timeout=10) as connection:
            return connection.execute(sql, params).fetchall()

    def rows(self) -> dict[str, list[tuple[t.Any, ...]]]:
        """Every row of every table, in a stable order."""
        tables = [name for (name,) in self.query("SELECT name FROM sqlite_master WHERE type = 'table' ORDER BY name")]
        return {table: sorted(self.query(f'SELECT * FROM "{table}"'), key=repr) for table in tables}

    def files(self) -> dict[str, tuple[t.Any, ...]]:
        """Every path of the sandbox: logs by inode (the checks' own requests append to them), others by size and mtime.

        chirp.log and its backups are left out: the application rotates them itself, whenever a request (a health
        check's too) takes chirp.log over its size.
        """
        found: dict[str, tuple[t.Any, ...]] = {}
        for folder, dirs, names in os.walk(self.sandbox):
            dirs[:] = [name for name in dirs if name != "__pycache__"]
            for name in dirs + names:
                path = os.path.join(folder, name)
                if folder == str(self.log_dir) and name.startswith("chirp.log"):
                    continue
                info = os.lstat(path)
                in_logs = path.startswith(str(self.log_dir) + os.sep)
                found[path] = (info.st_ino, info.st_mode) if in_logs else (
                    info.st_ino, info.st_mode, info.st_size, info.st_mtime_ns)
        return found

    def state(self) -> dict[str, t.Any]:
        return {"pid": self.gunicorn_pid(), "files": self.files(), "rows": self.rows()}


def social_for_worker(worker: str | None = None) -> Social:
    """The chirp instance of this pytest-xdist worker: its own sandbox, and ports next to the worker's demo fleet."""
    worker = worker or os.environ.get("PYTEST_XDIST_WORKER", "gw0")
    index = int(worker[2:]) if worker[2:].isdigit() else 0
    sandbox = pathlib.Path(os.environ.get("DIHYA_TEST_SANDBOX", "/tmp/dihya-ops-test")) / f"social-{index}"
    base = int(os.environ.get("DIHYA_FUNCTIONAL_BASE_PORT", "19180")) + 50 + 10 * index
    return Social(sandbox=sandbox, base_port=base)
