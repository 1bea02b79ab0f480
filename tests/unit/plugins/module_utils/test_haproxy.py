# Copyright (c) Dihya ops maintainers
# GNU General Public License v3.0+ (see LICENSES/GPL-3.0-or-later.txt or https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later

"""The HAProxy runtime API client against a fake stats socket (a unix socket server of the test), and the drain loop."""

from __future__ import annotations

import contextlib
import socket
import threading
import time
import typing as t

import pytest

from ansible_collections.dihya.ops.plugins.module_utils._balancer import BalancerError, Member, drain_and_wait
from ansible_collections.dihya.ops.plugins.module_utils._haproxy import HAProxy

HEADER = "# pxname,svname,qcur,qmax,scur,smax,slim,stot,bin,bout,dreq,dresp,ereq,econ,eresp,wretr,wredis,status\n"


class FakeHAProxy:
    """A unix socket that answers one command per connection, like HAProxy's non-interactive mode."""

    def __init__(self, path: str, delay: float = 0.0) -> None:
        self.path = path
        self.delay = delay
        self.commands: list[str] = []
        self.states = {"web1": "UP", "web2": "UP"}
        self.sessions = {"web1": 2, "web2": 0}
        self.server = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        self.server.bind(path)
        self.server.listen(8)
        self.server.settimeout(0.2)
        self.stopped = threading.Event()
        self.thread = threading.Thread(target=self.serve, daemon=True)
        self.thread.start()

    def answer(self, line: str) -> str:
        if line == "show stat":
            rows = [f"dihya_backend,{name},0,0,{self.sessions[name]},0,,0,0,0,,0,,0,0,0,0,{state}" for name, state in self.states.items()]
            rows.append("dihya_backend,BACKEND,0,0,2,0,,0,0,0,,0,,0,0,0,0,UP")
            return HEADER + "\n".join(rows) + "\n\n"
        parts = line.split()
        if parts[:2] == ["set", "server"] and len(parts) == 5 and parts[3] == "state":
            server = parts[2].split("/")[1]
            if server not in self.states:
                return "No such server.\n"
            self.states[server] = {"drain": "DRAIN", "ready": "UP", "maint": "MAINT"}[parts[4]]
            return "\n"
        return "Unknown command. Please enter one of the following commands only :\n"

    def serve(self) -> None:
        while not self.stopped.is_set():
            try:
                conn, dummy = self.server.accept()
            except OSError:
                continue
            with conn:
                data = b""
                while not data.endswith(b"\n"):
                    chunk = conn.recv(4096)
                    if not chunk:
                        break
                    data += chunk
                line = data.decode().strip()
                self.commands.append(line)
                time.sleep(self.delay)
                with contextlib.suppress(OSError):
                    conn.sendall(self.answer(line).encode())

    def close(self) -> None:
        self.stopped.set()
        self.thread.join(2)
        self.server.close()


@pytest.fixture()
def fake(tmp_path) -> t.Iterator[FakeHAProxy]:
    server = FakeHAProxy(str(tmp_path / "admin.sock"))
    yield server
    server.close()


def test_member_is_read_from_show_stat(fake):
    member = HAProxy(fake.path).member("dihya_backend", "web1")
    assert member == Member("dihya_backend", "web1", "ready", "UP", 2)


def test_set_state_sends_one_command(fake):
    client = HAProxy(fake.path)
    client.set_state("dihya_backend", "web1", "drain")
    assert fake.commands[-1] == "set server dihya_backend/web1 state drain"
    assert client.member("dihya_backend", "web1").admin_state == "drain"


def test_unknown_backend_and_server_are_named(fake):
    client = HAProxy(fake.path)
    with pytest.raises(BalancerError, match=r"no backend 'other' .backends: dihya_backend"):
        client.member("other", "web1")
    with pytest.raises(BalancerError, match="no server 'web9' in backend 'dihya_backend'"):
        client.member("dihya_backend", "web9")


def test_a_refused_command_fails(fake, monkeypatch):
    monkeypatch.setattr(fake, "answer", lambda line: "Permission denied\n")
    with pytest.raises(BalancerError, match="refused to set dihya_backend/web1 to drain: Permission denied"):
        HAProxy(fake.path).set_state("dihya_backend", "web1", "drain")


@pytest.mark.parametrize("name", ["web1; shutdown sessions", "web1\nshow env", "-x", "a b", ""])
def test_hostile_names_never_reach_the_socket(fake, name):
    with pytest.raises(ValueError):
        HAProxy(fake.path).set_state("dihya_backend", name, "drain")
    with pytest.raises(ValueError):
        HAProxy(fake.path).member(name, "web1")
    assert fake.commands == []


def test_a_missing_socket_is_a_clear_error(tmp_path):
    with pytest.raises(BalancerError, match=r"HAProxy stats socket .*missing.sock is unreachable"):
        HAProxy(str(tmp_path / "missing.sock"), timeout=1).member("dihya_backend", "web1")


def test_a_silent_haproxy_meets_the_deadline(tmp_path):
    slow = FakeHAProxy(str(tmp_path / "slow.sock"), delay=2.0)
    try:
        started = time.monotonic()
        with pytest.raises(BalancerError, match=r"did not answer 'show' within 0\.3 s"):
            HAProxy(slow.path, timeout=0.3).member("dihya_backend", "web1")
        assert time.monotonic() - started < 1.5
    finally:
        slow.close()


def test_drain_waits_for_the_sessions_to_end(fake):
    client = HAProxy(fake.path)
    timer = threading.Timer(0.5, lambda: fake.sessions.update(web1=0))
    timer.start()
    result = drain_and_wait(client, "dihya_backend", "web1", timeout=5, poll=0.05)
    timer.join()
    assert result.drained and result.member.sessions == 0 and result.member.admin_state == "drain"
    assert 0.4 <= result.waited < 3


def test_drain_gives_up_at_its_timeout(fake):
    result = drain_and_wait(HAProxy(fake.path), "dihya_backend", "web1", timeout=0.3, poll=0.05)
    assert not result.drained and result.member.sessions == 2
