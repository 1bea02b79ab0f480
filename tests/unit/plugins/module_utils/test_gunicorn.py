# Copyright (c) Dihya ops maintainers
# GNU General Public License v3.0+ (see LICENSES/GPL-3.0-or-later.txt or https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later

"""The pidfile and process helpers of the gunicorn reloads and upgrades, on real (small) processes of the test."""

from __future__ import annotations

import os
import subprocess
import sys
import typing as t

import pytest

from ansible_collections.dihya.ops.plugins.module_utils import _gunicorn


@pytest.fixture()
def sleeper() -> t.Iterator[subprocess.Popen[bytes]]:
    proc = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(30)"])
    yield proc
    proc.kill()
    proc.wait()


def test_master_reads_the_pidfile(tmp_path, sleeper):
    pidfile = tmp_path / "gunicorn.pid"
    pidfile.write_text(f"{sleeper.pid}\n")
    assert _gunicorn.master(str(pidfile)) == sleeper.pid
    assert sleeper.pid in _gunicorn.children(os.getpid())
    assert _gunicorn.supervised_by_supervisord(sleeper.pid) is None


@pytest.mark.parametrize("content", [None, "", "abc", "99999999"])
def test_a_missing_or_dead_master_is_said(tmp_path, content):
    pidfile = tmp_path / "gunicorn.pid"
    if content is not None:
        pidfile.write_text(content)
    with pytest.raises(_gunicorn.GunicornError, match=r"holds no process id|is not running"):
        _gunicorn.master(str(pidfile))


def test_rollback_stops_the_new_master_and_gives_the_pidfile_back(tmp_path, sleeper):
    new = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(30)"])
    try:
        pidfile = tmp_path / "gunicorn.pid"
        # The pre-20 layout: the old master's pidfile renamed, the new master's in its place.
        (tmp_path / "gunicorn.pid.oldbin").write_text(f"{sleeper.pid}\n")
        pidfile.write_text(f"{new.pid}\n")
        outcome = _gunicorn.upgrade_rollback(str(pidfile), sleeper.pid, new.pid, timeout=5)
        assert new.wait(5) is not None
    finally:
        new.kill()
        new.wait()
    assert outcome.ok, outcome
    assert _gunicorn.read_pid(str(pidfile)) == sleeper.pid
    assert not (tmp_path / "gunicorn.pid.oldbin").exists()
    assert _gunicorn.alive(sleeper.pid)


def test_commit_refuses_a_dead_new_master(tmp_path, sleeper):
    pidfile = tmp_path / "gunicorn.pid"
    pidfile.write_text(f"{sleeper.pid}\n")
    outcome = _gunicorn.upgrade_commit(str(pidfile), sleeper.pid, 99999999, timeout=2)
    assert not outcome.ok and "is gone" in outcome.message
    assert _gunicorn.alive(sleeper.pid)
