# Copyright (c) Dihya ops maintainers
# GNU General Public License v3.0+ (see LICENSES/GPL-3.0-or-later.txt or https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later

"""Tests of process liveness, with real processes."""

from __future__ import annotations

import builtins
import io
import os
import subprocess
import sys
import time
import typing as t

import pytest

from ansible_collections.dihya.ops.plugins.module_utils._process import pid_alive


def test_this_process_is_alive() -> None:
    assert pid_alive(os.getpid())


def test_a_child_is_alive_then_a_zombie_then_gone() -> None:
    child = subprocess.Popen([sys.executable, '-c', 'import sys; sys.stdin.read()'], stdin=subprocess.PIPE)
    try:
        assert pid_alive(child.pid)
        assert child.stdin is not None
        child.stdin.close()
        # Not reaped yet: a zombie, which is no live process.
        deadline = time.monotonic() + 10
        while pid_alive(child.pid) and time.monotonic() < deadline:
            time.sleep(0.01)
        assert not pid_alive(child.pid)
    finally:
        child.kill()
        child.wait()
    assert not pid_alive(child.pid)


def test_pid_1_is_alive() -> None:
    # For a user other than root, kill() says EPERM: the process exists all the same.
    assert pid_alive(1)


@pytest.mark.parametrize('pid', [0, -1, pytest.param(-os.getpid(), id='minus-own-pid'), True, False, None, '1', 1.0, 2**31, 2**63, 2**64, 2**200])
def test_what_is_no_pid_is_no_live_process(pid: t.Any) -> None:
    assert pid_alive(pid) is False


def test_a_pid_beyond_the_kernels_limit_is_not_alive() -> None:
    with open('/proc/sys/kernel/pid_max', encoding='ascii') as handle:
        pid_max = int(handle.read())
    assert not pid_alive(pid_max + 1)


def fake_stat(monkeypatch: pytest.MonkeyPatch, content: bytes | type[OSError]) -> None:
    """/proc/<pid>/stat of this process reads ``content`` (or raises it)."""
    real_open = builtins.open
    target = f'/proc/{os.getpid()}/stat'

    def fake_open(path: t.Any, *args: t.Any, **kwargs: t.Any) -> t.Any:
        if path == target:
            if isinstance(content, bytes):
                return io.BytesIO(content)
            raise content(path)
        return real_open(path, *args, **kwargs)

    monkeypatch.setattr(builtins, 'open', fake_open)


@pytest.mark.parametrize('stat, alive', [
    (b'42 (python) S 1 42 42 0 -1', True),
    (b'42 (python) R 1 42 42 0 -1', True),
    (b'42 (python) D 1 42 42 0 -1', True),
    (b'42 (python) Z 1 42 42 0 -1', False),
    (b'42 (python) X 1 42 42 0 -1', False),
    (b'42 (python) x 1 42 42 0 -1', False),
    # A command name may hold ") Z ": the state is what follows the last parenthesis.
    (b'42 (evil) Z (name) S 1 42 42 0 -1', True),
    (b'42 (evil) S (name) Z 1 42 42 0 -1', False),
    (b'42 (\xff\xfe) S 1', True),
    (b'', True),
])
def test_the_state_is_read_after_the_command_name(monkeypatch: pytest.MonkeyPatch, stat: bytes, alive: bool) -> None:
    fake_stat(monkeypatch, stat)
    assert pid_alive(os.getpid()) is alive


def test_where_proc_cannot_be_read_a_process_that_kill_finds_is_alive(monkeypatch: pytest.MonkeyPatch) -> None:
    fake_stat(monkeypatch, PermissionError)
    assert pid_alive(os.getpid())


def test_a_process_hidden_from_proc_is_alive(monkeypatch: pytest.MonkeyPatch) -> None:
    # /proc mounted with hidepid: the process exists (kill finds it) but its /proc entry does not show.
    fake_stat(monkeypatch, FileNotFoundError)
    assert pid_alive(os.getpid())


def test_a_process_reaped_between_kill_and_proc_is_not_alive(monkeypatch: pytest.MonkeyPatch) -> None:
    calls: list[int] = []

    def kill(pid: int, signal: int) -> None:
        calls.append(pid)
        if len(calls) > 1:
            raise ProcessLookupError(pid)

    monkeypatch.setattr(os, 'kill', kill)
    fake_stat(monkeypatch, FileNotFoundError)
    assert not pid_alive(os.getpid())
    assert calls == [os.getpid(), os.getpid()]


def test_kill_permission_error_means_it_exists(monkeypatch: pytest.MonkeyPatch) -> None:
    def kill(pid: int, signal: int) -> None:
        raise PermissionError(pid)

    monkeypatch.setattr(os, 'kill', kill)
    assert pid_alive(os.getpid())
