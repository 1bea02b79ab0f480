# Copyright (c) Dihya ops maintainers
# GNU General Public License v3.0+ (see LICENSES/GPL-3.0-or-later.txt or https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later

"""The demo fleet of the functional tests, and the runner of ansible commands that fails on deprecation warnings.

The fleet is three instances of the demo backend (Flask under gunicorn under supervisord) deployed by
tests/demo_backend/deploy.yml into a sandbox of the test run, on loopback ports; the ``fleet`` fixture of
tests/functional/conftest.py deploys it and tears it down.
"""

from __future__ import annotations

import json
import os
import pathlib
import re
import sqlite3
import subprocess
import sys
import typing as t
import urllib.error
import urllib.request
from dataclasses import dataclass

ROOT = pathlib.Path(__file__).resolve().parents[2]
BIN = pathlib.Path(sys.executable).parent
HOSTS = ("dihya-demo-1", "dihya-demo-2", "dihya-demo-3")
DEPRECATION = "[DEPRECATION WARNING]"
# Every operation asks the authorisation policy first (docs/policy.md): ansible-playbook run by the tests, whatever
# its inventory, reads the demo policy of inventories/local, which binds root and the callers the tests name.
# The tests of the policy itself give their own.
os.environ["DIHYA_OPS_POLICY"] = str(ROOT / "inventories" / "local" / "policy.yml")


def assert_no_deprecation(output: str) -> None:
    """Fail when ansible printed a deprecation warning: the suite allows no new ones."""
    if DEPRECATION in output:
        warnings = [line for line in output.splitlines() if DEPRECATION in line]
        raise AssertionError("ansible printed deprecation warnings:\n" + "\n".join(warnings) + "\n\n" + output[-4000:])


ERROR_LOG_TAIL = re.compile(r"Error log, last \d+ line\(s\) of .*?(?=^\S|\Z)", re.S | re.M)


def assert_no_traceback(output: str) -> None:
    """Fail when ansible or a module printed a Python traceback.

    A failed restart quotes the end of the service's own error log (``dihya.ops.log_tail``); a traceback of the
    *service* inside that quote is the evidence the operator needs, not a crash of the collection, so the quote is
    left out before looking.
    """
    rest = ERROR_LOG_TAIL.sub("", output)
    if "Traceback" in rest:
        raise AssertionError("a Python traceback outside the quoted error log:\n" + rest[-4000:])


def run(argv: list[str], env: dict[str, str], timeout: int, cwd: pathlib.Path | str = ROOT) -> subprocess.CompletedProcess[str]:
    """Run an ansible command in the checkout (by default) and fail if it printed a deprecation warning.

    Deprecation warnings are always on (``ANSIBLE_DEPRECATION_WARNINGS``), whatever ``env`` says.
    """
    proc = subprocess.run(argv, cwd=cwd, env=dict(env, ANSIBLE_DEPRECATION_WARNINGS="True"),
                          capture_output=True, text=True, timeout=timeout, check=False)
    assert_no_deprecation(proc.stdout + proc.stderr)
    return proc


@dataclass
class Fleet:
    """The demo fleet of this test session."""

    sandbox: pathlib.Path
    base_port: int

    @property
    def env(self) -> dict[str, str]:
        env = dict(os.environ)
        env.update(DIHYA_DEMO_SANDBOX=str(self.sandbox), DIHYA_DEMO_BASE_PORT=str(self.base_port),
                   ANSIBLE_NOCOLOR="1", ANSIBLE_FORCE_COLOR="0", PY_COLORS="0")
        return env

    def root(self, host: str) -> pathlib.Path:
        return self.sandbox / host

    def port(self, host: str) -> int:
        return self.base_port + HOSTS.index(host) + 1

    def database(self, host: str) -> pathlib.Path:
        """The SQLite database of the host's demo app."""
        return self.root(host) / "data" / "dihya.db"

    def query(self, host: str, sql: str, *params: t.Any) -> list[t.Any]:
        """The rows of ``sql`` on the host's database, opened read-only."""
        conn = sqlite3.connect(f"file:{self.database(host)}?mode=ro", uri=True)
        try:
            return conn.execute(sql, params).fetchall()
        finally:
            conn.close()

    def gunicorn_pid(self, host: str) -> int | None:
        try:
            pid = int((self.root(host) / "run" / "gunicorn.pid").read_text().strip())
        except (OSError, ValueError):
            return None
        return pid if pathlib.Path(f"/proc/{pid}").exists() else None

    def pids(self) -> dict[str, int | None]:
        return {host: self.gunicorn_pid(host) for host in HOSTS}

    def healthz(self, host: str) -> tuple[int, dict[str, t.Any]]:
        try:
            with urllib.request.build_opener(urllib.request.ProxyHandler({})).open(
                f"http://127.0.0.1:{self.port(host)}/healthz", timeout=5
            ) as response:
                return int(response.status), dict(json.loads(response.read()))
        except urllib.error.HTTPError as exc:
            return exc.code, {}
        except OSError:
            return 0, {}

    def playbook(self, *args: str, env: dict[str, str] | None = None, timeout: int = 600) -> subprocess.CompletedProcess[str]:
        return run([str(BIN / "ansible-playbook"), *args], env=env or self.env, timeout=timeout)

    def adhoc(self, module: str, module_args: dict[str, t.Any]) -> dict[str, t.Any]:
        """Run one module on localhost with ``ansible`` and return its JSON result."""
        env = dict(self.env, ANSIBLE_STDOUT_CALLBACK="ansible.builtin.minimal", ANSIBLE_CALLBACK_RESULT_FORMAT="json",
                   ANSIBLE_LOAD_CALLBACK_PLUGINS="1")
        proc = run([str(BIN / "ansible"), "localhost", "-i", "localhost,", "-c", "local",
                    "-e", f"ansible_python_interpreter={sys.executable}",
                    "-m", module, "-a", json.dumps(module_args)], env=env, timeout=120)
        output = proc.stdout + proc.stderr
        assert "Traceback" not in output, output
        dummy, found, result = proc.stdout.rpartition("\nlocalhost | ")
        status, sep, body = result.partition(" => ")
        assert (found or proc.stdout.startswith("localhost | ")) and sep, output
        data: dict[str, t.Any] = json.loads(body)
        data.setdefault("failed", status.startswith("FAILED"))
        return data


def fleet_for_worker(worker: str | None = None) -> Fleet:
    """The fleet of this pytest-xdist worker (``gw0`` when not under xdist): its own sandbox, ports 10 apart."""
    worker = worker or os.environ.get("PYTEST_XDIST_WORKER", "gw0")
    index = int(worker[2:]) if worker[2:].isdigit() else 0
    sandbox = pathlib.Path(os.environ.get("DIHYA_TEST_SANDBOX", "/tmp/dihya-ops-test")) / ("functional" if index == 0 else f"functional-{worker}")
    return Fleet(sandbox=sandbox, base_port=int(os.environ.get("DIHYA_FUNCTIONAL_BASE_PORT", "19180")) + 10 * index)
