"""Fixtures for the functional tests: a real demo fleet and ansible runners.

The fleet is three instances of the demo backend (Flask under gunicorn under
supervisord) deployed by tests/demo_backend/deploy.yml into a sandbox of the
test run, on loopback ports, and torn down (processes stopped by PID, roots
removed) at the end of the session.
"""

from __future__ import annotations

import json
import os
import pathlib
import subprocess
import sys
import urllib.request
from dataclasses import dataclass

import pytest

ROOT = pathlib.Path(__file__).resolve().parents[2]
BIN = pathlib.Path(sys.executable).parent
HOSTS = ("dihya-demo-1", "dihya-demo-2", "dihya-demo-3")


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

    def gunicorn_pid(self, host: str) -> int | None:
        try:
            pid = int((self.root(host) / "run" / "gunicorn.pid").read_text().strip())
        except (OSError, ValueError):
            return None
        return pid if pathlib.Path(f"/proc/{pid}").exists() else None

    def pids(self) -> dict[str, int | None]:
        return {host: self.gunicorn_pid(host) for host in HOSTS}

    def healthz(self, host: str) -> tuple[int, dict]:
        try:
            with urllib.request.build_opener(urllib.request.ProxyHandler({})).open(
                f"http://127.0.0.1:{self.port(host)}/healthz", timeout=5
            ) as response:
                return response.status, json.loads(response.read())
        except urllib.error.HTTPError as exc:
            return exc.code, {}
        except OSError:
            return 0, {}

    def playbook(self, *args: str, env: dict[str, str] | None = None, timeout: int = 600) -> subprocess.CompletedProcess:
        return run([str(BIN / "ansible-playbook"), *args], env=env or self.env, timeout=timeout)

    def adhoc(self, module: str, module_args: dict) -> dict:
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
        data = json.loads(body)
        data.setdefault("failed", status.startswith("FAILED"))
        return data


def run(argv: list[str], env: dict[str, str], timeout: int) -> subprocess.CompletedProcess:
    return subprocess.run(argv, cwd=ROOT, env=env, capture_output=True, text=True, timeout=timeout, check=False)


@pytest.fixture(scope="session")
def fleet() -> Fleet:
    # Under pytest-xdist each worker deploys a fleet of its own: its own sandbox, ports 10 apart.
    worker = os.environ.get("PYTEST_XDIST_WORKER", "gw0")
    index = int(worker[2:]) if worker[2:].isdigit() else 0
    sandbox = pathlib.Path(os.environ.get("DIHYA_TEST_SANDBOX", "/tmp/dihya-ops-test")) / ("functional" if index == 0 else f"functional-{worker}")
    fleet = Fleet(sandbox=sandbox, base_port=int(os.environ.get("DIHYA_FUNCTIONAL_BASE_PORT", "19180")) + 10 * index)
    deployed = fleet.playbook("tests/demo_backend/deploy.yml")
    try:
        assert deployed.returncode == 0, deployed.stdout + deployed.stderr
        yield fleet
    finally:
        fleet.playbook("tests/demo_backend/teardown.yml", "-e", "demo_backend_purge=true")
