# Copyright (c) Dihya ops maintainers
# GNU General Public License v3.0+ (see LICENSES/GPL-3.0-or-later.txt or https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later

"""Real services on loopback for the integration and functional tests: a supervisord and a PostgreSQL cluster.

Both start in a private temporary folder, are stopped by PID and have their folder removed by
``stop()``. Neither starts in a unit-tier session (see :mod:`.tiers`).
"""

from __future__ import annotations

import dataclasses
import os
import pwd
import shutil
import signal
import socket
import subprocess
import tempfile
import time
import typing as t

from ansible_collections.dihya.ops.tests.support.processes import stop_process, venv_tool
from ansible_collections.dihya.ops.tests.support.tiers import refuse_in_unit_tier


class Unavailable(Exception):
    """The service cannot run on this machine; tests that need it are skipped."""


# ---------------------------------------------------------------------------
# supervisord
# ---------------------------------------------------------------------------

SUPERVISORD_CONF = """\
[unix_http_server]
file={dir}/supervisor.sock

[supervisord]
logfile={dir}/supervisord.log
pidfile={dir}/supervisord.pid
childlogdir={dir}
nodaemon=true
silent=true

[rpcinterface:supervisor]
supervisor.rpcinterface_factory = supervisor.rpcinterface:make_main_rpcinterface

[supervisorctl]
serverurl=unix://{dir}/supervisor.sock
"""

# The programs a test supervisord can run: their configuration and the state each settles in (None: left STOPPED).
PROGRAMS: dict[str, tuple[str, str | None]] = {
    'web': ('command=sleep 1000\nstartsecs=0\nstopwaitsecs=2\n', 'RUNNING'),
    'idle': ('command=sleep 1000\nautostart=false\n', None),
    'crashy': ('command=false\nstartsecs=1\nstartretries=0\nautorestart=false\n', 'FATAL'),
}


def supervisord_conf(directory: str, programs: t.Sequence[str]) -> str:
    """The configuration of a supervisord whose socket, logs and pid file are in ``directory``, with the named :data:`PROGRAMS`."""
    sections = [SUPERVISORD_CONF.format(dir=directory)]
    sections += [f'[program:{name}]\n{PROGRAMS[name][0]}' for name in programs]
    return '\n'.join(sections)


@dataclasses.dataclass
class Supervisor:
    """A real supervisord in the foreground, and its supervisorctl."""

    directory: str
    config: str
    supervisorctl: str
    process: subprocess.Popen[bytes] | None = None
    owns_directory: bool = True

    def ctl(self, *args: str) -> str:
        completed = subprocess.run([self.supervisorctl, '-c', self.config, *args], capture_output=True, text=True, timeout=30, check=False)
        return completed.stdout

    def wait_for_state(self, program: str, state: str, timeout: float = 15) -> None:
        expires = time.monotonic() + timeout
        output = ''
        while time.monotonic() < expires:
            output = self.ctl('status', program)
            if f' {state} ' in f' {output} '.replace('\n', ' '):
                return
            time.sleep(0.1)
        raise AssertionError(f'{program} did not reach {state}: {output}')

    @classmethod
    def start(cls, directory: str | os.PathLike[str] | None = None, programs: t.Sequence[str] = ('web', 'idle', 'crashy')) -> Supervisor:
        """Start supervisord with the named :data:`PROGRAMS` (by default ``web`` RUNNING, ``idle`` STOPPED, ``crashy`` FATAL).

        It works in ``directory`` (kept by :meth:`stop`), else in a new temporary folder (removed by :meth:`stop`).
        """
        refuse_in_unit_tier('supervisor', 'supervisord')
        supervisord = venv_tool('supervisord')
        supervisorctl = venv_tool('supervisorctl')
        if not supervisord or not supervisorctl:
            raise Unavailable('supervisor is not installed')
        folder = os.fspath(directory) if directory is not None else tempfile.mkdtemp(prefix='dihya-supervisor-')
        config = os.path.join(folder, 'supervisord.conf')
        with open(config, 'w', encoding='utf-8') as handle:
            handle.write(supervisord_conf(folder, programs))
        instance = cls(folder, config, supervisorctl, owns_directory=directory is None)
        instance.process = subprocess.Popen([supervisord, '-c', config], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        try:
            for name in programs:
                state = PROGRAMS[name][1]
                if state is not None:
                    instance.wait_for_state(name, state)
        except BaseException:
            instance.stop()
            raise
        return instance

    def stop(self) -> None:
        # supervisord stops its programs on SIGTERM.
        if self.process is not None:
            stop_process(self.process, timeout=15)
        if self.owns_directory:
            shutil.rmtree(self.directory, ignore_errors=True)


# ---------------------------------------------------------------------------
# PostgreSQL
# ---------------------------------------------------------------------------

def postgres_binaries() -> tuple[str, str] | None:
    """initdb and postgres from PATH or the newest Debian PostgreSQL installation."""
    versions = sorted(os.listdir('/usr/lib/postgresql'), reverse=True) if os.path.isdir('/usr/lib/postgresql') else []
    for directory in [os.path.dirname(shutil.which('initdb') or '')] + [f'/usr/lib/postgresql/{version}/bin' for version in versions]:
        initdb, server = os.path.join(directory, 'initdb'), os.path.join(directory, 'postgres')
        if directory and os.access(initdb, os.X_OK) and os.access(server, os.X_OK):
            return initdb, server
    return None


@dataclasses.dataclass
class Postgres:
    """A throw-away PostgreSQL cluster on loopback with password authentication."""

    directory: str
    port: int
    password: str
    process: subprocess.Popen[bytes] | None = None

    def dsn(self, password: str | None = None, database: str = 'postgres') -> str:
        return f'postgresql://postgres:{password or self.password}@127.0.0.1:{self.port}/{database}'

    @classmethod
    def start(cls) -> Postgres:
        """initdb a cluster in a new temporary folder and start it (as the postgres user when running as root)."""
        refuse_in_unit_tier('postgres', 'PostgreSQL')
        import psycopg  # pylint: disable=import-outside-toplevel

        binaries = postgres_binaries()
        if binaries is None:
            raise Unavailable('PostgreSQL server binaries are not installed')
        initdb, server = binaries
        user = None
        if os.geteuid() == 0:
            try:
                user = pwd.getpwnam('postgres')
            except KeyError as exc:
                raise Unavailable('running as root and there is no postgres user to run PostgreSQL as') from exc

        # Run as the postgres user when running as root (PostgreSQL refuses to run as root).
        owner: dict[str, t.Any] = {'user': user.pw_uid, 'group': user.pw_gid} if user is not None else {}
        directory = tempfile.mkdtemp(prefix='dihya-pg-')
        with socket.socket() as sock:
            sock.bind(('127.0.0.1', 0))
            port = sock.getsockname()[1]
        instance = cls(directory, port, 'pg-s3cret-w0rd')
        data = os.path.join(directory, 'data')
        pwfile = os.path.join(directory, 'pwfile')
        with open(pwfile, 'w', encoding='utf-8') as handle:
            handle.write(instance.password + '\n')
        if user is not None:
            for path in (directory, pwfile):
                os.chown(path, user.pw_uid, user.pw_gid)
        try:
            completed = subprocess.run(
                [initdb, '-D', data, '-U', 'postgres', '-A', 'scram-sha-256', '--pwfile', pwfile, '-N'],
                **owner, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, timeout=60, check=False,
            )
            if completed.returncode:
                raise Unavailable(f'initdb failed: {completed.stderr.decode()[-300:]}')
            options = ['-c', 'listen_addresses=127.0.0.1', '-c', f'port={port}', '-c', f'unix_socket_directories={directory}', '-c', 'fsync=off']
            with open(os.path.join(directory, 'log'), 'wb') as log:
                instance.process = subprocess.Popen([server, '-D', data, *options], **owner, stdout=log, stderr=log)
            expires = time.monotonic() + 30
            while True:
                try:
                    psycopg.connect(instance.dsn(), connect_timeout=2).close()
                    return instance
                except psycopg.OperationalError as exc:
                    if instance.process.poll() is not None or time.monotonic() > expires:
                        raise Unavailable(f'PostgreSQL did not start: {exc}') from exc
                    time.sleep(0.1)
        except BaseException:
            instance.stop()
            raise

    def stop(self) -> None:
        if self.process is not None:
            if self.process.poll() is None:
                self.process.send_signal(signal.SIGINT)  # fast shutdown
            stop_process(self.process)
        shutil.rmtree(self.directory, ignore_errors=True)


# The services a test session starts once, in the pytest process, when a selected test needs them.
SESSION_SERVICES: dict[str, t.Callable[[], t.Any]] = {'supervisor': Supervisor.start, 'postgres': Postgres.start}
