# Copyright (c) Dihya ops maintainers
# GNU General Public License v3.0+ (see LICENSES/GPL-3.0-or-later.txt or https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later

from __future__ import annotations

DOCUMENTATION = r"""
name: audit
type: notification
short_description: Write a tamper-evident audit trail of every playbook run
version_added: 0.1.0
description:
  - Records, for each run of C(ansible-playbook), an event when a playbook starts, one event for every task result on every host
    (status C(ok), C(changed), C(failed), C(skipped) or C(unreachable)) and an event with the per-host recap at the end.
  - All events of a run share one trace id (W3C format, 32 lowercase hexadecimal digits), taken from the extra variable
    C(dihya_trace_id), else from O(trace_id), else the run's own id. The C(dihya.ops.operation_context) action resolves the
    same id (the callback and the action share one resolver, and the id the callback settles is inherited by the workers
    the action runs in), so the audit events written on the hosts, metrics and reports carry the same id.
  - Events are JSON lines in the collection's audit format (ECS field names), chained with HMAC-SHA256 under O(key) so that a
    removed, reordered or edited line is detected by M(dihya.ops.audit_verify). The user is pseudonymised unless O(pseudonymise=false).
  - The user is, first found, the AWX / Automation Controller user (C(awx_user_name) or C(tower_user_name) extra variables),
    the caller's user (C(DIHYA_OPS_USER) in the environment, else O(user)), the extra variable C(dihya_ops_user) only where
    the controller trusts declared users (C(DIHYA_OPS_TRUST_DECLARED_USER=true) in its environment), else the operating
    system user running Ansible (its effective user id, never C($USER)). The C(dihya.ops.operation_context) action names
    the same user. The tenant is the extra variable C(dihya_ops_tenant) or C(dihya_tenant), else O(tenant).
  - A malformed value of the run context (a tenant name with C(../) or quotes, a user name with a newline, a trace id that
    is not 32 hexadecimal digits) is left out with a warning; the C(dihya.ops.operation_context) action refuses it before
    any host task.
  - Only a fixed list of fields is recorded, namely the playbook, play and task names, module (fully qualified name), host, status,
    changed, duration and, for a failed task without C(no_log), its C(msg) truncated to 512 characters. Module arguments and
    results are never recorded. A task name or failure message that contains a value decrypted from Ansible Vault (vars files,
    group and host variables, extra-variable files, inline C(!vault) values) is replaced by its untemplated form or left out.
  - What counts as containing a Vault value of 8 characters or more - any run of 8 of its characters, in any letter case or
    reversed, or such a run JSON-, Python- or URL-escaped, as hexadecimal digits, or base64-encoded (standard or URL-safe, alone
    or inside a longer text such as C(user:password)). A shorter Vault value is caught only whole (the value, or its base64, hex,
    JSON or URL encoding). Other transformations (hashes, other encodings, encryption, a value split in pieces shorter than 8
    characters, variables that are not from Vault) are not recognised - use C(no_log) on tasks that handle secrets.
  - Without a key (neither O(key) nor O(key_file)) the plugin warns once and disables itself; it never writes unkeyed records.
  - Once read, C(DIHYA_AUDIT_KEY) and C(DIHYA_AUDIT_PSEUDONYM_KEY) are removed from the environment of C(ansible-playbook), so
    that tasks run with a local connection do not inherit them.
  - Events are buffered and written at most O(flush_interval) seconds after they happen, and at the end of the run.
author:
  - Dihya ops maintainers (@dihya-ops)
requirements:
  - Enabled in C(callbacks_enabled) (C(ANSIBLE_CALLBACKS_ENABLED=dihya.ops.audit)).
seealso:
  - module: dihya.ops.audit_event
  - module: dihya.ops.audit_verify
options:
  log_path:
    description:
      - File the events are appended to. Its folder is created (mode C(0700)) when missing; the file is created with mode C(0600).
      - An absolute path, after C(~) is expanded to the home directory of the user running Ansible; a relative path (which would
        depend on the working directory of the run), a C(..) component or a NUL byte is refused and disables the callback with a warning.
    type: str
    default: ~/.ansible/dihya-audit.log
    env:
      - name: DIHYA_AUDIT_LOG_PATH
    ini:
      - section: callback_dihya_audit
        key: log_path
  key:
    description:
      - Secret key of the HMAC chain (at least 16 bytes). Prefer O(key_file) with a Vault-encrypted file, or the environment
        variable given by the secret store of the CI or AWX credential.
      - Takes precedence over O(key_file).
    type: str
    env:
      - name: DIHYA_AUDIT_KEY
    ini:
      - section: callback_dihya_audit
        key: key
  key_file:
    description:
      - File holding the key (surrounding white space is ignored). It may be encrypted with C(ansible-vault); it is then decrypted
        with the vault secrets of the run (C(--vault-id), C(--vault-password-file)).
    type: path
    env:
      - name: DIHYA_AUDIT_KEY_FILE
    ini:
      - section: callback_dihya_audit
        key: key_file
  pseudonym_key:
    description:
      - Key of the pseudonyms (see O(pseudonymise)). Without it (and without O(pseudonym_key_file)) it is derived from the chain key.
      - Give the key of the backend model (C(dihya_backend_pseudonym_key)) so that a user has the same pseudonym in the run's
        events and in the business events of M(dihya.ops.audit_event).
    type: str
    env:
      - name: DIHYA_AUDIT_PSEUDONYM_KEY
    ini:
      - section: callback_dihya_audit
        key: pseudonym_key
  pseudonym_key_file:
    description:
      - File holding the pseudonym key, possibly encrypted with C(ansible-vault), like O(key_file).
    type: path
    env:
      - name: DIHYA_AUDIT_PSEUDONYM_KEY_FILE
    ini:
      - section: callback_dihya_audit
        key: pseudonym_key_file
  pseudonymise:
    description:
      - Replace the user name by a keyed pseudonym (C(hmac:) followed by hexadecimal digits, stable for a key).
      - V(false) records user names in clear; only do so where the audit log is itself personal data that may hold them.
    type: bool
    default: true
    env:
      - name: DIHYA_AUDIT_PSEUDONYMISE
    ini:
      - section: callback_dihya_audit
        key: pseudonymise
  fsync:
    description:
      - V(batch) calls C(fsync) once for each write of the buffered events (see O(flush_interval)), recommended; V(always) writes
        and calls C(fsync) after every event, which costs a few milliseconds per task result.
    type: str
    choices: [batch, always]
    default: batch
    env:
      - name: DIHYA_AUDIT_FSYNC
    ini:
      - section: callback_dihya_audit
        key: fsync
  flush_interval:
    description:
      - Longest time, in seconds, an event is kept in memory before it is written. Events are written together, in one append
        (one lock, one C(fsync) with O(fsync=batch)), by a timer, and always when a playbook starts and at the end of the run.
      - V(0) writes the events of a task when the next task starts (one write per task).
      - A run killed by C(SIGKILL) loses at most the events of this last interval; the chain stays valid.
      - Not used with O(fsync=always).
    type: float
    default: 1.0
    env:
      - name: DIHYA_AUDIT_FLUSH_INTERVAL
    ini:
      - section: callback_dihya_audit
        key: flush_interval
  user:
    description:
      - User recorded when the run does not come from AWX / Automation Controller and C(DIHYA_OPS_USER) is not set, for
        example the person or pipeline on whose behalf a CI job runs. Defaults to the operating system user.
    type: str
    env:
      - name: DIHYA_AUDIT_USER
    ini:
      - section: callback_dihya_audit
        key: user
  tenant:
    description:
      - Tenant recorded when neither the extra variable C(dihya_ops_tenant) nor C(dihya_tenant) is set.
    type: str
    env:
      - name: DIHYA_AUDIT_TENANT
    ini:
      - section: callback_dihya_audit
        key: tenant
  trace_id:
    description:
      - Trace id of the run (32 hexadecimal digits) when the extra variable C(dihya_trace_id) is not set, for example the id a
        CI pipeline also gives to its other steps. Anything else is ignored with a warning and the run's own id is used
        (the C(dihya.ops.operation_context) action refuses it).
    type: str
    env:
      - name: DIHYA_TRACE_ID
      - name: DIHYA_AUDIT_TRACE_ID
    ini:
      - section: callback_dihya_audit
        key: trace_id
notes:
  - Events have C(event.category=ops) and C(event.action) V(ansible.run.start), V(ansible.task) or V(ansible.run.end); the status
    of a task is in C(labels.status), its module in C(labels.module), the play in C(labels.play), the playbook in C(labels.playbook).
  - See C(docs/audit.md) in the collection for the record format, rotation and shipping to a SIEM.
"""

EXAMPLES = r"""
# ansible.cfg
# [defaults]
# callbacks_enabled = dihya.ops.audit
#
# [callback_dihya_audit]
# log_path = /var/log/dihya/ansible-audit.log
# key_file = /etc/dihya/audit-key.vault
# fsync = batch

# Or from the environment, for example in CI or ansible-runner's env/envvars:
# ANSIBLE_CALLBACKS_ENABLED=dihya.ops.audit
# DIHYA_AUDIT_KEY_FILE=/etc/dihya/audit-key.vault
# DIHYA_AUDIT_TRACE_ID=4bf92f3577b34da6a3ce929d0e0e4736
"""

import atexit
import os
import threading
import time
import typing as t

from ansible import context
from ansible.module_utils.common.text.converters import to_text
from ansible.parsing.vault import VaultHelper
from ansible.plugins.callback import CallbackBase

from ansible_collections.dihya.ops.plugins.module_utils import _audit
from ansible_collections.dihya.ops.plugins.plugin_utils._audit_context import (
    clean_text,
    error_text,
    output_hidden,
    raw_name,
    read_key,
    resolve_context,
    task_message,
    task_status,
)
from ansible_collections.dihya.ops.plugins.plugin_utils._audit_redact import SecretFilter, contains_secret, filter_of, safe_message, vault_plaintexts


class CallbackModule(CallbackBase):  # type: ignore[misc]  # ansible-core ships no type information
    """Audit trail of playbook runs in the collection's chained audit log."""

    CALLBACK_VERSION = 2.0
    CALLBACK_TYPE = "notification"
    CALLBACK_NAME = "dihya.ops.audit"
    CALLBACK_NEEDS_ENABLED = True
    disabled: bool

    def __init__(self, display: t.Any = None) -> None:
        super().__init__(display=display)
        self._log: _audit.AuditLog | None = None
        self._settings: _audit.AuditSettings | None = None
        self._context: dict[str, t.Any] | None = None
        self._buffer: list[dict[str, t.Any]] = []
        self._started: dict[tuple[str, str], float] = {}
        self._playbook = ""
        self._play = ""
        self._loader: t.Any = None
        self._inventory: t.Any = None
        self._secrets: frozenset[str] = frozenset()
        self._filter = SecretFilter(())
        self._secrets_source = -1
        self._write_warned = False
        self._pid = os.getpid()
        self._interval = 0.0
        self._lock = threading.Lock()
        self._timer: threading.Timer | None = None
        atexit.register(self._flush_at_exit)

    # Set-up --------------------------------------------------------------------------------------------------------------

    def _disable(self, reason: str) -> None:
        if not self.disabled:
            self._display.warning(f"dihya.ops.audit: {reason}; the audit callback is disabled for this run.")
        self.disabled = True

    def _setup(self, playbook: t.Any) -> bool:
        """Key, settings, log and run context, on the first playbook of the run. False when the callback is disabled."""
        if self._log is not None:
            return True
        self._loader = getattr(playbook, "_loader", None)
        try:
            key = read_key(self.get_option("key"), self.get_option("key_file"), self._loader)
            pseudonym_key = read_key(self.get_option("pseudonym_key"), self.get_option("pseudonym_key_file"), self._loader)
            # Workers are forked later: tasks run with a local connection must not inherit the keys.
            os.environ.pop("DIHYA_AUDIT_KEY", None)
            os.environ.pop("DIHYA_AUDIT_PSEUDONYM_KEY", None)
            if not key:
                self._disable("no audit key is configured (set DIHYA_AUDIT_KEY or DIHYA_AUDIT_KEY_FILE, or key / key_file in "
                              "[callback_dihya_audit]); no unkeyed audit record is ever written")
                return False
            self._settings = _audit.AuditSettings(key=key, pseudonym_key=pseudonym_key, pseudonymise=bool(self.get_option("pseudonymise")),
                                                  fsync=self.get_option("fsync"))
            path = _audit.check_path(os.path.expanduser(str(self.get_option("log_path") or "")), "log_path")
            folder = os.path.dirname(path)
            if not os.path.isdir(folder):
                os.makedirs(folder, mode=0o700, exist_ok=True)
            self._log = _audit.AuditLog(path, self._settings)
            self._interval = max(0.0, float(self.get_option("flush_interval") or 0.0))
        except (_audit.AuditError, OSError, ValueError) as exc:
            self._disable(error_text(exc) if not isinstance(exc, _audit.AuditError) else str(exc))
            return False
        extra_vars: t.Mapping[str, t.Any] = {}
        plays = playbook.get_plays() if hasattr(playbook, "get_plays") else []
        if plays:
            manager = plays[0].get_variable_manager()
            if manager is not None:
                extra_vars = manager.extra_vars
                self._inventory = getattr(manager, "_inventory", None)
        # Resolved (and settled as the run's) before any worker is forked: the operation_context action that runs in
        # the workers names the same user and trace id.
        self._context = resolve_context(extra_vars, user=self.get_option("user"), tenant=self.get_option("tenant"),
                                        trace_id=self.get_option("trace_id"))
        for warning in self._context["warnings"]:
            self._display.warning(f"dihya.ops.audit: {warning}.")
        return True

    # Events --------------------------------------------------------------------------------------------------------------

    def _event(self, action: str, outcome: str, labels: dict[str, str], details: dict[str, t.Any], host: str | None = None) -> None:
        if self._context is None or self._settings is None:
            return
        all_labels = dict(self._context["labels"])
        all_labels.update({key: value for key, value in labels.items() if value is not None})
        try:
            event = _audit.build_event(action=action, category="ops", outcome=outcome, settings=self._settings,
                                       user=self._context["user"], tenant=self._context["tenant"],
                                       trace_id=self._context["trace_id"], host=host, labels=all_labels, details=details)
        except _audit.AuditError as exc:
            self._warn_write(str(exc))
            return
        with self._lock:
            self._buffer.append(event)
            if self._settings.fsync != "always" and self._interval > 0 and self._timer is None:
                self._timer = threading.Timer(self._interval, self._flush)
                self._timer.daemon = True
                self._timer.start()
        if self._settings.fsync == "always":
            self._flush()

    def _flush(self) -> None:
        """Write the buffered events in one append; called by the handlers and by the timer thread."""
        with self._lock:
            if self._timer is not None:
                self._timer.cancel()
                self._timer = None
            if not self._buffer or self._log is None:
                return
            events, self._buffer = self._buffer, []
            try:
                self._log.append(events)
            except (_audit.AuditError, OSError) as exc:
                self._warn_write(str(exc) if isinstance(exc, _audit.AuditError) else error_text(exc))

    def _flush_at_exit(self) -> None:
        if os.getpid() == self._pid and not self.disabled:
            self._flush()

    def _warn_write(self, reason: str) -> None:
        if not self._write_warned:
            self._write_warned = True
            self._display.warning(f"dihya.ops.audit: audit events could not be written: {reason}")

    def _known_secrets(self) -> SecretFilter:
        cache = getattr(self._loader, "_FILE_CACHE", None) or {}
        if len(cache) != self._secrets_source:
            sources: list[t.Any] = []
            if self._inventory is not None:
                try:
                    sources = [item.vars for item in list(self._inventory.hosts.values()) + list(self._inventory.groups.values())]
                except AttributeError:
                    sources = []
            secrets = vault_plaintexts(dict(cache), sources)
            if secrets != self._secrets:
                self._secrets, self._filter = secrets, filter_of(secrets)
            self._secrets_source = len(cache)
        return self._filter

    def _safe_name(self, templated: t.Any, raw: t.Any) -> str:
        name = clean_text(templated) or clean_text(raw) or ""
        if VaultHelper.get_ciphertext(templated, with_tags=False) is not None or contains_secret(name, self._known_secrets()):
            name = clean_text(raw) or ""
            if contains_secret(name, self._known_secrets()):
                name = "(name withheld: it contains a Vault value)"
        return name

    def v2_playbook_on_start(self, playbook: t.Any) -> None:
        if not self._setup(playbook) or self._context is None:
            return
        self._playbook = os.path.basename(to_text(getattr(playbook, "_file_name", "") or ""))
        details = {"check_mode": bool(context.CLIARGS.get("check", False)), "user_source": self._context["user_source"],
                   "trace_id_source": self._context["trace_id_source"]}
        self._event("ansible.run.start", "success", {"playbook": self._playbook}, details)
        self._flush()

    def v2_playbook_on_play_start(self, play: t.Any) -> None:
        if not self._interval:
            self._flush()
        self._play = self._safe_name(play.get_name(), raw_name(play))

    def v2_playbook_on_task_start(self, task: t.Any, is_conditional: bool) -> None:
        if not self._interval:
            self._flush()

    def v2_playbook_on_handler_task_start(self, task: t.Any) -> None:
        if not self._interval:
            self._flush()

    def v2_runner_on_start(self, host: t.Any, task: t.Any) -> None:
        self._started[(host.get_name(), task._uuid)] = time.monotonic()

    def _task_event(self, kind: str, result: t.Any, ignore_errors: bool = False) -> None:
        host = result.host.get_name()
        task = result.task
        data = result.result
        status = task_status(kind, data)
        started = self._started.pop((host, task._uuid), None)
        details: dict[str, t.Any] = {"changed": bool(data.get("changed")) and status not in ("skipped", "unreachable")}
        if started is not None:
            details["duration_ms"] = int((time.monotonic() - started) * 1000)
        if kind == "failed":
            details["ignore_errors"] = bool(ignore_errors)
        if status in ("failed", "unreachable") and not output_hidden(result):
            message = safe_message(task_message(result), self._known_secrets())
            if message is not None:
                details["msg"] = message
        labels = {
            "status": status, "playbook": self._playbook, "play": self._play,
            "task": self._safe_name(result.task_fields.get("name") or task.get_name(), raw_name(task)),
            "module": to_text(getattr(task, "resolved_action", None) or task.action or ""),
        }
        self._event("ansible.task", "failure" if status in ("failed", "unreachable") else "success", labels, details, host=host)

    def v2_runner_on_ok(self, result: t.Any) -> None:
        self._task_event("ok", result)

    def v2_runner_on_failed(self, result: t.Any, ignore_errors: bool = False) -> None:
        self._task_event("failed", result, ignore_errors=ignore_errors)

    def v2_runner_on_skipped(self, result: t.Any) -> None:
        self._task_event("skipped", result)

    def v2_runner_on_unreachable(self, result: t.Any) -> None:
        self._task_event("unreachable", result)

    def v2_playbook_on_stats(self, stats: t.Any) -> None:
        hosts = {host: stats.summarize(host) for host in sorted(stats.processed)}
        failed = any(summary["failures"] or summary["unreachable"] for summary in hosts.values())
        self._event("ansible.run.end", "failure" if failed else "success", {"playbook": self._playbook}, {"hosts": hosts})
        self._flush()
