# Copyright (c) Dihya ops maintainers
# GNU General Public License v3.0+ (see LICENSES/GPL-3.0-or-later.txt or https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later

# This plugin utility is PRIVATE to the collection. It can change at any time.

"""What the audit callback knows about a run: who runs it, for which tenant, under which trace id, with which keys.

Also the status and the playbook name of a task, as the callback records them. Pure functions of what
Ansible hands the callback; the callback itself only wires them to its events.
"""

from __future__ import annotations

import getpass
import os
import typing as t

from ansible.errors import AnsibleError

from ansible_collections.dihya.ops.plugins.module_utils._audit import AuditError
from ansible_collections.dihya.ops.plugins.module_utils._ids import is_trace_id, new_trace_id


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
        if clean_text(extra.get(name)):
            resolved_user, source = clean_text(extra[name]), "awx"
            break
    if resolved_user is None and clean_text(extra.get("dihya_ops_user")):
        resolved_user, source = clean_text(extra["dihya_ops_user"]), "extra_vars"
    if resolved_user is None and clean_text(user):
        resolved_user, source = clean_text(user), "option"
    if resolved_user is None:
        resolved_user = os_user if os_user is not None else _os_user()
    for label, names in (("awx_job_id", ("awx_job_id", "tower_job_id")), ("awx_job_template", ("awx_job_template_name", "tower_job_template_name"))):
        for name in names:
            found = clean_text(extra.get(name))
            if found:
                labels[label] = found
                break
    resolved_tenant = clean_text(extra.get("dihya_ops_tenant")) or clean_text(extra.get("dihya_tenant")) or clean_text(tenant)
    resolved_trace, trace_source = None, "new"
    for candidate, candidate_source in ((extra.get("dihya_trace_id"), "extra_vars"), (trace_id, "option")):
        value = clean_text(candidate)
        if not value:
            continue
        if is_trace_id(value.lower()):
            resolved_trace, trace_source = value.lower(), candidate_source
            break
        warnings.append(f"the {'extra variable dihya_trace_id' if candidate_source == 'extra_vars' else 'trace_id option'} "
                        "is not a trace id of 32 hexadecimal digits; it is ignored")
    return {
        "user": resolved_user, "user_source": source, "tenant": resolved_tenant,
        "trace_id": resolved_trace or new_trace_id(), "trace_id_source": trace_source,
        "labels": labels, "warnings": warnings,
    }


def task_status(kind: str, result: t.Mapping[str, t.Any]) -> str:
    """Status of one task result on one host from the callback event and the result's changed flag."""
    if kind in ("failed", "skipped", "unreachable"):
        return kind
    return "changed" if result.get("changed") else "ok"


def output_hidden(result: t.Any) -> bool:
    """Whether a task result must not show its output: ``no_log`` on the task (in any form), or a censored result or item."""
    flags = [result.task_fields.get("no_log"), getattr(result.task, "no_log", None)]
    if any(flag is True or (flag is not None and not isinstance(flag, bool)) for flag in flags):
        return True
    data = result.result
    if data.get("censored") or data.get("_ansible_no_log"):
        return True
    items = data.get("results")
    return isinstance(items, list) and any(isinstance(item, t.Mapping) and (item.get("censored") or item.get("_ansible_no_log"))
                                           for item in items)


def task_message(result: t.Any) -> t.Any:
    """The failure message of a task result as the module returned it (before Ansible's own post-processing), or None."""
    raw = getattr(result, "_return_data", None)
    return raw.get("msg") if isinstance(raw, t.Mapping) and "msg" in raw else result.result.get("msg")


def read_key(key: str | None, key_file: str | None, loader: t.Any = None) -> bytes | None:
    """A key from its option, else from its file (decrypted by the loader when Vault-encrypted); None when neither is set."""
    if key:
        return str(key).strip().encode("utf-8")
    if not key_file:
        return None
    path = os.path.expanduser(key_file)
    if not os.path.isfile(path):
        raise AuditError(f"cannot read the key file {path}: it does not exist or is not a regular file")
    try:
        if loader is not None:
            text = str(loader.get_text_file_contents(path))
        else:
            with open(path, encoding="utf-8") as handle:
                text = handle.read()
    except (OSError, AnsibleError) as exc:
        raise AuditError(f"cannot read the key file {path}: {error_text(exc)}") from None
    text = text.strip()
    return text.encode("utf-8") if text else None


def raw_name(item: t.Any) -> str | None:
    """The name of a play or task as written in the playbook, before templating."""
    data = getattr(item, "_ds", None)
    if isinstance(data, t.Mapping) and data.get("name") is not None:
        return str(data["name"])
    return None


def error_text(exc: BaseException) -> str:
    """A short reason for ``exc``, fit for a one-line warning: its first line, or its type's name."""
    if isinstance(exc, OSError):
        return exc.strerror or type(exc).__name__
    message = getattr(exc, "message", None) or str(exc)
    return message.splitlines()[0].rstrip(".") if message else type(exc).__name__


def clean_text(value: t.Any) -> str | None:
    """``value`` as text without surrounding white space; None for None or blank text."""
    if value is None:
        return None
    text = str(value).strip()
    return text or None


def _os_user() -> str:
    try:
        return getpass.getuser()
    except (KeyError, OSError):
        return str(os.getuid())
