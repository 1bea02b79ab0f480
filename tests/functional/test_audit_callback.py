"""The dihya.ops.audit callback and the audit playbook, with real ansible-playbook runs on local hosts.

No demo fleet is needed: the plays run on hosts with a local connection, plus one host reached over SSH on a
loopback port nothing listens on, to get an unreachable result.
"""

from __future__ import annotations

import base64
import json
import os
import pathlib
import pwd
import secrets
import socket
import subprocess
import sys
from urllib.parse import quote

import pytest

ROOT = pathlib.Path(__file__).resolve().parents[2]
BIN = pathlib.Path(sys.executable).parent
PLAYBOOKS = pathlib.Path(__file__).resolve().parent / "playbooks"
COLLECTIONS = pathlib.Path(os.environ.get("ANSIBLE_COLLECTIONS_PATH", str(ROOT / ".cache" / "collections")).split(os.pathsep)[0])
sys.path.insert(0, str(COLLECTIONS))

from ansible_collections.dihya.ops.plugins.module_utils import _audit  # noqa: E402  pylint: disable=wrong-import-position

KEY = "audit-test-key-" + "k" * 24
TRACE = "4bf92f3577b34da6a3ce929d0e0e4736"
WITHHELD = "(message withheld: it contains a Vault value)"
TASKS = {
    "Say hello": ("ok", "ansible.builtin.debug"),
    "Change something": ("changed", "ansible.builtin.command"),
    "Never run": ("skipped", "ansible.builtin.debug"),
    "Use the secret quietly": ("ok", "ansible.builtin.set_fact"),
    "Fail with the secret": ("failed", "ansible.builtin.command"),
    "Fail in plain words": ("failed", "ansible.builtin.fail"),
    "Loop over items": ("ok", "ansible.builtin.debug"),
}


def closed_port() -> int:
    """A loopback port that the kernel just handed out and nothing listens on any more."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def clean_env() -> dict[str, str]:
    """The environment without Ansible or audit settings of the caller."""
    return {name: value for name, value in os.environ.items() if not name.startswith(("DIHYA_AUDIT_", "DIHYA_OPS_", "DIHYA_TRACE_ID", "ANSIBLE_"))}


def vault_encrypt(path: pathlib.Path, password_file: pathlib.Path) -> None:
    proc = subprocess.run([str(BIN / "ansible-vault"), "encrypt", "--vault-password-file", str(password_file), str(path)],
                          cwd=path.parent, env=clean_env(), capture_output=True, text=True, timeout=120, check=False)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert path.read_text().startswith("$ANSIBLE_VAULT;")


@pytest.fixture(name="scene")
def fixture_scene(tmp_path: pathlib.Path) -> dict:
    """A canary secret in a Vault-encrypted vars file, a Vault-encrypted key file, an inventory with an unreachable host."""
    canary = "canary-" + secrets.token_hex(12)
    password = tmp_path / "vault-pass"
    password.write_text(secrets.token_hex(16) + "\n")
    password.chmod(0o600)
    vault_vars = tmp_path / "vault.yml"
    vault_vars.write_text(f"audit_canary: {canary}\n")
    vault_encrypt(vault_vars, password)
    key_file = tmp_path / "audit-key"
    key_file.write_text(KEY + "\n")
    vault_encrypt(key_file, password)
    local = f"ansible_connection=local ansible_python_interpreter={sys.executable}"
    inventory = tmp_path / "hosts.ini"
    inventory.write_text(
        f"web-1 {local}\nweb-2 {local}\n"
        f"down ansible_connection=ssh ansible_host=127.0.0.1 ansible_port={closed_port()} ansible_user=nobody ansible_timeout=5 "
        "ansible_ssh_common_args='-o ConnectTimeout=5 -o StrictHostKeyChecking=no -o UserKnownHostsFile=/dev/null'\n"
    )
    return {"canary": canary, "password": password, "vault_vars": vault_vars, "key_file": key_file, "inventory": inventory,
            "log": tmp_path / "audit" / "audit.log", "tmp": tmp_path}


def ansible_env(scene: dict, **extra: str) -> dict[str, str]:
    env = clean_env()
    env.update(ANSIBLE_CALLBACKS_ENABLED="dihya.ops.audit", ANSIBLE_COLLECTIONS_PATH=str(COLLECTIONS), ANSIBLE_NOCOLOR="1",
               ANSIBLE_FORCE_COLOR="0", ANSIBLE_HOST_KEY_CHECKING="False", ANSIBLE_RETRY_FILES_ENABLED="False",
               DIHYA_AUDIT_LOG_PATH=str(scene["log"]))
    env.update(extra)
    return env


def playbook(scene: dict, name: str, *args: str, env: dict[str, str]) -> subprocess.CompletedProcess:
    argv = [str(BIN / "ansible-playbook"), "-i", str(scene["inventory"]), "--vault-password-file", str(scene["password"]),
            "-e", f"audit_vault_file={scene['vault_vars']}", str(PLAYBOOKS / name), *args]
    return subprocess.run(argv, cwd=ROOT, env=env, capture_output=True, text=True, timeout=300, check=False)


def events(log: pathlib.Path) -> list[dict]:
    return [json.loads(line) for line in log.read_text(encoding="utf-8").splitlines()]


def test_run_is_audited_per_task_and_host_without_secrets(scene):
    env = ansible_env(scene, DIHYA_AUDIT_KEY_FILE=str(scene["key_file"]), DIHYA_AUDIT_TRACE_ID=TRACE.upper())
    proc = playbook(scene, "audit_callback.yml", "-e", "awx_user_name=alice", "-e", "awx_job_id=42", "-e", "dihya_tenant=acme", env=env)
    output = proc.stdout + proc.stderr
    assert proc.returncode == 4, output  # the unreachable host
    assert "Traceback" not in output and "dihya.ops.audit" not in output, output

    text = scene["log"].read_text(encoding="utf-8")
    assert scene["canary"] not in text
    assert scene["canary"] not in output
    assert KEY not in text and KEY not in output
    assert oct(scene["log"].stat().st_mode & 0o777) == oct(0o600)
    records = events(scene["log"])

    assert {record["trace"]["id"] for record in records} == {TRACE}
    assert records[0]["event"]["action"] == "ansible.run.start"
    assert records[0]["labels"]["playbook"] == "audit_callback.yml"
    assert records[-1]["event"]["action"] == "ansible.run.end"
    assert [record["event"]["action"] for record in records[1:-1]] == ["ansible.task"] * (len(records) - 2)

    settings = _audit.AuditSettings(key=KEY.encode())
    for record in records:
        assert record["user"]["id"] == settings.pseudonym("alice")
        assert "alice" not in json.dumps(record)
        assert record["organization"]["id"] == "acme"
        assert record["labels"]["awx_job_id"] == "42"
        assert record["event"]["category"] == "ops"

    tasks = {(record["host"]["name"], record["labels"]["task"]): record for record in records[1:-1]}
    assert len(tasks) == len(records) - 2, "one event per task and host"
    expected = {(host, task): status for host in ("web-1", "web-2") for task, (status, dummy) in TASKS.items()}
    # debug runs on the controller; the first task that connects finds the host unreachable and drops it
    expected.update({("down", "Say hello"): "ok", ("down", "Change something"): "unreachable"})
    assert {key: record["labels"]["status"] for key, record in tasks.items()} == expected
    for (dummy, task), record in tasks.items():
        assert record["labels"]["module"] == TASKS[task][1]
        assert record["labels"]["play"] == "Audit callback scenario"
        assert record["event"]["outcome"] == ("failure" if record["labels"]["status"] in ("failed", "unreachable") else "success")
        assert isinstance(record["dihya"]["details"]["duration_ms"], int)
    assert tasks[("web-1", "Change something")]["dihya"]["details"]["changed"] is True
    assert tasks[("web-1", "Say hello")]["dihya"]["details"]["changed"] is False
    hidden = tasks[("web-1", "Fail with the secret")]["dihya"]["details"]
    assert "msg" not in hidden and hidden["ignore_errors"] is True
    assert tasks[("web-2", "Fail in plain words")]["dihya"]["details"]["msg"] == "Plain failure: 'quoted' ; rm -rf ../"
    assert "msg" in tasks[("down", "Change something")]["dihya"]["details"]

    recap = records[-1]["dihya"]["details"]["hosts"]
    assert recap["down"]["unreachable"] == 1
    assert recap["web-1"]["changed"] == 1 and recap["web-1"]["ignored"] == 2 and recap["web-1"]["skipped"] == 1
    assert records[-1]["event"]["outcome"] == "failure"

    report = _audit.verify(str(scene["log"]), KEY.encode())
    assert report.ok, report.error
    assert report.records == len(records)


def test_vault_value_in_failure_message_and_task_name_is_withheld(scene):
    env = ansible_env(scene, DIHYA_AUDIT_KEY=KEY, DIHYA_AUDIT_FLUSH_INTERVAL="0")
    proc = playbook(scene, "audit_callback_leak.yml", "--limit", "web-1", "-v", env=env)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    text = scene["log"].read_text(encoding="utf-8")
    assert scene["canary"] not in text
    assert KEY not in proc.stdout, "the key must not reach the environment of local tasks"
    assert "DIHYA_AUDIT_LOG_PATH" in proc.stdout
    task = [record for record in events(scene["log"]) if record["event"]["action"] == "ansible.task"]
    assert len(task) == 2
    assert task[0]["labels"]["status"] == "failed"
    assert task[0]["dihya"]["details"]["msg"] == WITHHELD
    assert task[0]["labels"]["task"] == "Fail about {{ audit_canary }}"
    assert _audit.verify(str(scene["log"]), KEY.encode()).ok


def shown_forms(canary: str) -> dict[str, str]:
    """What audit_callback_transforms.yml shows of the canary, computed here the way its filters compute it."""
    return {
        "slice": canary[3:17], "upper": canary.upper(), "upper_slice": canary[5:19].upper(), "reversed": canary[::-1],
        "b64": base64.b64encode(canary.encode()).decode(), "b64_slice": base64.b64encode(canary[1:13].encode()).decode(),
        "b64_basic_auth": base64.b64encode(f"admin:{canary}".encode()).decode(), "hex": canary.encode().hex(),
        "url": quote(f"token={canary}&x=1"), "json": json.dumps({"password": canary}),
    }


@pytest.mark.parametrize("form", ["slice", "b64_basic_auth", "upper_slice", "hex"])
def test_parts_and_encodings_of_a_vault_value_are_withheld(scene, form):
    env = ansible_env(scene, DIHYA_AUDIT_KEY=KEY)
    proc = playbook(scene, "audit_callback_transforms.yml", "--limit", "web-1", "-e", f"audit_form={form}", env=env)
    output = proc.stdout + proc.stderr
    assert proc.returncode == 0, output
    shown = shown_forms(scene["canary"])
    for name, value in shown.items():
        assert value in output, f"the playbook did not show the {name} form: the test would prove nothing"
    text = scene["log"].read_text(encoding="utf-8")
    for name, value in shown.items():
        for piece in (value, value[2:10], value[-10:-2], scene["canary"][4:12]):
            assert piece not in text, (name, piece)
    tasks = [record for record in events(scene["log"]) if record["event"]["action"] == "ansible.task"]
    assert [record["labels"]["status"] for record in tasks] == ["failed"] * 3
    assert {record["dihya"]["details"].get("msg") for record in tasks} <= {WITHHELD, "One or more items failed", "plain message"}
    assert tasks[1]["labels"]["task"] == "Task named after {{ audit_shown[audit_form] }}"
    assert _audit.verify(str(scene["log"]), KEY.encode()).ok


def test_context_from_options_and_extra_trace_id(scene):
    trace = secrets.token_hex(16)
    env = ansible_env(scene, DIHYA_AUDIT_KEY=KEY, DIHYA_AUDIT_USER="ci-bot", DIHYA_AUDIT_TENANT="globex", DIHYA_AUDIT_PSEUDONYMISE="false",
                      DIHYA_AUDIT_TRACE_ID="not-a-trace-id", DIHYA_AUDIT_FSYNC="always")
    proc = playbook(scene, "audit_callback.yml", "--limit", "web-1", "-e", f"dihya_trace_id={trace}", env=env)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    records = events(scene["log"])
    assert {record["trace"]["id"] for record in records} == {trace}
    assert {record["user"]["id"] for record in records} == {"ci-bot"}
    assert {record["organization"]["id"] for record in records} == {"globex"}
    assert len(records) == 2 + len(TASKS)
    assert records[0]["dihya"]["details"]["user_source"] == "caller"
    assert records[0]["dihya"]["details"]["trace_id_source"] == "extra_vars"

    # Without USER or LOGNAME in the environment, the user is the OS user of the process.
    env = ansible_env(scene, DIHYA_AUDIT_KEY=KEY, DIHYA_AUDIT_PSEUDONYMISE="false", DIHYA_AUDIT_TRACE_ID="not-a-trace-id")
    for name in ("USER", "LOGNAME", "DIHYA_OPS_USER", "DIHYA_TRACE_ID"):
        env.pop(name, None)
    again = playbook(scene, "audit_callback.yml", "--limit", "web-2", env=env)
    assert again.returncode == 0, again.stdout + again.stderr
    assert "the trace_id option='not-a-trace-id' is not a trace id" in again.stdout + again.stderr
    second = events(scene["log"])[len(records):]
    assert len({record["trace"]["id"] for record in second}) == 1 and second[0]["trace"]["id"] not in (trace, "not-a-trace-id")
    assert {record["user"]["id"] for record in second} == {pwd.getpwuid(os.geteuid()).pw_name}
    assert second[0]["dihya"]["details"]["user_source"] == "os"
    assert "organization" not in second[0] or not second[0]["organization"].get("id")
    report = _audit.verify(str(scene["log"]), KEY.encode())
    assert report.ok and report.records == len(records) + len(second)


def test_without_key_the_callback_warns_once_and_writes_nothing(scene):
    proc = playbook(scene, "audit_callback.yml", "--limit", "web-1", env=ansible_env(scene))
    output = proc.stdout + proc.stderr
    assert proc.returncode == 0, output
    assert output.count("no audit key is configured") == 1
    assert not scene["log"].exists()


def test_short_key_disables_the_callback(scene):
    proc = playbook(scene, "audit_callback.yml", "--limit", "web-1", env=ansible_env(scene, DIHYA_AUDIT_KEY="k3y-tiny"))
    output = proc.stdout + proc.stderr
    assert proc.returncode == 0, output
    assert "the audit callback is disabled" in output and "k3y-tiny" not in output
    assert not scene["log"].exists()


@pytest.mark.parametrize("log_path", ["audit.log", "{tmp}/audit/../audit.log", ""])
def test_callback_refuses_a_log_path_that_is_not_absolute(scene, log_path):
    work = scene["tmp"] / "work"
    (work / "audit").mkdir(parents=True)
    env = ansible_env(scene, DIHYA_AUDIT_KEY=KEY, DIHYA_AUDIT_LOG_PATH=log_path.format(tmp=work))
    argv = [str(BIN / "ansible-playbook"), "-i", str(scene["inventory"]), "--limit", "web-1", "--vault-password-file", str(scene["password"]),
            "-e", f"audit_vault_file={scene['vault_vars']}", str(PLAYBOOKS / "audit_callback.yml")]
    proc = subprocess.run(argv, cwd=work, env=env, capture_output=True, text=True, timeout=300, check=False)
    output = proc.stdout + proc.stderr
    assert proc.returncode == 0, output
    assert output.count("the audit callback is disabled") == 1 and "log_path must" in output, output
    assert sorted(path.name for path in work.rglob("*")) == ["audit"]


# audit_verify on logs that hold crash fragments, through ansible-playbook ------------------------------------------------

def crash_log(folder: pathlib.Path, variant: str) -> tuple[pathlib.Path, int]:
    """A log written by the engine, with the fragments a crash or a full disk leaves; (path, number of fragments)."""
    folder.mkdir()
    path = folder / "audit.log"
    settings = _audit.AuditSettings(key=KEY.encode())
    log = _audit.AuditLog(str(path), settings)

    def append(count: int) -> None:
        log.append([_audit.build_event(action="test.crash", category="ops", outcome="success", settings=settings,
                                       details={"n": index}) for index in range(count)])

    append(5)
    first = path.read_bytes().split(b"\n")[0]
    if variant == "fragment-200":
        path.write_bytes(path.read_bytes() + path.read_bytes()[:200])
        return path, 1
    if variant == "two-fragments":
        path.write_bytes(path.read_bytes() + first[:200] + b"\n" + first[:1])
        return path, 2
    # A crash, writes resumed, a rotation, a crash again in the new file.
    path.write_bytes(path.read_bytes() + first[:len(first) - 1])
    append(3)
    path.rename(folder / "audit.log.1")
    append(2)
    path.write_bytes(path.read_bytes() + first[:50])
    return path, 2


@pytest.mark.parametrize("variant", ["fragment-200", "two-fragments", "resumed-rotated-and-tail"])
def test_audit_verify_accepts_crash_fragments_without_deprecation(tmp_path, variant):
    log, fragments = crash_log(tmp_path / "logs", variant)
    before = {name.name: name.read_bytes() for name in log.parent.iterdir()}
    result_file = tmp_path / "registered.json"
    env = clean_env()
    env.update(ANSIBLE_COLLECTIONS_PATH=str(COLLECTIONS), ANSIBLE_NOCOLOR="1", ANSIBLE_FORCE_COLOR="0",
               ANSIBLE_DEPRECATION_WARNINGS="True", ANSIBLE_LOCALHOST_WARNING="False", ANSIBLE_INVENTORY_UNPARSED_WARNING="False")
    argv = [str(BIN / "ansible-playbook"), "-i", "localhost,", "-c", "local", "-e", f"ansible_python_interpreter={sys.executable}",
            "-e", json.dumps({"audit_log": str(log), "audit_key": KEY, "audit_fragments": fragments, "audit_result_file": str(result_file)}),
            str(PLAYBOOKS / "audit_verify_crash.yml")]
    proc = subprocess.run(argv, cwd=ROOT, env=env, capture_output=True, text=True, timeout=300, check=False)
    output = proc.stdout + proc.stderr
    assert proc.returncode == 0, output
    assert "DEPRECATION" not in output and "deprecat" not in output.lower(), output
    assert "Module failed" not in output and "Event.msg" not in output, output
    assert output.count("truncated record (crash)") >= fragments, output  # shown as warnings (Ansible shows a repeated one once)
    assert KEY not in output
    registered = json.loads(result_file.read_text())
    assert len(registered) == 2
    for result in registered:
        assert result["ok"] is True and result["failed"] is False and len(result["notes"]) == fragments
        assert all(note["reason"].startswith("truncated record (crash)") for note in result["notes"])
    assert {name.name: name.read_bytes() for name in log.parent.iterdir() if not name.name.endswith(".lock")} == {
        name: data for name, data in before.items() if not name.endswith(".lock")}


# The audit operation: playbooks/audit.yml ---------------------------------------------------------------------------------

@pytest.fixture(name="backend")
def fixture_backend(tmp_path: pathlib.Path) -> dict:
    log = tmp_path / "backend" / "audit" / "audit.log"
    inventory = tmp_path / "inventory.yml"
    inventory.write_text(json.dumps({"dihya_backend": {"hosts": {"backend-1": {}, "backend-2": {}}, "vars": {
        "ansible_connection": "local", "ansible_python_interpreter": sys.executable,
        "dihya_backend_audit_log": str(log), "dihya_backend_audit_key": KEY}}}))
    return {"log": log, "inventory": inventory, "tmp": tmp_path}


def run_audit(backend: dict, context: dict | None = None, *args: str) -> subprocess.CompletedProcess:
    """Run playbooks/audit.yml, with ``context`` written to a JSON file given as audit_context_file (as run_ops does)."""
    extra: list[str] = []
    if context is not None:
        path = backend["tmp"] / "context.json"
        path.write_text(json.dumps(context))
        extra = ["-e", f"audit_context_file={path}"]
    env = clean_env()
    env.update(ANSIBLE_COLLECTIONS_PATH=str(COLLECTIONS), ANSIBLE_NOCOLOR="1", ANSIBLE_FORCE_COLOR="0")
    argv = [str(BIN / "ansible-playbook"), "-i", str(backend["inventory"]), str(ROOT / "playbooks" / "audit.yml"), *extra, *args]
    return subprocess.run(argv, cwd=ROOT, env=env, capture_output=True, text=True, timeout=300, check=False)


def test_audit_playbook_records_hostile_values_verbatim_once(backend):
    hostile = {
        "user": "o'brien\"; rm -rf / #",
        "tenant": "acme'; DROP TABLE tenants; --",
        "route": "/api/../../etc/passwd?x=$(id)",
        "action": "invoice.export; rm -rf ../ `id` {{ lookup('ansible.builtin.pipe', 'touch pwned') }}",
        "outcome": "denied",
        "details": {"file": "../../secret \"quoted\"", "count": 3, "template": "{{ lookup('ansible.builtin.env', 'HOME') }}"},
        "labels": {"source": "{% raw %}x{% endraw %}"},
        "trace_id": TRACE,
    }
    proc = run_audit(backend, hostile)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    records = events(backend["log"])
    assert len(records) == 1  # run once, whatever the number of backend hosts
    record = records[0]
    assert record["event"]["action"] == hostile["action"]
    assert record["event"]["outcome"] == "denied"
    assert record["event"]["category"] == "audit"
    assert record["organization"]["id"] == hostile["tenant"]
    assert record["url"]["path"] == hostile["route"]
    assert record["dihya"]["details"] == hostile["details"]
    assert record["labels"] == hostile["labels"]
    assert record["trace"]["id"] == TRACE
    assert record["user"]["id"] == _audit.AuditSettings(key=KEY.encode()).pseudonym(hostile["user"])
    assert KEY not in proc.stdout + proc.stderr
    assert f"trace id {TRACE}" in proc.stdout
    assert _audit.verify(str(backend["log"]), KEY.encode()).ok
    assert backend["log"].parent.stat().st_mode & 0o777 == 0o700
    assert not (ROOT / "pwned").exists() and not (backend["tmp"] / "pwned").exists()


def test_audit_playbook_from_extra_variables(backend):
    backend["log"].parent.mkdir(parents=True)
    backend["log"].parent.chmod(0o750)
    proc = run_audit(backend, None, "-e", "audit_action=login", "-e", "audit_user=alice", "-e", "audit_tenant=globex",
                     "-e", "audit_route=/login", "-e", "audit_category=security", "-e", "audit_outcome=failure")
    assert proc.returncode == 0, proc.stdout + proc.stderr
    record = events(backend["log"])[0]
    assert (record["event"]["action"], record["event"]["category"], record["event"]["outcome"]) == ("login", "security", "failure")
    assert record["organization"]["id"] == "globex" and record["url"]["path"] == "/login"
    assert "Recorded login (failure) as record 1" in proc.stdout
    assert backend["log"].parent.stat().st_mode & 0o777 == 0o750, "an existing folder is left as it is"


@pytest.mark.parametrize(("context", "args", "message"), [
    ({"user": "alice"}, (), "The action is required"),
    ({"user": "alice", "action": "   "}, (), "The action is required"),
    (None, ("-e", "audit_user=alice"), "The action is required"),
    ({"action": "login"}, (), "The user is required"),
    ({"user": "alice", "action": "login", "tenant": ["acme"]}, (), "must be strings when given"),
    ({"user": "alice", "action": "login", "outcome": "maybe"}, (), "The outcome must be one of success, failure, denied"),
    ({"user": "alice", "action": "login", "category": "misc"}, (), "The category must be one of audit, security, rgpd, ops"),
    ({"user": "alice", "action": "login", "details": ["not", "a", "dict"]}, (), "details and labels must be dictionaries"),
])
def test_audit_playbook_refuses_bad_context_clearly(backend, context, args, message):
    proc = run_audit(backend, context, *args)
    assert proc.returncode != 0
    assert message in proc.stdout, proc.stdout + proc.stderr
    assert not backend["log"].exists()


def test_audit_playbook_needs_the_backend_model(backend, tmp_path):
    inventory = tmp_path / "bare.yml"
    inventory.write_text(json.dumps({"dihya_backend": {"hosts": {"backend-1": {}}, "vars": {
        "ansible_connection": "local", "ansible_python_interpreter": sys.executable}}}))
    proc = run_audit(dict(backend, inventory=inventory), {"user": "alice", "action": "login"})
    assert proc.returncode != 0
    assert "dihya_backend_audit_log (absolute path of the backend's audit log) must be set" in proc.stdout, proc.stdout + proc.stderr
