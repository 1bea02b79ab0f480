# Copyright (c) Dihya ops maintainers
# GNU General Public License v3.0+ (see LICENSES/GPL-3.0-or-later.txt or https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later

"""Tests of the dihya.ops.audit callback: its helpers, and its event handlers driven with small stand-in objects.

The real ansible-playbook runs are in tests/functional/test_audit_callback.py.
"""

from __future__ import annotations

import base64
import hashlib
import json
import os
import subprocess
import sys
import time
import types
from pathlib import Path
from urllib.parse import quote, quote_plus

import pytest

from ansible.parsing.dataloader import DataLoader
from ansible.parsing.vault import VaultSecret, VaultSecretsContext

from ansible_collections.dihya.ops.plugins.callback import audit
from ansible_collections.dihya.ops.plugins.module_utils import _audit, _ids
from ansible_collections.dihya.ops.plugins.plugin_utils import _audit_context, _audit_redact

KEY = "unit-test-audit-key-0123456789"
PASSWORD = "unit-test-vault-password"


# Helpers ------------------------------------------------------------------------------------------------------------------

def test_resolve_context_prefers_awx_then_the_caller_then_the_os_user():
    awx = _audit_context.resolve_context({"awx_user_name": "alice", "tower_user_name": "bob", "awx_job_id": 7, "tower_job_template_name": "Deploy",
                                          "dihya_tenant": "acme"}, user="ci", tenant="globex", os_user="root", environ={})
    assert (awx["user"], awx["user_source"], awx["tenant"]) == ("alice", "awx", "acme")
    assert awx["labels"] == {"awx_job_id": "7", "awx_job_template": "Deploy"}
    tower = _audit_context.resolve_context({"tower_user_name": "bob"}, os_user="root", environ={})
    assert (tower["user"], tower["user_source"]) == ("bob", "awx")
    option = _audit_context.resolve_context({"awx_user_name": "  "}, user="ci", tenant="globex", os_user="root", environ={})
    assert (option["user"], option["user_source"], option["tenant"]) == ("ci", "caller", "globex")
    runner = _audit_context.resolve_context({}, user="ci", os_user="root", environ={"DIHYA_OPS_USER": "runner-job"})
    assert (runner["user"], runner["user_source"]) == ("runner-job", "caller")
    plain = _audit_context.resolve_context(None, os_user="root", environ={})
    assert (plain["user"], plain["user_source"], plain["tenant"], plain["labels"]) == ("root", "os", None, {})
    assert _audit_context.resolve_context(None, environ={})["user"]


def test_resolve_context_trusts_a_declared_user_only_where_the_controller_says_so():
    """dihya_ops_user names the user only with DIHYA_OPS_TRUST_DECLARED_USER; the tenant variables are read as the action reads them."""
    untrusted = _audit_context.resolve_context({"dihya_ops_user": "carol", "dihya_ops_tenant": "initech", "dihya_tenant": "acme"},
                                               os_user="root", environ={})
    assert (untrusted["user"], untrusted["user_source"], untrusted["tenant"]) == ("root", "os", "initech")
    assert any("dihya_ops_user is ignored" in warning for warning in untrusted["warnings"])
    trusted = {"DIHYA_OPS_TRUST_DECLARED_USER": "true"}
    ops = _audit_context.resolve_context({"dihya_ops_user": "carol"}, os_user="root", environ=trusted)
    assert (ops["user"], ops["user_source"], ops["warnings"]) == ("carol", "declared", [])
    caller = _audit_context.resolve_context({"dihya_ops_user": "carol"}, user="ci", os_user="root", environ=trusted)
    assert (caller["user"], caller["user_source"]) == ("ci", "caller")
    awx = _audit_context.resolve_context({"awx_user_name": "alice", "dihya_ops_user": "carol"}, os_user="root", environ=trusted)
    assert (awx["user"], awx["user_source"]) == ("alice", "awx")


def test_resolve_context_trace_id_sources_and_bad_values():
    trace = "4BF92F3577B34DA6A3CE929D0E0E4736"
    extra = _audit_context.resolve_context({"dihya_trace_id": trace}, trace_id="0af7651916cd43dd8448eb211c80319c", os_user="x", environ={})
    assert (extra["trace_id"], extra["trace_id_source"], extra["warnings"]) == (trace.lower(), "extra_vars", [])
    option = _audit_context.resolve_context({}, trace_id="0af7651916cd43dd8448eb211c80319c", os_user="x", environ={})
    assert (option["trace_id"], option["trace_id_source"]) == ("0af7651916cd43dd8448eb211c80319c", "option")
    bad = _audit_context.resolve_context({"dihya_trace_id": "../../etc"}, trace_id="0" * 32, os_user="x", environ={})
    assert bad["trace_id_source"] == "run" and _ids.is_trace_id(bad["trace_id"]) and bad["trace_id"] != "0" * 32
    assert len(bad["warnings"]) == 2
    assert "dihya_trace_id='../../etc' is not a trace id" in bad["warnings"][0] and "the trace_id option" in bad["warnings"][1]


def test_resolve_context_leaves_out_a_malformed_value_with_a_warning():
    found = _audit_context.resolve_context({"dihya_ops_tenant": "../acme", "awx_user_name": "alice\nroot"}, tenant="globex",
                                           os_user="root", environ={})
    assert (found["user"], found["user_source"], found["tenant"]) == ("root", "os", "globex")
    assert any("dihya_ops_tenant='../acme' is not a tenant name" in warning for warning in found["warnings"])
    assert any("awx_user_name holds a control character" in warning for warning in found["warnings"])


@pytest.mark.parametrize(("kind", "result", "status"), [
    ("ok", {}, "ok"), ("ok", {"changed": True}, "changed"), ("failed", {"changed": True}, "failed"),
    ("skipped", {}, "skipped"), ("unreachable", {}, "unreachable"),
])
def test_task_status(kind, result, status):
    assert _audit_context.task_status(kind, result) == status


def test_safe_message_truncates_converts_and_withholds():
    assert _audit_redact.safe_message(None, ()) is None
    assert _audit_redact.safe_message("plain 'text' ; rm -rf ../", ()) == "plain 'text' ; rm -rf ../"
    long = _audit_redact.safe_message("x" * 2000, ())
    assert len(long) == _audit_redact.MSG_LIMIT and long.endswith("...")
    assert _audit_redact.safe_message(["a", 1], ()) == "['a', 1]"
    assert _audit_redact.safe_message("the password is hunter2-secret", {"hunter2-secret"}) == _audit_redact.WITHHELD


def test_raw_name():
    assert _audit_context.raw_name(types.SimpleNamespace(_ds={"name": "Use {{ x }}"})) == "Use {{ x }}"
    assert _audit_context.raw_name(types.SimpleNamespace(_ds={"debug": {}})) is None
    assert _audit_context.raw_name(object()) is None


@pytest.fixture(name="vault")
def fixture_vault(tmp_path, monkeypatch):
    """A loader (and the run's vault context) holding the vault password, and a helper that encrypts a file with it."""
    password = tmp_path / "vault-pass"
    password.write_text(PASSWORD + "\n")
    loader = DataLoader()
    secrets = [("default", VaultSecret(PASSWORD.encode()))]
    loader.set_vault_secrets(secrets)
    monkeypatch.setattr(VaultSecretsContext, "_current", VaultSecretsContext(secrets))

    def encrypt(path: Path) -> Path:
        proc = subprocess.run([str(Path(sys.executable).parent / "ansible-vault"), "encrypt", "--vault-password-file", str(password), str(path)],
                              cwd=tmp_path, capture_output=True, text=True, timeout=120, check=False, env={"PATH": "/usr/bin:/bin"})
        assert proc.returncode == 0, proc.stdout + proc.stderr
        return path

    return types.SimpleNamespace(loader=loader, encrypt=encrypt, tmp=tmp_path)


def test_read_key_from_option_file_and_vault_file(vault):
    assert _audit_context.read_key("  a-key-of-enough-length \n", "/nonexistent") == b"a-key-of-enough-length"
    assert _audit_context.read_key(None, None) is None
    plain = vault.tmp / "plain-key"
    plain.write_text(KEY + "\n")
    assert _audit_context.read_key(None, str(plain)) == KEY.encode()
    empty = vault.tmp / "empty-key"
    empty.write_text("\n")
    assert _audit_context.read_key(None, str(empty)) is None
    encrypted = vault.tmp / "vault-key"
    encrypted.write_text(KEY + "\n")
    vault.encrypt(encrypted)
    assert _audit_context.read_key(None, str(encrypted), vault.loader) == KEY.encode()
    with pytest.raises(_audit.AuditError, match="cannot read the key file"):
        _audit_context.read_key(None, str(vault.tmp / "missing"))
    with pytest.raises(_audit.AuditError, match="cannot read the key file") as caught:
        _audit_context.read_key(None, str(encrypted), DataLoader())
    assert KEY not in str(caught.value)


def test_vault_plaintexts_from_encrypted_files_and_inline_values(vault):
    encrypted = vault.tmp / "vault.yml"
    encrypted.write_text("vault_token: token-0123456789\nvault_short: abc\nnested:\n  - deep-secret-value\n")
    vault.encrypt(encrypted)
    inline_source = vault.tmp / "plain.yml"
    inline_source.write_text("not_secret: visible-value\n")
    cache_data = vault.loader.load_from_file(str(encrypted), unsafe=True)
    inline = vault.loader.load(f"inline_secret: !vault |\n  {vault.loader._vault.encrypt('inline-secret-42').decode().replace(chr(10), chr(10) + '  ')}\n")
    broken = vault.loader.load("broken: !vault |\n  $ANSIBLE_VAULT;1.1;AES256\n  6162\n")
    found = _audit_redact.vault_plaintexts({str(encrypted): cache_data, str(inline_source): {"not_secret": "visible-value"},
                                            "/nonexistent": "ignored-value"},
                                           [inline, broken, {"deep": [[["x"]]] * 70}, ("tuple-not-secret",)])
    assert found == {"token-0123456789", "deep-secret-value", "inline-secret-42"}


# The callback, driven with stand-ins -------------------------------------------------------------------------------------

class Display:
    verbosity = 0

    def __init__(self):
        self.warnings = []

    def warning(self, message):
        self.warnings.append(message)


class Host:
    def __init__(self, name):
        self.name = name

    def get_name(self):
        return self.name


class Task:
    def __init__(self, name, action="ansible.builtin.debug", no_log=False, raw=None):
        self._uuid = name
        self.name = name
        self.action = action.rsplit(".", 1)[-1]
        self.resolved_action = action
        self.no_log = no_log
        self._ds = {"name": raw or name}

    def get_name(self):
        return self.name


class Result:
    def __init__(self, host, task, data, fields=None):
        self.host = Host(host)
        self.task = task
        self.result = data
        self._return_data = data
        self.task_fields = fields if fields is not None else {"name": task.name, "no_log": task.no_log}


def make_callback(monkeypatch, tmp_path, **options):
    settings = {"log_path": str(tmp_path / "logs" / "audit.log"), "key": KEY, "key_file": None, "pseudonym_key": None, "pseudonym_key_file": None,
                "pseudonymise": True, "fsync": "batch", "flush_interval": 0.0,
                "user": None, "tenant": None, "trace_id": None}
    settings.update(options)
    callback = audit.CallbackModule(display=Display())
    monkeypatch.setattr(callback, "get_option", settings.get)
    return callback


def playbook(extra_vars=None, loader=None, file_name="/srv/playbooks/site.yml"):
    manager = types.SimpleNamespace(extra_vars=extra_vars or {}, _inventory=types.SimpleNamespace(hosts={}, groups={}))
    play = types.SimpleNamespace(get_variable_manager=lambda: manager)
    return types.SimpleNamespace(_loader=loader or DataLoader(), _file_name=file_name, get_plays=lambda: [play])


def stats(**hosts):
    return types.SimpleNamespace(processed=dict.fromkeys(hosts, 1), summarize=lambda host: hosts[host])


def recap(**counts):
    base = dict(ok=0, failures=0, unreachable=0, changed=0, skipped=0, rescued=0, ignored=0)
    base.update(counts)
    return base


def read(path):
    return [json.loads(line) for line in Path(path).read_text().splitlines()]


def test_a_whole_run_is_recorded(monkeypatch, tmp_path):
    callback = make_callback(monkeypatch, tmp_path, tenant="globex")
    callback.v2_playbook_on_start(playbook({"awx_user_name": "alice", "awx_job_id": "9"}))
    callback.v2_playbook_on_play_start(types.SimpleNamespace(get_name=lambda: "Deploy", _ds={"name": "Deploy"}))
    hello, secret, boom = Task("Say hello"), Task("Use secret", "ansible.builtin.command", no_log=True), Task("Boom", "ansible.builtin.fail")
    callback.v2_playbook_on_task_start(hello, False)
    callback.v2_runner_on_start(Host("web-1"), hello)
    callback.v2_runner_on_ok(Result("web-1", hello, {"changed": False, "msg": "hello"}))
    callback.v2_runner_on_skipped(Result("web-2", hello, {"skipped": True}))
    callback.v2_playbook_on_task_start(secret, False)
    callback.v2_runner_on_failed(Result("web-1", secret, {"msg": "sensitive output", "censored": "hidden"}), ignore_errors=True)
    callback.v2_runner_on_unreachable(Result("web-2", secret, {"msg": "Failed to connect"}))
    callback.v2_playbook_on_handler_task_start(boom)
    callback.v2_runner_on_failed(Result("web-1", boom, {"msg": "it broke", "changed": True}))
    callback.v2_playbook_on_stats(stats(**{"web-1": recap(ok=1, failures=1, ignored=1), "web-2": recap(unreachable=1, skipped=1)}))

    records = read(tmp_path / "logs" / "audit.log")
    assert (tmp_path / "logs").stat().st_mode & 0o777 == 0o700
    assert [record["event"]["action"] for record in records] == ["ansible.run.start"] + ["ansible.task"] * 5 + ["ansible.run.end"]
    assert len({record["trace"]["id"] for record in records}) == 1
    assert {record["user"]["id"] for record in records} == {_audit.AuditSettings(key=KEY.encode()).pseudonym("alice")}
    assert {record["organization"]["id"] for record in records} == {"globex"}
    start = records[0]
    assert start["labels"] == {"awx_job_id": "9", "playbook": "site.yml"}
    assert start["dihya"]["details"] == {"check_mode": False, "user_source": "awx", "trace_id_source": "run"}
    tasks = records[1:-1]
    assert [(r["host"]["name"], r["labels"]["task"], r["labels"]["status"], r["event"]["outcome"]) for r in tasks] == [
        ("web-1", "Say hello", "ok", "success"), ("web-2", "Say hello", "skipped", "success"),
        ("web-1", "Use secret", "failed", "failure"), ("web-2", "Use secret", "unreachable", "failure"),
        ("web-1", "Boom", "failed", "failure")]
    assert tasks[0]["dihya"]["details"]["changed"] is False and "duration_ms" in tasks[0]["dihya"]["details"]
    assert "duration_ms" not in tasks[1]["dihya"]["details"]
    assert tasks[2]["dihya"]["details"] == {"changed": False, "ignore_errors": True}
    assert "msg" not in tasks[3]["dihya"]["details"]
    assert tasks[4]["dihya"]["details"] == {"changed": True, "ignore_errors": False, "msg": "it broke"}
    assert all(record["labels"]["play"] == "Deploy" for record in tasks)
    assert tasks[4]["labels"]["module"] == "ansible.builtin.fail"
    assert "sensitive output" not in (tmp_path / "logs" / "audit.log").read_text()
    end = records[-1]
    assert end["event"]["outcome"] == "failure" and end["dihya"]["details"]["hosts"]["web-2"]["unreachable"] == 1
    assert _audit.verify(str(tmp_path / "logs" / "audit.log"), KEY.encode()).ok
    assert not callback._display.warnings


@pytest.mark.parametrize("flags", [
    {"fields": {"no_log": True}},
    {"fields": {"no_log": "{{ hide }}"}},
    {"data": {"msg": "x", "_ansible_no_log": True}},
    {"data": {"msg": "x", "results": [{"item": 1}, {"censored": "hidden"}]}},
])
def test_no_log_in_any_form_hides_the_message(monkeypatch, tmp_path, flags):
    callback = make_callback(monkeypatch, tmp_path, fsync="always", pseudonymise=False, user="ci-bot", trace_id="0af7651916cd43dd8448eb211c80319c")
    callback.v2_playbook_on_start(playbook())
    task = Task("Quiet")
    data = flags.get("data", {"msg": "x"})
    callback.v2_runner_on_failed(Result("web-1", task, data, fields=flags.get("fields", {"name": "Quiet"})))
    records = read(tmp_path / "logs" / "audit.log")
    assert "msg" not in records[-1]["dihya"]["details"]
    assert records[-1]["user"]["id"] == "ci-bot"
    assert records[-1]["trace"]["id"] == "0af7651916cd43dd8448eb211c80319c"


def test_vault_values_in_names_and_messages_are_withheld(monkeypatch, tmp_path, vault):
    encrypted = vault.tmp / "vault.yml"
    encrypted.write_text("vault_token: token-0123456789\n")
    vault.encrypt(encrypted)
    vault.loader.load_from_file(str(encrypted), cache="vaulted", unsafe=True)
    callback = make_callback(monkeypatch, tmp_path)
    callback.v2_playbook_on_start(playbook(loader=vault.loader))
    callback.v2_playbook_on_play_start(types.SimpleNamespace(get_name=lambda: "Play token-0123456789", _ds={"name": "Play token-0123456789"}))
    templated = Task("Use token-0123456789", raw="Use {{ vault_token }}")
    callback.v2_runner_on_failed(Result("web-1", templated, {"msg": "bad token-0123456789"}))
    tagged = vault.loader.load(f"v: !vault |\n  {vault.loader._vault.encrypt('tagged-value-777').decode().replace(chr(10), chr(10) + '  ')}\n")["v"]
    callback.v2_runner_on_failed(Result("web-1", Task("Tagged"), {"msg": tagged}))
    callback.v2_playbook_on_stats(stats(**{"web-1": recap(failures=2)}))
    text = (tmp_path / "logs" / "audit.log").read_text()
    assert "token-0123456789" not in text and "tagged-value-777" not in text
    records = read(tmp_path / "logs" / "audit.log")
    assert records[1]["labels"]["task"] == "Use {{ vault_token }}"
    assert records[1]["labels"]["play"] == "(name withheld: it contains a Vault value)"
    assert records[1]["dihya"]["details"]["msg"] == _audit_redact.WITHHELD
    assert records[2]["dihya"]["details"]["msg"] == _audit_redact.WITHHELD


def test_key_files_in_vault_are_decrypted_with_the_run_secrets(monkeypatch, tmp_path, vault):
    key_file = vault.tmp / "audit-key"
    key_file.write_text(KEY)
    vault.encrypt(key_file)
    pseudonym_file = vault.tmp / "pseudonym-key"
    pseudonym_file.write_text("pseudonym-key-of-the-backend\n")
    vault.encrypt(pseudonym_file)
    monkeypatch.setenv("DIHYA_AUDIT_KEY", KEY)
    monkeypatch.setenv("DIHYA_AUDIT_PSEUDONYM_KEY", "from-the-environment")
    callback = make_callback(monkeypatch, tmp_path, key=None, key_file=str(key_file), pseudonym_key_file=str(pseudonym_file), user="alice")
    callback.v2_playbook_on_start(playbook(loader=vault.loader))
    callback.v2_playbook_on_stats(stats())
    assert "DIHYA_AUDIT_KEY" not in os.environ and "DIHYA_AUDIT_PSEUDONYM_KEY" not in os.environ
    assert _audit.verify(str(tmp_path / "logs" / "audit.log"), KEY.encode()).records == 2
    expected = _audit.AuditSettings(key=KEY.encode(), pseudonym_key=b"pseudonym-key-of-the-backend").pseudonym("alice")
    assert {record["user"]["id"] for record in read(tmp_path / "logs" / "audit.log")} == {expected}


@pytest.mark.parametrize(("options", "message"), [
    ({"key": None}, "no audit key is configured"),
    ({"key": "short"}, "the audit key must be at least 16 bytes long"),
    ({"fsync": "sometimes"}, "unknown fsync mode"),
    ({"key": None, "key_file": "/nonexistent/key"}, "cannot read the key file /nonexistent/key"),
])
def test_bad_settings_disable_the_callback_with_one_warning(monkeypatch, tmp_path, options, message):
    callback = make_callback(monkeypatch, tmp_path, **options)
    callback.v2_playbook_on_start(playbook())
    callback.v2_playbook_on_start(playbook())
    assert callback.disabled
    assert len(callback._display.warnings) == 1 and message in callback._display.warnings[0]
    assert "short" not in callback._display.warnings[0].replace(message, "")
    callback.v2_runner_on_ok(Result("web-1", Task("t"), {}))
    callback.v2_playbook_on_stats(stats())
    callback._flush_at_exit()
    assert not (tmp_path / "logs").exists()


def test_unwritable_log_disables_the_callback(monkeypatch, tmp_path):
    blocker = tmp_path / "file"
    blocker.write_text("")
    callback = make_callback(monkeypatch, tmp_path, log_path=str(blocker / "audit.log"))
    callback.v2_playbook_on_start(playbook())
    assert callback.disabled and "the audit callback is disabled" in callback._display.warnings[0]


def test_write_errors_and_bad_events_warn_once(monkeypatch, tmp_path):
    callback = make_callback(monkeypatch, tmp_path, tenant="t" * 2000, trace_id="bad")
    callback.v2_playbook_on_start(playbook())
    assert any("trace_id option" in warning for warning in callback._display.warnings)
    assert any("tenant option of the dihya.ops.audit callback='tttt" in warning and "is not a tenant name" in warning
               for warning in callback._display.warnings)
    callback = make_callback(monkeypatch, tmp_path / "second")
    callback.v2_playbook_on_start(playbook(extra_vars={"dihya_tenant": "acme"}))
    log = tmp_path / "second" / "logs" / "audit.log"
    log.unlink()
    log.mkdir()
    callback.v2_runner_on_ok(Result("web-1", Task("t"), {}))
    callback.v2_runner_on_ok(Result("web-2", Task("t"), {}))
    callback._flush()
    callback._event("ansible.task", "success", {}, {})
    callback._flush()
    assert len([warning for warning in callback._display.warnings if "could not be written" in warning]) == 1


def test_events_left_in_the_buffer_are_written_at_exit(monkeypatch, tmp_path):
    callback = make_callback(monkeypatch, tmp_path)
    callback.v2_playbook_on_start(playbook())
    callback.v2_runner_on_ok(Result("web-1", Task("t"), {"changed": True}))
    callback._flush_at_exit()
    records = read(tmp_path / "logs" / "audit.log")
    assert records[-1]["labels"]["status"] == "changed"
    monkeypatch.setattr(callback, "_pid", -1)
    callback.v2_runner_on_ok(Result("web-1", Task("u"), {}))
    callback._flush_at_exit()
    assert len(read(tmp_path / "logs" / "audit.log")) == len(records)


def test_playbook_without_plays_or_variable_manager(monkeypatch, tmp_path):
    callback = make_callback(monkeypatch, tmp_path)
    callback.v2_playbook_on_start(types.SimpleNamespace(_loader=None, _file_name=None, get_plays=list))
    callback.v2_playbook_on_stats(stats())
    records = read(tmp_path / "logs" / "audit.log")
    assert [record["labels"] for record in records] == [{"playbook": ""}, {"playbook": ""}]
    assert len(records) == 2


def test_a_timer_writes_buffered_events_within_the_flush_interval(monkeypatch, tmp_path):
    callback = make_callback(monkeypatch, tmp_path, flush_interval=0.05)
    callback.v2_playbook_on_start(playbook())
    log = tmp_path / "logs" / "audit.log"
    assert len(read(log)) == 1
    task = Task("t")
    callback.v2_playbook_on_task_start(task, False)
    callback.v2_runner_on_ok(Result("web-1", task, {}))
    callback.v2_runner_on_ok(Result("web-2", task, {}))
    callback.v2_playbook_on_task_start(Task("u"), False)
    assert len(read(log)) == 1, "with a flush interval, a new task does not write"
    deadline = time.monotonic() + 10
    while len(read(log)) < 3 and time.monotonic() < deadline:
        time.sleep(0.02)
    assert len(read(log)) == 3
    assert callback._timer is None
    callback.v2_runner_on_ok(Result("web-1", Task("u"), {}))
    callback.v2_playbook_on_stats(stats())
    assert len(read(log)) == 5 and callback._timer is None
    assert _audit.verify(str(log), KEY.encode()).ok


def test_without_flush_interval_each_task_start_writes(monkeypatch, tmp_path):
    callback = make_callback(monkeypatch, tmp_path)
    callback.v2_playbook_on_start(playbook())
    task = Task("t")
    callback.v2_runner_on_ok(Result("web-1", task, {}))
    callback.v2_playbook_on_task_start(Task("u"), False)
    assert len(read(tmp_path / "logs" / "audit.log")) == 2
    assert callback._timer is None


@pytest.mark.parametrize(("log_path", "message"), [
    ("audit.log", "log_path must be an absolute path (starting with /), not 'audit.log'"),
    ("./logs/audit.log", "log_path must be an absolute path (starting with /), not './logs/audit.log'"),
    ("~no-such-user-here/audit.log", "log_path must be an absolute path"),
    ("", "log_path must be a non-empty absolute path"),
    ("{tmp}/logs/../audit.log", "log_path must not contain a .. component"),
    ("{tmp}/logs/audit\x00.log", "log_path must not contain a NUL byte"),
])
def test_log_path_must_be_absolute(monkeypatch, tmp_path, log_path, message):
    work = tmp_path / "work"
    (work / "logs").mkdir(parents=True)
    monkeypatch.chdir(work)
    callback = make_callback(monkeypatch, tmp_path, log_path=log_path.format(tmp=work))
    callback.v2_playbook_on_start(playbook())
    callback.v2_runner_on_ok(Result("web-1", Task("t"), {}))
    callback.v2_playbook_on_stats(stats())
    assert callback.disabled
    assert len(callback._display.warnings) == 1 and message in callback._display.warnings[0]
    assert sorted(os.listdir(work)) == ["logs"] and os.listdir(work / "logs") == []


def test_log_path_under_home_is_expanded(monkeypatch, tmp_path):
    monkeypatch.setenv("HOME", str(tmp_path))
    callback = make_callback(monkeypatch, tmp_path, log_path="~/.ansible/dihya-audit.log")
    callback.v2_playbook_on_start(playbook())
    callback.v2_playbook_on_stats(stats())
    assert not callback.disabled
    assert _audit.verify(str(tmp_path / ".ansible" / "dihya-audit.log"), KEY.encode()).records == 2


# Vault values in part or encoded -----------------------------------------------------------------------------------------

SECRETS = {
    "plain": "canary-0123456789abcdef0123",
    "special": 'p@ss"w0rd\\/+?&= ok#%',
    "unicode": "mot-de-passe-été-Straße-42",
}


def _b64(text, urlsafe=False, pad=True):
    data = text.encode() if isinstance(text, str) else text
    encoded = (base64.urlsafe_b64encode if urlsafe else base64.b64encode)(data).decode()
    return encoded if pad else encoded.rstrip("=")


TRANSFORMS = {
    "exact": lambda s: s,
    "slice-start": lambda s: s[:10],
    "slice-middle": lambda s: s[5:15],
    "slice-end": lambda s: s[-9:],
    "slice-of-8": lambda s: s[3:11],
    "upper": lambda s: s.upper(),
    "lower": lambda s: s.lower(),
    "swapcase": lambda s: s.swapcase(),
    "upper-slice": lambda s: s[4:14].upper(),
    "reversed": lambda s: s[::-1],
    "reversed-slice": lambda s: s[2:12][::-1],
    "b64": _b64,
    "b64-urlsafe": lambda s: _b64(s, urlsafe=True),
    "b64-unpadded": lambda s: _b64(s, pad=False),
    "b64-slice-0": lambda s: _b64(s[0:10]),
    "b64-slice-1": lambda s: _b64(s[1:11]),
    "b64-slice-2": lambda s: _b64(s[2:12]),
    "b64-slice-of-8": lambda s: _b64(s[7:15]),
    "b64-basic-auth": lambda s: _b64("admin:" + s),
    "b64-inside-1": lambda s: _b64("x" + s[4:16]),
    "b64-inside-2": lambda s: _b64("xy" + s[4:16], urlsafe=True),
    "hex": lambda s: s.encode().hex(),
    "hex-upper": lambda s: s.encode().hex().upper(),
    "hex-slice": lambda s: s[6:16].encode().hex(),
    "url": lambda s: quote(s, safe=""),
    "url-path": quote,
    "url-plus": quote_plus,
    "url-slice": lambda s: quote(s[3:13], safe=""),
    "json": lambda s: json.dumps({"password": s}),
    "json-ascii-slice": lambda s: json.dumps(s[2:14]),
    "json-unicode": lambda s: json.dumps({"password": s}, ensure_ascii=False),
    "repr": lambda s: repr({"password": s}),
}


@pytest.mark.parametrize("secret_kind", sorted(SECRETS))
@pytest.mark.parametrize("transform", sorted(TRANSFORMS))
@pytest.mark.parametrize("prefix", ["", "x", "ab: "])
def test_parts_and_encodings_of_a_vault_value_are_found(secret_kind, transform, prefix):
    secret = SECRETS[secret_kind]
    shown = TRANSFORMS[transform](secret)
    matcher = _audit_redact.SecretFilter({secret, "unrelated-value-000"})
    assert matcher.search(f"{prefix}{shown} trailing words"), (transform, shown)
    assert _audit_redact.safe_message(f"failed: {prefix}{shown}", {secret}) == _audit_redact.WITHHELD


@pytest.mark.parametrize("text", [
    "Plain failure: 'quoted' ; rm -rf ../",
    "trace 4bf92f3577b34da6a3ce929d0e0e4736, sha256 " + hashlib.sha256(b"x").hexdigest(),
    "Y2FuYQ== is cana in base64, shorter than a window",
    "canary- and 0123456 and 789abcd: parts shorter than a window",
    "connection refused: https://127.0.0.1:9/api?token=abc",
    "",
])
def test_ordinary_messages_are_kept(text):
    assert not _audit_redact.SecretFilter(set(SECRETS.values())).search(text)
    assert _audit_redact.safe_message(text, set(SECRETS.values())) == text


@pytest.mark.parametrize(("shown", "found"), [
    ("hunter", True), ("HUNTER", False), ("retnuh", False), ("hunt", False),
    (base64.b64encode(b"hunter").decode(), True), (b"hunter".hex(), True), (b"hunter".hex().upper(), True),
])
def test_short_vault_values_are_matched_whole_only(shown, found):
    """Values shorter than the window: the value or an encoding of all of it, never a part or another letter case."""
    assert _audit_redact.SecretFilter({"hunter"}).search(f"bad {shown}!") is found


def test_a_long_message_is_checked_where_it_is_recorded():
    secret = SECRETS["plain"]
    tail = "y" * (_audit_redact.MSG_LIMIT - 20) + secret[:12]
    assert _audit_redact.safe_message(tail, {secret}) == _audit_redact.WITHHELD
    far = "y" * 5000 + secret
    kept = _audit_redact.safe_message(far, {secret})
    assert kept.endswith("...") and secret[:8] not in kept


def test_filter_cost_stays_small():
    """Built once per set of values; a search is a pass over the text (here 50 values, a 512-character message)."""
    values = {f"vault-value-{index:03d}-" + "k" * 24 for index in range(50)}
    started = time.perf_counter()
    matcher = _audit_redact.SecretFilter(values)
    built = time.perf_counter() - started
    text = "a message of ordinary words " * 19
    started = time.perf_counter()
    for dummy in range(100):
        assert not matcher.search(text)
    searched = (time.perf_counter() - started) / 100
    assert built < 2.0 and searched < 0.01, (built, searched)


@pytest.mark.parametrize("transform", ["slice-middle", "b64", "b64-slice-1", "upper", "hex", "url", "reversed"])
def test_parts_and_encodings_in_names_messages_and_item_labels_are_withheld(monkeypatch, tmp_path, vault, transform):
    """Through the callback: task and play names (templated, and the raw name when it holds the value too) and failure messages."""
    secret = SECRETS["special"]
    shown = TRANSFORMS[transform](secret)
    # An inline !vault value of a group_vars file, as the loader caches it (the encrypted-file case is tested above).
    ciphertext = vault.loader._vault.encrypt(secret).decode().replace(chr(10), chr(10) + "  ")
    group_vars = vault.tmp / "group_vars" / "all.yml"
    monkeypatch.setitem(vault.loader._FILE_CACHE, str(group_vars), vault.loader.load(f"vault_password: !vault |\n  {ciphertext}\n"))
    callback = make_callback(monkeypatch, tmp_path)
    callback.v2_playbook_on_start(playbook(loader=vault.loader))
    callback.v2_playbook_on_play_start(types.SimpleNamespace(get_name=lambda: f"Play {shown}", _ds={"name": "Play {{ x }}"}))
    named = Task(f"Use {shown}", raw="Use {{ vault_password | b64encode }}")
    callback.v2_runner_on_failed(Result("web-1", named, {"msg": f"bad value {shown}"}))
    labelled = Task(f"Deploy (item={shown})", raw=f"Deploy {shown}")
    callback.v2_runner_on_failed(Result("web-1", labelled, {"msg": "One or more items failed",
                                                            "results": [{"item": shown, "msg": f"no {shown}"}]}))
    callback.v2_playbook_on_stats(stats(**{"web-1": recap(failures=2)}))
    text = (tmp_path / "logs" / "audit.log").read_text()
    assert shown not in text and json.dumps(shown)[1:-1] not in text
    records = read(tmp_path / "logs" / "audit.log")
    assert records[1]["labels"]["play"] == "Play {{ x }}"
    assert records[1]["labels"]["task"] == "Use {{ vault_password | b64encode }}"
    assert records[1]["dihya"]["details"]["msg"] == _audit_redact.WITHHELD
    assert records[2]["labels"]["task"] == "(name withheld: it contains a Vault value)"
    assert records[2]["dihya"]["details"]["msg"] == "One or more items failed"
    assert _audit.verify(str(tmp_path / "logs" / "audit.log"), KEY.encode()).ok


def test_answers_are_remembered_within_a_bound(monkeypatch):
    """A task name comes back for every host: the answer is remembered, for a bounded number of texts."""
    monkeypatch.setattr(_audit_redact, "SEEN_LIMIT", 3)
    secret = SECRETS["plain"]
    matcher = _audit_redact.SecretFilter({secret})
    texts = [f"task {index}" for index in range(5)] + [f"task {secret[2:12]}"]
    for dummy in range(2):
        assert [matcher.search(text) for text in texts] == [False] * 5 + [True]
        assert len(matcher._seen) <= 3
