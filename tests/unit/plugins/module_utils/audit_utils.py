# Copyright (c) Dihya ops maintainers
# GNU General Public License v3.0+ (see LICENSES/GPL-3.0-or-later.txt or https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later

"""Shared helpers of the audit log tests: settings, events, writer processes."""

from __future__ import annotations

import contextlib
import os
import pathlib
import shutil
import signal
import subprocess
import sys
import tempfile
import time
import typing as t

from ansible_collections.dihya.ops.plugins.module_utils import _audit
from ansible_collections.dihya.ops.plugins.module_utils._audit import AuditLog, AuditSettings, build_event

KEY = b'test-chain-key-0123456789abcdef'
# The folder holding ansible_collections/, for child processes.
COLLECTIONS = str(pathlib.Path(_audit.__file__).parents[5])

WRITER = """
import os, sys, time
from ansible_collections.dihya.ops.plugins.module_utils import _audit_log
from ansible_collections.dihya.ops.plugins.module_utils._audit import AuditLog, AuditSettings, build_event
path, writer, count, batch, fsync, chunked = sys.argv[1], int(sys.argv[2]), int(sys.argv[3]), int(sys.argv[4]), sys.argv[5], sys.argv[6]
if chunked == 'chunked':
    # Short writes, as the kernel may do them: a kill then lands in the middle of a record.
    def write_all(fd, data):
        for start in range(0, len(data), 256):
            os.write(fd, data[start:start + 256])
            time.sleep(0.0002)
    _audit_log._write_all = write_all
settings = AuditSettings(key=os.environb[b'AUDIT_TEST_KEY'], fsync=fsync)
log = AuditLog(path, settings)
sent = 0
while count == 0 or sent < count:
    size = batch if count == 0 else min(batch, count - sent)
    log.append([build_event(action='test.write', category='ops', outcome='success', settings=settings, host='writer',
                            details={'writer': writer, 'n': sent + index, 'pad': 'x' * 200}) for index in range(size)])
    sent += size
"""


def settings(**options: t.Any) -> AuditSettings:
    options.setdefault('key', KEY)
    return AuditSettings(**options)


def event(config: AuditSettings | None = None, **fields: t.Any) -> dict[str, t.Any]:
    fields.setdefault('action', 'test.event')
    fields.setdefault('category', 'ops')
    fields.setdefault('outcome', 'success')
    return build_event(settings=config or settings(), **fields)


def write(path: pathlib.Path | str, count: int, config: AuditSettings | None = None, batch: int = 1, **fields: t.Any) -> list[dict[str, t.Any]]:
    """Append ``count`` events to ``path`` in batches; return the records written."""
    config = config or settings()
    log = AuditLog(str(path), config)
    written = []
    for start in range(0, count, batch):
        written += log.append([event(config, details={'n': start + index}, **fields) for index in range(min(batch, count - start))])
    return written


def start_writer(path: pathlib.Path | str, writer: int, count: int, batch: int, fsync: str, chunked: bool = False) -> subprocess.Popen[bytes]:
    """A child process appending ``count`` events (0: until killed) in batches, optionally with short writes."""
    env = dict(os.environ, PYTHONPATH=COLLECTIONS, AUDIT_TEST_KEY=KEY.decode())
    argv = [sys.executable, '-c', WRITER, str(path), str(writer), str(count), str(batch), fsync, 'chunked' if chunked else 'whole']
    return subprocess.Popen(argv, env=env)


def stop(process: subprocess.Popen[bytes]) -> None:
    """Kill a child process if it still runs, and reap it."""
    if process.poll() is None:
        process.send_signal(signal.SIGKILL)
    process.wait(timeout=30)


def wait_for_size(path: pathlib.Path, size: int, timeout: float = 20.0) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if path.exists() and path.stat().st_size >= size:
            return
        time.sleep(0.01)
    raise AssertionError(f'{path} did not reach {size} bytes within {timeout} s')


@contextlib.contextmanager
def memory_folder(fallback: pathlib.Path) -> t.Iterator[pathlib.Path]:
    """A private folder on tmpfs (``/dev/shm``) when there is one, else ``fallback``; removed afterwards.

    For the tests that append or rewrite a log thousands of times: locking, appends and reads behave
    the same there, but fsync and rewrites of a file cost no disk flush.
    """
    shm = '/dev/shm'
    if not (os.path.isdir(shm) and os.access(shm, os.W_OK | os.X_OK)):
        yield fallback
        return
    folder = tempfile.mkdtemp(prefix='dihya-audit-', dir=shm)
    try:
        yield pathlib.Path(folder)
    finally:
        shutil.rmtree(folder, ignore_errors=True)
