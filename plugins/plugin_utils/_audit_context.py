# Copyright (c) Dihya ops maintainers
# GNU General Public License v3.0+ (see LICENSES/GPL-3.0-or-later.txt or https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later

# This plugin utility is PRIVATE to the collection. It can change at any time.

"""What the audit callback knows about a run: who runs it, for which tenant, under which trace id, with which keys.

Also the status and the playbook name of a task, as the callback records them. Pure functions of what
Ansible hands the callback; the callback itself only wires them to its events.
"""

from __future__ import annotations

import os
import typing as t

from ansible.errors import AnsibleError

from ansible_collections.dihya.ops.plugins.module_utils._audit import AuditError
from ansible_collections.dihya.ops.plugins.plugin_utils import _run_context


def resolve_context(extra_vars: t.Mapping[str, t.Any] | None, *, user: str | None = None, tenant: str | None = None,
                    trace_id: str | None = None, os_user: str | None = None,
                    environ: t.Mapping[str, str] | None = None) -> dict[str, t.Any]:
    """Who runs, for which tenant, under which trace id, as the ``dihya.ops.operation_context`` action resolves it.

    The run context of :mod:`._run_context` (the same order of sources, the same validation), with the callback's
    options as the caller's values; a malformed trace id is ignored with a warning (the callback does not stop a
    run), and so is any other malformed value. The resolved trace id, user option
    and tenant option become the run's own, so the workers forked later (the action plugin) resolve the same ones.

    Returns user, user_source (awx, caller, declared or os), tenant, trace_id, trace_id_source (extra_vars, option,
    caller or run), labels (AWX job id and template name when present) and warnings.
    """
    extra = dict(extra_vars or {})
    env = dict(os.environ if environ is None else environ)
    options = {"user": user, "tenant": tenant}
    refused: list[str] = []
    # The callback records the run even when its context is malformed (the operation_context action stops the run):
    # each malformed value is left out with a warning, and the context resolved without it.
    for dummy in range(16):
        try:
            found = _run_context.resolve(extra, env, strict=False, caller_user=options["user"], caller_tenant=options["tenant"],
                                         caller_trace_id=trace_id, system_user=os_user, pinned=False)
            break
        except _run_context.ContextError as exc:
            refused.append(f"{exc}; it is ignored")
            extra.pop(exc.variable, None)
            env.pop(exc.variable, None)
            for name in options:
                if exc.variable == f"the {name} option of the dihya.ops.audit callback":
                    options[name] = None
    else:  # pragma: no cover - every refusal removes one value, and there are fewer than 16
        raise AuditError("the run context could not be resolved")
    _run_context.pin_trace_id(found.trace_id)
    _run_context.pin_caller_user(options["user"])
    _run_context.pin_caller_tenant(options["tenant"])
    return {
        "user": found.user, "user_source": found.user_source, "tenant": found.tenant,
        "trace_id": found.trace_id, "trace_id_source": found.trace_id_source,
        "labels": dict(found.labels), "warnings": refused + list(found.warnings),
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
