"""Every boolean variable of every role, given on the command line as ``-e NAME=false`` and ``-e NAME=true``.

``-e NAME=false`` is the string ``'false'``: the roles' argument validation accepts it as a
boolean but leaves the variable a string, so a role that reads it without ``| bool`` takes it
for true (``rotate_logs_copytruncate=false`` turned copytruncate on).  The cases are generated
from the roles' ``meta/argument_specs.yml``: a new boolean gets its two cases automatically,
and they fail until an effect check is written for it in ``EFFECTS`` below.  Each check runs
the role (check mode where the effect shows in it) on a small sandbox of real things: a
seeded demo SQLite database, HTTP and HTTPS servers on loopback, a supervisord, a virtual
environment with local wheels and a file-based package index, and logrotate.
"""

from __future__ import annotations

import contextlib
import dataclasses
import http.server
import json
import os
import pathlib
import re
import shutil
import socket
import sqlite3
import ssl
import subprocess
import sys
import threading
import time
import typing as t

import pytest
import yaml

from ansible_collections.dihya.ops.plugins.module_utils import _rgpd
from ansible_collections.dihya.ops.tests.unit.plugins.module_utils.pydeps_utils import install, make_venv
from ansible_collections.dihya.ops.tests.support.fleet import BIN, ROOT, run
from ansible_collections.dihya.ops.tests.support.services import Supervisor
from ansible_collections.dihya.ops.tests.support.tls import self_signed
from ansible_collections.dihya.ops.tests.support.wheelbuilder import build_all, build_wheel
from ansible_collections.dihya.ops.tests.ipfs.ipfs_utils import KuboReceiver

sys.path.insert(0, str(ROOT / "tests" / "lint"))
import check_argument_specs  # tests/lint is not a package
import check_role_booleans

PLAYBOOK = ROOT / "tests" / "functional" / "playbooks" / "role_booleans.yml"
DATA_MAP = ROOT / "docs" / "examples" / "rgpd-datamap-demo.yml"
OSV = ROOT / "tests" / "fixtures" / "osv"
EXT = "dihya-demo-ext"
PSEUDONYM_KEY = "role-booleans-pseudonym-key-0123"
WHEEL = "dihya_demo_ext-{}-py3-none-any.whl"
# The collection's own roles (tests/demo_backend is the test fleet, not part of the collection).
BOOLEANS = check_role_booleans.boolean_variables(sorted(p for p in (ROOT / "roles").iterdir() if p.is_dir()))


def recap(output: str) -> dict[str, dict[str, int]]:
    return {host: {key: int(value) for key, value in re.findall(r"(\w+)=(\d+)", counters)}
            for host, counters in re.findall(r"^(\S+)\s+:\s+(ok=.*)$", output, re.MULTILINE)}


# ---------------------------------------------------------------------------
# The sandbox: real services on loopback, stopped in teardown
# ---------------------------------------------------------------------------

class _Handler(http.server.BaseHTTPRequestHandler):
    """/healthz answers ok, /down answers 503, /wheels/<file> serves the local wheels."""

    def do_GET(self) -> None:  # http.server's name
        if self.path.startswith("/wheels/"):
            wheel = self.server.wheels / pathlib.Path(self.path).name  # type: ignore[attr-defined]
            if wheel.is_file():
                return self._send(200, wheel.read_bytes(), "application/octet-stream")
            return self._send(404, b"no such wheel", "text/plain")
        if self.path.startswith("/healthz"):
            return self._send(200, b'{"status": "ok"}', "application/json")
        return self._send(503, b'{"status": "down"}', "application/json")

    def _send(self, status: int, body: bytes, kind: str) -> None:
        self.send_response(status)
        self.send_header("Content-Type", kind)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, *args: t.Any) -> None:
        pass


def _serve(wheels: pathlib.Path, tls: ssl.SSLContext | None = None) -> http.server.ThreadingHTTPServer:
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), _Handler)
    server.daemon_threads = True
    server.wheels = wheels  # type: ignore[attr-defined]
    if tls is not None:
        server.socket = tls.wrap_socket(server.socket, server_side=True)
    threading.Thread(target=server.serve_forever, kwargs={"poll_interval": 0.1}, daemon=True).start()
    return server


@dataclasses.dataclass
class Box:
    """The sandbox hosts ``box`` and ``box2`` (local connection), their services and a playbook runner."""

    base: pathlib.Path
    http_port: int
    https_port: int
    refused_port: int
    wheels: pathlib.Path
    low_wheels: pathlib.Path
    index: pathlib.Path
    venv: pathlib.Path
    supervisor_config: pathlib.Path
    pristine_db: pathlib.Path

    def root(self, host: str = "box") -> pathlib.Path:
        return self.base / host

    @property
    def db(self) -> pathlib.Path:
        return self.root() / "data" / "app.db"

    @property
    def env(self) -> dict[str, str]:
        env = {key: value for key, value in os.environ.items() if key.lower() not in ("http_proxy", "https_proxy", "all_proxy")}
        env.update(ANSIBLE_NOCOLOR="1", ANSIBLE_FORCE_COLOR="0", PY_COLORS="0", NO_PROXY="127.0.0.1,localhost",
                   no_proxy="127.0.0.1,localhost", PIP_NO_INPUT="1", PIP_DISABLE_PIP_VERSION_CHECK="1")
        return env

    def play(self, role: str, name: str, value: str, variables: dict | None = None, *flags: str,
             hosts: str = "box") -> subprocess.CompletedProcess:
        """Run ``role`` with ``variables`` (JSON, typed) and then ``-e name=value`` (the string form under test)."""
        extra = self.base / "extra-vars.json"
        extra.write_text(json.dumps({"role_booleans_role": role, "role_booleans_hosts": hosts, **(variables or {})}))
        argv = [str(BIN / "ansible-playbook"), "-i", str(self.base / "inventory.yml"), str(PLAYBOOK),
                "-e", f"@{extra}", "-e", f"{name}={value}", *flags]
        return run(argv, env=self.env, timeout=300)

    def supervisorctl(self, *args: str) -> str:
        return subprocess.run([str(BIN / "supervisorctl"), "-c", str(self.supervisor_config), *args],
                              capture_output=True, text=True, timeout=30, check=False).stdout.strip()

    def installed(self, name: str = EXT) -> str | None:
        out = subprocess.run([str(self.venv / "bin" / "python"), "-m", "pip", "list", "--format", "json"],
                             capture_output=True, text=True, timeout=120, check=True, env=self.env).stdout
        return {item["name"]: item["version"] for item in json.loads(out)}.get(name)


def _host_model(root: pathlib.Path, http_port: int) -> dict:
    return {
        "ansible_connection": "local",
        "ansible_python_interpreter": sys.executable,
        "dihya_backend_root": str(root),
        "dihya_backend_health_url": f"http://127.0.0.1:{http_port}/healthz",
        "dihya_backend_log_dir": str(root / "log"),
        "dihya_backend_logs": [str(root / "log" / name) for name in ("access.log", "error.log", "app.log")],
        # The sandbox has no cron of its own: nothing may land in the machine's /etc/cron.d.
        "rotate_logs_schedule": "none",
        "dihya_backend_tmp_dirs": [str(root / "tmp")],
        "dihya_backend_state_dir": str(root / "state"),
        "dihya_backend_db_url": f"sqlite:///{root}/data/app.db",
        "dihya_backend_tenants": ["acme"],
        "dihya_backend_services": [],
        "dihya_backend_rgpd_data_map": str(DATA_MAP),
        "dihya_backend_pseudonym_key": PSEUDONYM_KEY,
        "dihya_backend_rgpd_export_dir": str(root / "rgpd" / "exports"),
        "dihya_backend_rgpd_ledger_file": str(root / "rgpd-ledger" / "erasure-ledger.jsonl"),
    }


@pytest.fixture(scope="module")
def box(tmp_path_factory) -> t.Iterator[Box]:
    base = tmp_path_factory.mktemp("role-booleans")
    wheels = build_all(base / "wheels")
    low_wheels = base / "low-wheels"
    build_wheel(low_wheels, "1.0.0")
    # A file-based package index (PEP 503 layout) that offers 1.1.0 only.
    index = base / "index" / "simple"
    (index / EXT).mkdir(parents=True)
    (index / EXT / "index.html").write_text(
        f'<!DOCTYPE html><html><body><a href="{(wheels / WHEEL.format("1.1.0")).as_uri()}">{WHEEL.format("1.1.0")}</a></body></html>\n')
    venv = make_venv(base / "venv", tmp_path_factory)
    install(venv, wheels, f"{EXT}==1.0.0")
    pristine = base / "pristine.db"
    subprocess.run([sys.executable, "-m", "dihya_demo.seed", "--db", str(pristine), "--users-per-tenant", "3", "--tenant", "acme"],
                   env=dict(os.environ, PYTHONPATH=str(ROOT / "tests" / "demo_backend" / "app")),
                   check=True, capture_output=True, timeout=120)
    for host in ("box", "box2"):
        for folder in ("log", "tmp", "state", "data", "etc", "run"):
            (base / host / folder).mkdir(parents=True)
    shutil.copy(pristine, base / "box" / "data" / "app.db")

    # A port bound but not listening: connections to it are refused at once.
    refused = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    refused.bind(("127.0.0.1", 0))
    plain = _serve(wheels)
    secure = _serve(wheels, self_signed(base, "dihya-role-booleans"))
    (base / "supervisor").mkdir()
    supervisor = None
    try:
        supervisor = Supervisor.start(base / "supervisor", programs=("web",))
        sandbox = Box(base=base, http_port=plain.server_address[1], https_port=secure.server_address[1],
                      refused_port=refused.getsockname()[1], wheels=wheels, low_wheels=low_wheels, index=index,
                      venv=venv, supervisor_config=pathlib.Path(supervisor.config), pristine_db=pristine)
        hosts = {host: dict(_host_model(base / host, sandbox.http_port), dihya_backend_venv=str(venv)) for host in ("box", "box2")}
        (base / "inventory.yml").write_text(yaml.safe_dump({"all": {"hosts": hosts}}))
        yield sandbox
    finally:
        if supervisor is not None:
            supervisor.stop()
        for server in (plain, secure):
            server.shutdown()
            server.server_close()
        refused.close()


# ---------------------------------------------------------------------------
# One effect check per boolean: run the role with -e NAME=<value>, assert what it did
# ---------------------------------------------------------------------------

def _ok(proc: subprocess.CompletedProcess) -> str:
    output = proc.stdout + proc.stderr
    assert proc.returncode == 0, output
    return output


def _failed(proc: subprocess.CompletedProcess) -> str:
    output = proc.stdout + proc.stderr
    assert proc.returncode != 0, output
    assert "Traceback" not in output, output
    return output


def check_health_validate_certs(box: Box, name: str, value: bool) -> None:
    proc = box.play("check_health", name, str(value).lower(),
                    {"check_health_url": f"https://127.0.0.1:{box.https_port}/healthz"}, "--check")
    if value:
        assert "certificate" in _failed(proc).lower()
    else:
        _ok(proc)


def check_health_fail_on_unhealthy(box: Box, name: str, value: bool) -> None:
    proc = box.play("check_health", name, str(value).lower(), {"check_health_url": f"http://127.0.0.1:{box.http_port}/down"}, "--check")
    if value:
        assert "box is unhealthy" in _failed(proc)
    else:
        output = _ok(proc)
        assert "box is unhealthy" not in output and "http_health" in output, output


def operation_audit(box: Box, name: str, value: bool) -> None:
    log = box.root() / "audit" / "audit.log"
    shutil.rmtree(log.parent, ignore_errors=True)
    _ok(box.play("operation", name, str(value).lower(), {
        "operation_name": "check_health", "dihya_backend_audit_log": str(log),
        "dihya_backend_audit_key": "role-booleans-audit-key-0123456789"}))
    if value:
        actions = [json.loads(line)["event"]["action"] for line in log.read_text().splitlines()]
        assert "check_health.started" in actions and "check_health.finished" in actions, actions
    else:
        assert not log.exists()


def _ipfs_export_vars(box: Box, **extra: t.Any) -> dict[str, t.Any]:
    log = box.root() / "audit" / "audit.log"
    shutil.rmtree(log.parent, ignore_errors=True)
    shutil.rmtree(box.root() / "state" / "ipfs-exports", ignore_errors=True)
    return {"operation_name": "check_health", "dihya_backend_audit_log": str(log),
            "dihya_backend_audit_key": "role-booleans-audit-key-0123456789",
            "dihya_backend_ipfs_export_key": "0123456789abcdef" * 4, "dihya_backend_ipfs_export_key_id": "booleans", **extra}


def _ipfs_cars(box: Box) -> list[pathlib.Path]:
    return sorted((box.root() / "state" / "ipfs-exports").glob("*.car"))


def operation_ipfs_export(box: Box, name: str, value: bool) -> None:
    _ok(box.play("operation", name, str(value).lower(), _ipfs_export_vars(box)))
    actions = [json.loads(line)["event"]["action"] for line in (box.root() / "audit" / "audit.log").read_text().splitlines()]
    assert ("check_health.ipfs_exported" in actions) is value, actions
    assert len(_ipfs_cars(box)) == (1 if value else 0)


def operation_ipfs_push_pin(box: Box, name: str, value: bool) -> None:
    receiver = KuboReceiver()
    try:
        _ok(box.play("operation", name, str(value).lower(), _ipfs_export_vars(
            box, operation_ipfs_export=True, dihya_backend_ipfs_push_url=receiver.url)))
        assert [request.query.get("pin-roots") for request in receiver.received] == [[str(value).lower()]]
    finally:
        receiver.close()


def purge_temp_files_force(box: Box, name: str, value: bool) -> None:
    protected = box.root() / "kept"
    protected.mkdir(exist_ok=True)
    stale = protected / "stale-file"
    stale.write_text("stale")
    old = time.time() - 30 * 86400
    os.utime(stale, (old, old))
    proc = box.play("purge_temp_files", name, str(value).lower(),
                    {"purge_temp_files_paths": [str(protected)], "purge_temp_files_protected_paths": [str(protected)]})
    if value:
        _ok(proc)
    else:
        assert "force" in _failed(proc)
    assert stale.exists() is not value


def purge_temp_files_remove_empty_dirs(box: Box, name: str, value: bool) -> None:
    tmp = box.root() / "tmp"
    old = time.time() - 30 * 86400
    (tmp / "old-empty").mkdir(exist_ok=True)
    (tmp / "old-file").write_text("stale")
    for path in (tmp / "old-file", tmp / "old-empty"):
        os.utime(path, (old, old))
    _ok(box.play("purge_temp_files", name, str(value).lower()))
    assert not (tmp / "old-file").exists()
    assert (tmp / "old-empty").exists() is not value


def rgpd_fetch_remove_remote(box: Box, name: str, value: bool) -> None:
    exports, fetched = box.root() / "rgpd" / "exports", box.base / "fetched"
    for folder in (exports, fetched):
        shutil.rmtree(folder, ignore_errors=True)
    _ok(box.play("rgpd", name, str(value).lower(), {
        "rgpd_operation": "export", "rgpd_tenant": "acme", "rgpd_subject_id": "1", "rgpd_fetch_dir": str(fetched)}))
    assert len(list((fetched / "acme").glob("box-rgpd-export-acme-*.zip"))) == 1
    assert len(list(exports.glob("rgpd-export-*.zip"))) == (0 if value else 1)


def _query(box: Box, sql: str, *params: t.Any) -> list[tuple]:
    with contextlib.closing(sqlite3.connect(box.db)) as conn:
        return conn.execute(sql, params).fetchall()


def _user_exists(box: Box, user: int) -> bool:
    return _query(box, "SELECT count(*) FROM users WHERE id = ?", user) == [(1,)]


def rgpd_confirm_erase(box: Box, name: str, value: bool) -> None:
    shutil.copy(box.pristine_db, box.db)
    assert _user_exists(box, 2)
    proc = box.play("rgpd", name, str(value).lower(), {"rgpd_operation": "erase", "rgpd_tenant": "acme", "rgpd_subject_id": "2"})
    if value:
        _ok(proc)
    else:
        assert "Refused" in _failed(proc)
    assert _user_exists(box, 2) is not value


def rgpd_force(box: Box, name: str, value: bool) -> None:
    # The archive's name is pinned (an extra variable outranks the role's fact) onto an existing regular file.
    archive = box.root() / "rgpd" / "exports" / "pinned-export.zip"
    archive.parent.mkdir(parents=True, exist_ok=True, mode=0o700)
    archive.write_text("an earlier file\n")
    proc = box.play("rgpd", name, str(value).lower(), {"rgpd_operation": "export", "rgpd_tenant": "acme", "rgpd_subject_id": "1",
                                                       "rgpd_fetch_dir": "", "_rgpd_archive": str(archive)})
    if value:
        _ok(proc)
        assert archive.read_bytes().startswith(b"PK"), "the export replaced the regular file"
    else:
        output = _failed(proc)
        assert "is an existing file; refusing to write through or over it" in " ".join(output.split()), output
        assert archive.read_text() == "an earlier file\n"


def rgpd_ledger_table(box: Box, name: str, value: bool) -> None:
    shutil.copy(box.pristine_db, box.db)
    _ok(box.play("rgpd", name, str(value).lower(), {"rgpd_operation": "erase", "rgpd_tenant": "acme", "rgpd_subject_id": "2",
                                                    "rgpd_confirm_erase": True}))
    assert not _user_exists(box, 2)
    tables = {row[0] for row in _query(box, "SELECT name FROM sqlite_master WHERE type = 'table'")}
    assert ("dihya_rgpd_erasure_ledger" in tables) is value, tables
    if value:
        assert _query(box, "SELECT count(*) FROM dihya_rgpd_erasure_ledger") == [(1,)]


def rgpd_replay_unverified(box: Box, name: str, value: bool) -> None:
    # A ledger entry without a fingerprint (written before fingerprints existed) names user 3 by its id's pseudonym only.
    shutil.copy(box.pristine_db, box.db)
    ledger = box.base / "replay-ledger" / "erasure-ledger.jsonl"
    shutil.rmtree(ledger.parent, ignore_errors=True)
    ledger.parent.mkdir(mode=0o700)
    _rgpd.append_ledger_file(str(ledger), {"entry_id": "legacy", "tenant": "acme", "subject": _rgpd.pseudonym(3, PSEUDONYM_KEY.encode()),
                                           "state": "committed"})
    _ok(box.play("rgpd", name, str(value).lower(), {"rgpd_operation": "replay", "rgpd_tenant": "acme", "rgpd_confirm_erase": True,
                                                    "rgpd_ledger_file": str(ledger)}))
    assert _user_exists(box, 3) is not value


def rgpd_once_per_database(box: Box, name: str, value: bool) -> None:
    # Both hosts name one PostgreSQL database (its port refuses connections): the host that
    # runs the request fails to connect, a host that leaves it to the other does not.
    proc = box.play("rgpd", name, str(value).lower(), {
        "rgpd_operation": "inventory", "rgpd_tenant": "acme", "rgpd_subject_id": "1",
        "dihya_backend_db_url": f"postgresql://dihya:secret@127.0.0.1:{box.refused_port}/dihya"}, "--check", hosts="box:box2")
    output = proc.stdout + proc.stderr
    stats = recap(output)
    assert stats["box"]["failed"] == 1, output
    if value:
        assert stats["box2"]["failed"] == 0 and "shares its database" in output, output
    else:
        assert stats["box2"]["failed"] == 1 and "shares its database" not in output, output


def _logrotate_config(box: Box, name: str, value: bool | str) -> set[str]:
    config = box.root() / "etc" / "logrotate.conf"
    config.unlink(missing_ok=True)
    _ok(box.play("rotate_logs", name, value if isinstance(value, str) else str(value).lower()))
    return {line.strip() for line in config.read_text().splitlines()}


def rotate_logs_compress(box: Box, name: str, value: bool) -> None:
    lines = _logrotate_config(box, name, value)
    assert ("compress" in lines, "delaycompress" in lines, "nocompress" in lines) == (value, value, not value), lines


def rotate_logs_dateext(box: Box, name: str, value: bool) -> None:
    lines = _logrotate_config(box, name, value)
    assert ("dateext" in lines, "nodateext" in lines) == (value, not value), lines


def rotate_logs_copytruncate(box: Box, name: str, value: bool) -> None:
    lines = _logrotate_config(box, name, value)
    assert ("copytruncate" in lines, "create" in lines) == (value, not value), lines


def rotate_logs_force(box: Box, name: str, value: bool) -> None:
    log_dir = box.root() / "log"
    shutil.rmtree(log_dir)
    log_dir.mkdir()
    (box.root() / "run" / "logrotate.status").unlink(missing_ok=True)
    for log in ("access.log", "error.log", "app.log"):
        (log_dir / log).write_text("a line\n")
    _ok(box.play("rotate_logs", name, str(value).lower()))
    rotated = sorted(path.name for path in log_dir.glob("access.log-*"))
    assert bool(rotated) is value, rotated


def _plan(box: Box, name: str, value: bool, variables: dict) -> subprocess.CompletedProcess:
    install(box.venv, box.wheels, f"{EXT}==1.0.0")
    return box.play("update_dependencies", name, str(value).lower(), {
        "update_dependencies_pip_audit": "never", "update_dependencies_osv_dirs": [str(OSV)], "update_dependencies_restart": False,
        **variables}, "--check")


def update_dependencies_upgrade(box: Box, name: str, value: bool) -> None:
    output = _ok(_plan(box, name, value, {"update_dependencies_packages": [EXT], "update_dependencies_find_links": [str(box.wheels)],
                                          "update_dependencies_no_index": True}))
    assert (f"{EXT} 1.0.0 -> 2.0.0" in output) is value, output
    assert ("nothing to change in" in output) is not value, output
    assert box.installed() == "1.0.0"


def update_dependencies_no_index(box: Box, name: str, value: bool) -> None:
    # find-links offer 1.0.0 (installed), the index offers 1.1.0: only the index can upgrade.
    output = _ok(_plan(box, name, value, {"update_dependencies_packages": [EXT], "update_dependencies_upgrade": True,
                                          "update_dependencies_find_links": [str(box.low_wheels)],
                                          "update_dependencies_index_url": box.index.as_uri()}))
    assert ("nothing to change in" in output) is value, output
    assert (f"{EXT} 1.0.0 -> 1.1.0" in output) is not value, output
    assert box.installed() == "1.0.0"


def update_dependencies_allow_urls(box: Box, name: str, value: bool) -> None:
    url = f"http://127.0.0.1:{box.http_port}/wheels/{WHEEL.format('1.1.0')}"
    proc = _plan(box, name, value, {"update_dependencies_packages": [f"{EXT} @ {url}"], "update_dependencies_no_index": True,
                                    "update_dependencies_find_links": [str(box.wheels)]})
    if value:
        assert f"{EXT} 1.0.0 -> 1.1.0" in _ok(proc)
    else:
        assert "set allow_urls" in _failed(proc)
    assert box.installed() == "1.0.0"


def update_dependencies_restart(box: Box, name: str, value: bool) -> None:
    install(box.venv, box.wheels, f"{EXT}==1.0.0")
    pid_before = box.supervisorctl("pid", "web")
    services = [{"name": "web", "manager": "supervisor", "unit": "web"}]
    _ok(box.play("update_dependencies", name, str(value).lower(), {
        "update_dependencies_pip_audit": "never", "update_dependencies_osv_dirs": [str(OSV)],
        "update_dependencies_packages": [f"{EXT}==1.1.0"], "update_dependencies_find_links": [str(box.wheels)],
        "update_dependencies_no_index": True, "update_dependencies_health_deadline": 20,
        "dihya_backend_services": services, "dihya_backend_supervisorctl": str(BIN / "supervisorctl"),
        "dihya_backend_supervisor_config": str(box.supervisor_config)}))
    assert box.installed() == "1.1.0"
    pid_after = box.supervisorctl("pid", "web")
    assert pid_before.isdigit() and pid_after.isdigit(), (pid_before, pid_after)
    assert (pid_after != pid_before) is value, (pid_before, pid_after)


def restart_services_new_code(box: Box, name: str, value: bool) -> None:
    # A graceful reload keeps the master and what it imported: under new code it is refused before anything restarts.
    pid = box.supervisorctl("pid", "web")
    pidfile = box.root() / "run" / "web.pid"
    pidfile.write_text(f"{pid}\n")
    services = [{"name": "web", "manager": "supervisor", "unit": "web", "pidfile": str(pidfile)}]
    proc = box.play("restart_services", name, str(value).lower(), {
        "restart_services_method": "reload", "dihya_backend_services": services,
        "dihya_backend_supervisorctl": str(BIN / "supervisorctl"), "dihya_backend_supervisor_config": str(box.supervisor_config)},
        "--check", "-v")
    if value:
        assert "cannot be restarted with the method reload" in " ".join(_failed(proc).split())
    else:
        assert "would send HUP to gunicorn master" in " ".join(_ok(proc).split())
    assert box.supervisorctl("pid", "web") == pid


EFFECTS: dict[str, t.Callable[[Box, str, bool], None]] = {
    check.__name__: check for check in (
        check_health_validate_certs, check_health_fail_on_unhealthy, operation_audit, operation_ipfs_export,
        operation_ipfs_push_pin, purge_temp_files_force,
        purge_temp_files_remove_empty_dirs, rgpd_fetch_remove_remote, rgpd_confirm_erase, rgpd_force, rgpd_ledger_table,
        rgpd_replay_unverified, rgpd_once_per_database, rotate_logs_compress, rotate_logs_dateext,
        rotate_logs_copytruncate, rotate_logs_force, update_dependencies_upgrade, update_dependencies_no_index,
        update_dependencies_allow_urls, update_dependencies_restart, restart_services_new_code)
}


def test_every_boolean_of_every_role_is_found():
    # The generated list is the one the parametrized cases use; these are the ones known today.
    assert {"rotate_logs_copytruncate", "rotate_logs_dateext", "rotate_logs_compress", "rgpd_confirm_erase"} <= set(BOOLEANS)
    assert set(EFFECTS) - set(BOOLEANS) == set(), "effect checks of variables that are no longer booleans of a role"


@pytest.mark.parametrize("value", ["false", "true"])
@pytest.mark.parametrize("name", sorted(BOOLEANS))
def test_boolean_given_as_a_string_has_its_effect(box, name, value):
    check = EFFECTS.get(name)
    if check is None:
        pytest.fail(f"{name} (role {BOOLEANS[name]}) is a boolean without an effect check: add one to EFFECTS")
    check(box, name, value == "true")


# ansible-core 2.19's role validation accepts y, t, n and f as booleans, but its bool filter knows only
# yes/no, on/off, 1/0 and true/false (any case): it reads y and t as false (with a deprecation warning).
# The operation role (every playbook of the collection) refuses them; a role included directly reads them wrong.
KNOWN_GAP = pytest.mark.xfail(strict=True, reason="ansible-core 2.19: the bool filter reads 'y' and 't' as false")
# The bool filter reads 'n' and 'f' as false only through a coercion ansible-core 2.19 deprecates (an error from 2.23):
# the run prints a deprecation warning, which the suite refuses. The collection's playbooks refuse these spellings.
DEPRECATED_GAP = pytest.mark.xfail(strict=True, reason="ansible-core 2.19 deprecates the bool filter's reading of 'n' and 'f'")


@pytest.mark.parametrize("spelling", ["no", "off", "0", "False", "NO", pytest.param("n", marks=DEPRECATED_GAP),
                                      pytest.param("f", marks=DEPRECATED_GAP), "yes", "on", "1", "TRUE", "Yes",
                                      pytest.param("y", marks=KNOWN_GAP), pytest.param("t", marks=KNOWN_GAP)])
def test_every_spelling_of_a_boolean_is_read_as_the_role_validation_reads_it(box, spelling):
    # -e NAME=<spelling> is a string; the role must read it as the validation at role entry does.
    value = spelling.lower() in ("yes", "on", "1", "true", "y", "t")
    lines = _logrotate_config(box, "rotate_logs_copytruncate", spelling)
    assert ("copytruncate" in lines, "create" in lines) == (value, not value), lines


def _first_boolean_of_each_role() -> list[tuple[str, str]]:
    firsts: dict[str, str] = {}
    for name, role in sorted(BOOLEANS.items()):
        firsts.setdefault(role, name)
    return sorted(firsts.items())


@pytest.mark.parametrize(("role", "name"), _first_boolean_of_each_role())
def test_a_value_that_is_not_a_boolean_is_refused_at_role_entry(box, role, name):
    variables = {"operation_name": "check_health"} if role == "operation" else {}
    output = _failed(box.play(role, name, "perhaps", variables, "--check"))
    assert f"argument '{name}' is of type str and we were unable to convert to bool" in " ".join(output.split()), output


@pytest.mark.parametrize(("role", "name", "spelling"), [
    (role, name, spelling) for role, name in _first_boolean_of_each_role() if role != "operation" for spelling in ("y", "t")
] + [("rotate_logs", "rotate_logs_force", spelling) for spelling in ("n", "f", "maybe")]
  + [("rotate_logs", "operation_audit", spelling) for spelling in ("y", "maybe")])
def test_the_playbooks_refuse_spellings_the_roles_would_misread(box, role, name, spelling):
    config = box.root() / "etc" / "logrotate.conf"
    config.unlink(missing_ok=True)
    output = _failed(box.play("operation", name, spelling, {"operation_name": role}))
    text = " ".join(output.split())
    # Not a boolean at all: the validation of the operation role's own options may refuse it first.
    assert (f'{name}="{spelling}": give a boolean as true or false' in text
            or f"argument '{name}' is of type str and we were unable to convert to bool" in text), output
    assert not config.exists()


# ---------------------------------------------------------------------------
# The lint checks that keep the class closed
# ---------------------------------------------------------------------------

BAD_READS = [
    "{{ x }}",
    "{% if x %}on{% endif %}",
    "{{ not x }}",
    "{{ x and y | bool }}",
    "{{ y | bool or x }}",
    "{{ 'a' if x else 'b' }}",
    "{{ [x] }}",
    "{{ x | default(true) }}",
    "{{ {'key': x} }}",
    "{% set z = x %}{{ z | bool }}",
    "{{ x | string | bool }}",
]
GOOD_READS = [
    "{{ x | bool }}",
    "{{ not x | bool }}",
    "{{ x | bool and y | bool }}",
    "{{ x | default(false) | bool }}",
    "{{ x | d(true) | bool }}",
    "{% if x | bool %}on{% endif %}",
    "{{ x is defined }}",
    "{{ 'a' if x | bool else 'b' }}",
    "{{ other }}",
]


@pytest.mark.parametrize("source", BAD_READS)
def test_lint_finds_a_boolean_read_without_bool(source):
    assert [name for name, dummy in check_role_booleans.unconverted(source, {"x", "y"})] == ["x"]


@pytest.mark.parametrize("source", GOOD_READS)
def test_lint_accepts_reads_through_bool(source):
    assert check_role_booleans.unconverted(source, {"x", "y"}) == []


@pytest.mark.parametrize(("key", "value"), [
    ("when", "x"), ("when", ["y | bool", "x"]), ("failed_when", "not x"), ("changed_when", "x and y | bool"),
    ("until", "x"), ("that", ["x"]), ("validate_certs", "{{ x }}"), ("msg", "{{ 'a' if x else 'b' }}"),
])
def test_lint_finds_reads_in_role_yaml(tmp_path, key, value):
    tasks = tmp_path / "roles" / "r" / "tasks"
    tasks.mkdir(parents=True)
    (tasks / "main.yml").write_text(yaml.safe_dump([{"name": "A task", "ansible.builtin.debug": {"msg": "hi"}, key: value}]))
    problems = check_role_booleans.check_yaml(tasks / "main.yml", {"x", "y"}, tmp_path)
    assert len(problems) == 1 and "boolean variable x" in problems[0] and "roles/r/tasks/main.yml:" in problems[0], problems


def test_lint_passes_on_the_collection():
    names, count, problems = check_role_booleans.check(ROOT)
    assert problems == []
    assert set(BOOLEANS) <= set(names) and count > 20


@pytest.mark.parametrize(("spec", "default", "drift"), [
    ({"type": "str", "default": True}, True, "is not type: bool"),
    ({"default": False}, False, "is not type: bool"),
    ({"type": "bool", "default": "false"}, "false", "not true or false"),
    ({"type": "bool", "default": False}, "no", "not true or false"),
])
def test_argument_specs_check_types_booleans(tmp_path, spec, default, drift):
    role = tmp_path / "r"
    (role / "meta").mkdir(parents=True)
    (role / "defaults").mkdir()
    (role / "meta" / "argument_specs.yml").write_text(yaml.safe_dump({"argument_specs": {"main": {"options": {"r_flag": spec}}}}))
    (role / "defaults" / "main.yml").write_text(yaml.safe_dump({"r_flag": default}))
    assert any(drift in problem for problem in check_argument_specs.check_role(role)), check_argument_specs.check_role(role)
