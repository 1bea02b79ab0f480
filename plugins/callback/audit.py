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
    C(dihya_trace_id), else from O(trace_id), else generated, so that the audit events written by modules during the run,
    metrics and reports can carry the same id. The plugin puts it in the C(DIHYA_TRACE_ID) environment variable of the run,
    where the C(dihya.ops.operation) role finds it for the events it records on the hosts.
  - Events are JSON lines in the collection's audit format (ECS field names), chained with HMAC-SHA256 under O(key) so that a
    removed, reordered or edited line is detected by M(dihya.ops.audit_verify). The user is pseudonymised unless O(pseudonymise=false).
  - The user is the AWX / Automation Controller user (C(awx_user_name) or C(tower_user_name) extra variables) when the run
    comes from there, else the extra variable C(dihya_ops_user), else O(user), else the operating system user running Ansible.
    The tenant is the extra variable C(dihya_ops_tenant) or C(dihya_tenant), else O(tenant).
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
      - User recorded when the run does not come from AWX / Automation Controller, for example the person or pipeline on whose
        behalf a CI job runs. Defaults to the operating system user.
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
        CI pipeline also gives to its other steps. Anything else is ignored with a warning and a new id is generated.
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
import base64
import binascii
import functools
import getpass
import json
import os
import re
import threading
import time
import typing as t
from urllib.parse import quote, quote_plus

from ansible import context
from ansible.errors import AnsibleError
from ansible.module_utils.common.text.converters import to_text
from ansible.parsing.vault import EncryptedString, VaultHelper, is_encrypted_file
from ansible.plugins.callback import CallbackBase

from ansible_collections.dihya.ops.plugins.module_utils import _audit, _ids

MSG_LIMIT = 512
SECRET_MIN_LENGTH = 4
# A Vault value at least this long is withheld when any run of this many of its characters shows, or a common encoding of such a run.
SECRET_WINDOW = 8
SEEN_LIMIT = 4096
TRACE_ID = re.compile(r"[0-9a-f]{32}")
WITHHELD = "(message withheld: it contains a Vault value)"


def resolve_context(extra_vars: t.Mapping[str, t.Any] | None, *, user: str | None = None, tenant: str | None = None,
                    trace_id: str | None = None, os_user: str | None = None) -> dict[str, t.Any]:
    """Who runs, for which tenant, under which trace id: the run context, then the options, then defaults.

    Returns user, user_source (awx, option or os), tenant, trace_id, trace_id_source (extra_vars, option or new),
    labels (AWX job id and template name when present) and warnings (bad trace ids that were ignored).
    """
    extra = dict(extra_vars or {})
    warnings: list[str] = []
    labels: dict[str, str] = {}
    resolved_user, source = None, "os"
    for name in ("awx_user_name", "tower_user_name"):
        if _text(extra.get(name)):
            resolved_user, source = _text(extra[name]), "awx"
            break
    if resolved_user is None and _text(extra.get("dihya_ops_user")):
        resolved_user, source = _text(extra["dihya_ops_user"]), "extra_vars"
    if resolved_user is None and _text(user):
        resolved_user, source = _text(user), "option"
    if resolved_user is None:
        resolved_user = os_user if os_user is not None else _os_user()
    for label, names in (("awx_job_id", ("awx_job_id", "tower_job_id")), ("awx_job_template", ("awx_job_template_name", "tower_job_template_name"))):
        for name in names:
            if _text(extra.get(name)):
                labels[label] = _text(extra[name])
                break
    resolved_tenant = _text(extra.get("dihya_ops_tenant")) or _text(extra.get("dihya_tenant")) or _text(tenant)
    resolved_trace, trace_source = None, "new"
    for candidate, candidate_source in ((extra.get("dihya_trace_id"), "extra_vars"), (trace_id, "option")):
        value = _text(candidate)
        if not value:
            continue
        if TRACE_ID.fullmatch(value.lower()) and value.strip("0"):
            resolved_trace, trace_source = value.lower(), candidate_source
            break
        warnings.append(f"the {'extra variable dihya_trace_id' if candidate_source == 'extra_vars' else 'trace_id option'} "
                        "is not a trace id of 32 hexadecimal digits; it is ignored")
    return {
        "user": resolved_user, "user_source": source, "tenant": resolved_tenant,
        "trace_id": resolved_trace or _ids.new_trace_id(), "trace_id_source": trace_source,
        "labels": labels, "warnings": warnings,
    }


def task_status(kind: str, result: t.Mapping[str, t.Any]) -> str:
    """Status of one task result on one host from the callback event and the result's changed flag."""
    if kind in ("failed", "skipped", "unreachable"):
        return kind
    return "changed" if result.get("changed") else "ok"


def safe_message(message: t.Any, secrets: SecretFilter | t.Iterable[str], limit: int = MSG_LIMIT) -> str | None:
    """The failure message as text, truncated, or WITHHELD when a known Vault value (or a part or an encoding of one) appears in it."""
    if message is None:
        return None
    if VaultHelper.get_ciphertext(message, with_tags=False) is not None:
        return WITHHELD
    text = message if isinstance(message, str) else to_text(message, errors="surrogate_or_replace")
    shown = text if len(text) <= limit else text[:limit - 3] + "..."
    # Only what is recorded matters; the margin covers an encoded run that the cut would split.
    if contains_secret(text[:limit + 4 * SECRET_WINDOW], secrets):
        return WITHHELD
    return shown


class SecretFilter:
    """Finds Vault values, whole or in part, plain or encoded, in a text. Built once per set of values.

    For a value of at least SECRET_WINDOW characters, a text is caught when it contains any run of SECRET_WINDOW
    characters of the value, or of the value reversed, in any letter case (upper, lower, swapped: compared case-folded),
    JSON-escaped, Python-escaped (repr) or URL-encoded; any run of 2 * SECRET_WINDOW hexadecimal digits (either case) of
    its UTF-8 bytes; or any run of SECRET_WINDOW characters of its base64 encoding (standard or URL-safe, padding or
    not) starting at any of the 3 byte alignments, which is what the base64 of any slice of it, alone or inside a longer
    text (``user:secret``), contains. A shorter value is caught only whole: the value itself, or its base64, hex, JSON,
    URL encoding of the whole value. Everything is computed once per value; a search is one pass over the text per
    window length, with set look-ups.
    """

    def __init__(self, secrets: t.Iterable[str]) -> None:
        folded: set[str] = set()
        hexed: set[str] = set()
        based: set[str] = set()
        exact: set[str] = set()
        for secret in secrets:
            patterns = _secret_patterns(secret)
            folded |= patterns[0]
            hexed |= patterns[1]
            based |= patterns[2]
            exact |= patterns[3]
        self._folded = frozenset(folded)
        self._hexed = frozenset(hexed)
        self._based = frozenset(based)
        self._exact = tuple(sorted(exact, key=len))
        # Task names come back for every host: remember the answers for the texts seen last.
        self._seen: dict[str, bool] = {}

    def search(self, text: str) -> bool:
        """Whether ``text`` shows a Vault value (or a part or an encoding of one)."""
        if not text:
            return False
        found = self._seen.get(text)
        if found is None:
            found = self._search(text)
            if len(self._seen) >= SEEN_LIMIT:
                self._seen.clear()
            self._seen[text] = found
        return found

    def _search(self, text: str) -> bool:
        if any(value in text for value in self._exact):
            return True
        if not self._folded or len(text) < SECRET_WINDOW:
            return False
        if _any_window(text, SECRET_WINDOW, self._based):
            return True
        folded_text = text.casefold()
        return _any_window(folded_text, SECRET_WINDOW, self._folded) or _any_window(folded_text, 2 * SECRET_WINDOW, self._hexed)


def _any_window(text: str, width: int, windows: frozenset[str]) -> bool:
    """Whether one of the ``width``-character slices of ``text`` is in ``windows`` (the loop runs in C: map, slice, isdisjoint)."""
    count = len(text) - width + 1
    if count <= 0 or not windows:
        return False
    return not windows.isdisjoint(map(text.__getitem__, map(slice, range(count), range(width, width + count))))


def _windows(text: str, width: int) -> set[str]:
    return {text[start:start + width] for start in range(len(text) - width + 1)}


def _text_forms(secret: str) -> list[str]:
    """The value as it may be written in a text: plain, escaped for JSON, Python or a URL."""
    forms = [secret, json.dumps(secret)[1:-1], json.dumps(secret, ensure_ascii=False)[1:-1], repr(secret)[1:-1]]
    for encode in (functools.partial(quote, safe=""), quote, quote_plus):
        try:
            forms.append(encode(secret))
        except (UnicodeEncodeError, TypeError):
            pass
    return forms


def _base64_forms(data: bytes) -> list[str]:
    forms = []
    for encoded in (base64.b64encode(data), base64.urlsafe_b64encode(data)):
        forms.append(encoded.decode("ascii").rstrip("="))
    return forms


@functools.lru_cache(maxsize=4096)
def _secret_patterns(secret: str) -> tuple[frozenset[str], frozenset[str], frozenset[str], frozenset[str]]:
    """(case-folded text windows, case-folded hex windows, base64 windows, exact forms) of one Vault value."""
    data = secret.encode("utf-8", "surrogatepass")
    if len(secret) < SECRET_WINDOW:
        exact = {form for form in _text_forms(secret) if form}
        exact.update(_base64_forms(data))
        exact.update((binascii.hexlify(data).decode("ascii"), binascii.hexlify(data).decode("ascii").upper()))
        return frozenset(), frozenset(), frozenset(), frozenset(exact)
    folded: set[str] = set()
    for form in _text_forms(secret) + _text_forms(secret[::-1]):
        folded |= _windows(form.casefold(), SECRET_WINDOW)
    hexed = _windows(binascii.hexlify(data).decode("ascii"), 2 * SECRET_WINDOW)
    based: set[str] = set()
    for alignment in range(3):
        shifted = data[alignment:]
        whole = len(shifted) - len(shifted) % 3  # the last, partial group depends on what follows
        for form in _base64_forms(shifted[:whole]):
            based |= _windows(form, SECRET_WINDOW)
    return frozenset(folded), frozenset(hexed), frozenset(based), frozenset()


@functools.lru_cache(maxsize=16)
def _filter_of(secrets: frozenset[str]) -> SecretFilter:
    return SecretFilter(secrets)


def contains_secret(text: str, secrets: SecretFilter | t.Iterable[str]) -> bool:
    """Whether ``text`` shows one of ``secrets`` (Vault values), whole or in part, plain or encoded (see SecretFilter)."""
    matcher = secrets if isinstance(secrets, SecretFilter) else _filter_of(frozenset(secrets))
    return matcher.search(text)


def vault_plaintexts(file_cache: t.Mapping[str, t.Any], extra_sources: t.Iterable[t.Any] = ()) -> frozenset[str]:
    """Decrypted Vault values known to the run.

    Every string of a file that is Vault-encrypted as a whole (the loader's cache keeps its parsed content), and every inline
    C(!vault) value in the cached files and in ``extra_sources`` (inventory variables). Strings shorter than SECRET_MIN_LENGTH
    are not kept: they would match ordinary words.
    """
    found: set[str] = set()
    for path, data in file_cache.items():
        _collect(data, found, everything=_encrypted_file(path))
    for data in extra_sources:
        _collect(data, found, everything=False)
    return frozenset(secret for secret in found if len(secret) >= SECRET_MIN_LENGTH)


def _collect(data: t.Any, found: set[str], everything: bool, depth: int = 0) -> None:
    if depth > 64:
        return
    if isinstance(data, EncryptedString):
        try:
            found.add(str(data))
        except Exception:  # pylint: disable=broad-exception-caught  # an undecryptable value is no plaintext to hide
            pass
    elif isinstance(data, str):
        if everything:
            found.add(str(data))
    elif isinstance(data, t.Mapping):
        for value in data.values():
            _collect(value, found, everything, depth + 1)
    elif isinstance(data, (list, tuple, set, frozenset)):
        for value in data:
            _collect(value, found, everything, depth + 1)


def _encrypted_file(path: str) -> bool:
    try:
        with open(path, "rb") as handle:
            return bool(is_encrypted_file(handle))
    except (OSError, TypeError):
        return False


def read_key(key: str | None, key_file: str | None, loader: t.Any = None) -> bytes | None:
    """A key from its option, else from its file (decrypted by the loader when Vault-encrypted); None when neither is set."""
    if key:
        return str(key).strip().encode("utf-8")
    if not key_file:
        return None
    path = os.path.expanduser(key_file)
    if not os.path.isfile(path):
        raise _audit.AuditError(f"cannot read the key file {path}: it does not exist or is not a regular file")
    try:
        if loader is not None:
            text = str(loader.get_text_file_contents(path))
        else:
            with open(path, encoding="utf-8") as handle:
                text = handle.read()
    except (OSError, AnsibleError) as exc:
        raise _audit.AuditError(f"cannot read the key file {path}: {_error_text(exc)}") from None
    text = text.strip()
    return text.encode("utf-8") if text else None


def raw_name(item: t.Any) -> str | None:
    """The name of a play or task as written in the playbook, before templating."""
    data = getattr(item, "_ds", None)
    if isinstance(data, t.Mapping) and data.get("name") is not None:
        return str(data["name"])
    return None


def _error_text(exc: BaseException) -> str:
    if isinstance(exc, OSError):
        return exc.strerror or type(exc).__name__
    message = getattr(exc, "message", None) or str(exc)
    return message.splitlines()[0].rstrip(".") if message else type(exc).__name__


def _text(value: t.Any) -> str | None:
    if value is None:
        return None
    text = str(value).strip()
    return text or None


def _os_user() -> str:
    try:
        return getpass.getuser()
    except (KeyError, OSError):
        return str(os.getuid())


class CallbackModule(CallbackBase):
    """Audit trail of playbook runs in the collection's chained audit log."""

    CALLBACK_VERSION = 2.0
    CALLBACK_TYPE = "notification"
    CALLBACK_NAME = "dihya.ops.audit"
    CALLBACK_NEEDS_ENABLED = True

    def __init__(self, display=None):
        super().__init__(display=display)
        self._log: _audit.AuditLog | None = None
        self._settings: _audit.AuditSettings | None = None
        self._context: dict[str, t.Any] | None = None
        self._buffer: list[dict] = []
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
            self._disable(_error_text(exc) if not isinstance(exc, _audit.AuditError) else str(exc))
            return False
        extra_vars: t.Mapping[str, t.Any] = {}
        plays = playbook.get_plays() if hasattr(playbook, "get_plays") else []
        if plays:
            manager = plays[0].get_variable_manager()
            if manager is not None:
                extra_vars = manager.extra_vars
                self._inventory = getattr(manager, "_inventory", None)
        self._context = resolve_context(extra_vars, user=self.get_option("user"), tenant=self.get_option("tenant"),
                                        trace_id=self.get_option("trace_id"))
        for warning in self._context["warnings"]:
            self._display.warning(f"dihya.ops.audit: {warning}.")
        # Workers inherit the environment: the dihya.ops.operation role reads the run's trace id from it, so the
        # audit events written on the hosts carry the same id as the run's events here.
        os.environ["DIHYA_TRACE_ID"] = self._context["trace_id"]
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
                self._warn_write(str(exc) if isinstance(exc, _audit.AuditError) else _error_text(exc))

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
                self._secrets, self._filter = secrets, _filter_of(secrets)
            self._secrets_source = len(cache)
        return self._filter

    def _safe_name(self, templated: t.Any, raw: t.Any) -> str:
        name = _text(templated) or _text(raw) or ""
        if VaultHelper.get_ciphertext(templated, with_tags=False) is not None or contains_secret(name, self._known_secrets()):
            name = _text(raw) or ""
            if contains_secret(name, self._known_secrets()):
                name = "(name withheld: it contains a Vault value)"
        return name

    def v2_playbook_on_start(self, playbook):
        if not self._setup(playbook):
            return
        self._playbook = os.path.basename(to_text(getattr(playbook, "_file_name", "") or ""))
        details = {"check_mode": bool(context.CLIARGS.get("check", False)), "user_source": self._context["user_source"],
                   "trace_id_source": self._context["trace_id_source"]}
        self._event("ansible.run.start", "success", {"playbook": self._playbook}, details)
        self._flush()

    def v2_playbook_on_play_start(self, play):
        if not self._interval:
            self._flush()
        self._play = self._safe_name(play.get_name(), raw_name(play))

    def v2_playbook_on_task_start(self, task, is_conditional):
        if not self._interval:
            self._flush()

    def v2_playbook_on_handler_task_start(self, task):
        if not self._interval:
            self._flush()

    def v2_runner_on_start(self, host, task):
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
        if status in ("failed", "unreachable") and not self._no_log(result):
            raw = getattr(result, "_return_data", None)
            message = raw.get("msg") if isinstance(raw, t.Mapping) and "msg" in raw else data.get("msg")
            message = safe_message(message, self._known_secrets())
            if message is not None:
                details["msg"] = message
        labels = {
            "status": status, "playbook": self._playbook, "play": self._play,
            "task": self._safe_name(result.task_fields.get("name") or task.get_name(), raw_name(task)),
            "module": to_text(getattr(task, "resolved_action", None) or task.action or ""),
        }
        self._event("ansible.task", "failure" if status in ("failed", "unreachable") else "success", labels, details, host=host)

    @staticmethod
    def _no_log(result: t.Any) -> bool:
        flags = [result.task_fields.get("no_log"), getattr(result.task, "no_log", None)]
        if any(flag is True or (flag is not None and not isinstance(flag, bool)) for flag in flags):
            return True
        data = result.result
        if data.get("censored") or data.get("_ansible_no_log"):
            return True
        items = data.get("results")
        return isinstance(items, list) and any(isinstance(item, t.Mapping) and (item.get("censored") or item.get("_ansible_no_log"))
                                               for item in items)

    def v2_runner_on_ok(self, result):
        self._task_event("ok", result)

    def v2_runner_on_failed(self, result, ignore_errors=False):
        self._task_event("failed", result, ignore_errors=ignore_errors)

    def v2_runner_on_skipped(self, result):
        self._task_event("skipped", result)

    def v2_runner_on_unreachable(self, result):
        self._task_event("unreachable", result)

    def v2_playbook_on_stats(self, stats):
        hosts = {host: stats.summarize(host) for host in sorted(stats.processed)}
        failed = any(summary["failures"] or summary["unreachable"] for summary in hosts.values())
        self._event("ansible.run.end", "failure" if failed else "success", {"playbook": self._playbook}, {"hosts": hosts})
        self._flush()
