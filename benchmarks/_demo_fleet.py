"""What the benchmarks that deploy the demo fleet share: the checkout as a collection, the environment, timed runs."""

from __future__ import annotations

import os
import resource
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
BIN = Path(sys.executable).parent


def link_collection(work: Path) -> Path:
    """A collections folder under ``work`` in which ``dihya.ops`` is this checkout; its path."""
    collections = work / 'collections'
    (collections / 'ansible_collections' / 'dihya').mkdir(parents=True)
    (collections / 'ansible_collections' / 'dihya' / 'ops').symlink_to(ROOT)
    return collections


def environment(sandbox: Path, base_port: int, collections: Path, **extra: str) -> dict[str, str]:
    """The environment of Ansible runs against the demo fleet of ``sandbox`` on ``base_port``, plus ``extra``."""
    env = dict(os.environ)
    env.update(
        ANSIBLE_CONFIG=str(ROOT / 'ansible.cfg'), ANSIBLE_COLLECTIONS_PATH=str(collections),
        DIHYA_DEMO_SANDBOX=str(sandbox), DIHYA_DEMO_BASE_PORT=str(base_port),
        DIHYA_OPS_POLICY=str(ROOT / 'inventories' / 'local' / 'policy.yml'),
        ANSIBLE_NOCOLOR='1', ANSIBLE_FORCE_COLOR='0', **extra,
    )
    env.pop('ANSIBLE_STDOUT_CALLBACK', None)
    return env


def cpu_seconds() -> float:
    """User and system CPU time of the finished child processes so far."""
    usage = resource.getrusage(resource.RUSAGE_CHILDREN)
    return usage.ru_utime + usage.ru_stime


def run(argv: list[str], env: dict[str, str], timeout: float, cpu: list[float] | None = None) -> tuple[float, subprocess.CompletedProcess[str]]:
    """Run ``argv`` from the checkout; its wall time, and its CPU time (with its children's) appended to ``cpu`` when given."""
    start, used = time.monotonic(), cpu_seconds()
    proc = subprocess.run(argv, cwd=ROOT, env=env, capture_output=True, text=True, timeout=timeout, check=False)
    if cpu is not None:
        cpu.append(cpu_seconds() - used)
    return time.monotonic() - start, proc
