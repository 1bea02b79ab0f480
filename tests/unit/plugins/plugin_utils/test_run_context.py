# Copyright (c) Dihya ops maintainers
# GNU General Public License v3.0+ (see LICENSES/GPL-3.0-or-later.txt or https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later

"""Tests of the run context: every identity source and its precedence, the trace id of the run, and hostile values."""

from __future__ import annotations

import multiprocessing
import os
import pwd

import pytest

from ansible_collections.dihya.ops.plugins.module_utils import _ids
from ansible_collections.dihya.ops.plugins.plugin_utils import _run_context
from ansible_collections.dihya.ops.plugins.plugin_utils._run_context import ContextError, resolve

TRACE = "4bf92f3577b34da6a3ce929d0e0e4736"
TRUST = {"DIHYA_OPS_TRUST_DECLARED_USER": "true"}


@pytest.fixture(autouse=True)
def fixture_no_pinned_caller(monkeypatch):
    """No callback option recorded by another test."""
    monkeypatch.setattr(_run_context, "_RUN", {"trace_id": _run_context.run_trace_id()})


def test_identity_sources_in_their_order():
    everything = {"awx_user_name": "alice", "tower_user_name": "bob", "dihya_ops_user": "carol"}
    env = dict(TRUST, DIHYA_OPS_USER="ci-runner", DIHYA_AUDIT_USER="ci-audit")
    assert (resolve(everything, env).user, resolve(everything, env).user_source) == ("alice", "awx")
    without_awx = {"tower_user_name": "bob", "dihya_ops_user": "carol"}
    assert (resolve(without_awx, env).user, resolve(without_awx, env).user_source) == ("bob", "awx")
    declared = {"dihya_ops_user": "carol"}
    assert (resolve(declared, env).user, resolve(declared, env).user_source) == ("ci-runner", "caller")
    assert resolve(declared, dict(TRUST, DIHYA_AUDIT_USER="ci-audit")).user == "ci-audit"
    assert resolve(declared, TRUST, caller_user="from-option").user == "from-option"
    assert (resolve(declared, TRUST).user, resolve(declared, TRUST).user_source) == ("carol", "declared")
    plain = resolve({}, {})
    assert (plain.user, plain.user_source, plain.warnings) == (pwd.getpwuid(os.geteuid()).pw_name, "os", ())


@pytest.mark.parametrize("switch", ["", "false", "0", "no", "maybe", " "])
def test_a_declared_user_is_ignored_unless_the_controller_trusts_it(switch):
    found = resolve({"dihya_ops_user": "mallory"}, {"DIHYA_OPS_TRUST_DECLARED_USER": switch}, system_user="root")
    assert (found.user, found.user_source) == ("root", "os")
    assert len(found.warnings) == 1 and "dihya_ops_user is ignored" in found.warnings[0]


@pytest.mark.parametrize("switch", ["true", "TRUE", "1", "yes", "on"])
def test_the_trust_switch_accepts_the_usual_true_values(switch):
    assert resolve({"dihya_ops_user": "carol"}, {"DIHYA_OPS_TRUST_DECLARED_USER": switch}).user_source == "declared"


def test_the_os_user_is_the_effective_user_never_user(monkeypatch):
    monkeypatch.setenv("USER", "someone-else")
    monkeypatch.setenv("LOGNAME", "someone-else")
    assert _run_context.os_user() == pwd.getpwuid(os.geteuid()).pw_name
    monkeypatch.delenv("USER")
    assert resolve({}, {}).user == pwd.getpwuid(os.geteuid()).pw_name
    free = max(entry.pw_uid for entry in pwd.getpwall()) + 1000
    monkeypatch.setattr(os, "geteuid", lambda: free)
    assert _run_context.os_user() == f"uid:{free}"


def test_blank_values_fall_through_to_the_next_source():
    found = resolve({"awx_user_name": "  ", "tower_user_name": "", "dihya_ops_tenant": " ", "dihya_trace_id": ""},
                    {"DIHYA_OPS_USER": "\t"}, system_user="root")
    assert (found.user, found.tenant, found.trace_id_source) == ("root", None, "run")


def test_tenant_environment_request_id_and_labels():
    found = resolve({"dihya_ops_tenant": "acme-eu.1", "dihya_environment": "prod", "dihya_ops_request_id": "CHG-1234",
                     "awx_job_id": 42, "tower_job_template_name": "Restart"}, {})
    assert (found.tenant, found.environment, found.correlation_id) == ("acme-eu.1", "prod", "CHG-1234")
    assert found.labels == {"awx_job_id": "42", "awx_job_template": "Restart", "environment": "prod"}
    assert resolve({"dihya_tenant": "globex"}, {}).tenant == "globex"
    assert resolve({}, {}, caller_tenant="initech").tenant == "initech"
    assert resolve({"dihya_ops_tenant": "acme"}, {}, caller_tenant="initech").tenant == "acme"
    fact = found.fact("web-1")
    assert fact == {"user": found.user, "user_source": "os", "tenant": "acme-eu.1", "environment": "prod", "trace_id": found.trace_id,
                    "trace_id_source": "run", "correlation_id": "CHG-1234", "host": "web-1"}


def test_trace_id_sources_in_their_order():
    other = "0af7651916cd43dd8448eb211c80319c"
    assert (resolve({"dihya_trace_id": TRACE.upper()}, {"DIHYA_TRACE_ID": other}).trace_id,
            resolve({"dihya_trace_id": TRACE}, {}).trace_id_source) == (TRACE, "extra_vars")
    assert (resolve({}, {}, caller_trace_id=TRACE).trace_id, resolve({}, {}, caller_trace_id=TRACE).trace_id_source) == (TRACE, "option")
    for name in ("DIHYA_TRACE_ID", "DIHYA_AUDIT_TRACE_ID"):
        found = resolve({}, {name: other})
        assert (found.trace_id, found.trace_id_source) == (other, "caller")
    run = resolve({}, {})
    assert run.trace_id_source == "run" and run.trace_id == _run_context.run_trace_id() and _ids.is_trace_id(run.trace_id)
    assert resolve({}, {}).trace_id == run.trace_id, "one id for the whole run"


def test_the_run_trace_id_is_inherited_by_forked_workers():
    """ansible-playbook forks its workers: they all see the id of the controller process."""
    _run_context.pin_trace_id(TRACE)
    context = multiprocessing.get_context("fork")
    with context.Pool(2) as pool:
        seen = pool.map(_worker_trace_id, range(4))
    assert seen == [TRACE] * 4


def _worker_trace_id(dummy: int) -> str:
    return resolve({}, {}).trace_id


def test_pinned_callback_options_are_the_callers_values():
    _run_context.pin_caller_user("ci-bot")
    _run_context.pin_caller_tenant("globex")
    found = resolve({}, {})
    assert (found.user, found.user_source, found.tenant) == ("ci-bot", "caller", "globex")
    unpinned = resolve({}, {}, pinned=False, system_user="root")
    assert (unpinned.user, unpinned.tenant) == ("root", None)
    _run_context.pin_caller_user(None)
    _run_context.pin_caller_tenant("  ")
    with pytest.raises(ContextError, match=r"tenant option"):
        _run_context.pin_caller_tenant("../globex")
    with pytest.raises(ContextError, match=r"32 hexadecimal digits"):
        _run_context.pin_trace_id("0" * 32)


HOSTILE_NAMES = ["../acme", "acme/../globex", "..", "acme'", 'ac"me', "acme; rm -rf /", "acme\nglobex", "acme\x00", "a" * 64,
                 "a" * 10000, "-acme", ".acme", "acme corp", "ac..me", "acmé", "$(id)", "{{ lookup('pipe', 'id') }}"]


@pytest.mark.parametrize("value", HOSTILE_NAMES)
def test_hostile_tenant_names_are_refused_naming_the_variable(value):
    with pytest.raises(ContextError, match=r"dihya_ops_tenant=.* is not a tenant name") as error:
        resolve({"dihya_ops_tenant": value}, {})
    assert error.value.variable == "dihya_ops_tenant"
    assert len(str(error.value)) < 300, "a very long value is not repeated whole"
    assert "\n" not in str(error.value) and "\x00" not in str(error.value)


@pytest.mark.parametrize("value", [*HOSTILE_NAMES[:13], "Prod", "1prod", "p" * 33])
def test_hostile_environment_names_are_refused(value):
    with pytest.raises(ContextError, match=r"dihya_environment=.* is not an environment name") as error:
        resolve({"dihya_environment": value}, {})
    assert error.value.variable == "dihya_environment"


@pytest.mark.parametrize("value", ["../../etc/passwd", "zz" * 16, "4bf92f3577b34da6", TRACE + "0", "0" * 32, TRACE[:-1] + "\n",
                                   " " + TRACE[:16] + " " + TRACE[16:], "g" * 32, "'" + TRACE[2:] + "'", "x" * 5000])
def test_hostile_trace_ids_are_refused_naming_the_variable(value):
    with pytest.raises(ContextError, match=r"dihya_trace_id=.* is not a trace id") as error:
        resolve({"dihya_trace_id": value}, {})
    assert error.value.variable == "dihya_trace_id"
    with pytest.raises(ContextError, match=r"DIHYA_TRACE_ID=.* is not a trace id"):
        resolve({}, {"DIHYA_TRACE_ID": value})


def test_without_strict_a_bad_trace_id_is_ignored_with_a_warning():
    found = resolve({"dihya_trace_id": "../x"}, {"DIHYA_AUDIT_TRACE_ID": "nope", "DIHYA_TRACE_ID": TRACE}, strict=False)
    assert (found.trace_id, found.trace_id_source) == (TRACE, "caller")
    assert [warning.split("=")[0] for warning in found.warnings] == ["dihya_trace_id"]


@pytest.mark.parametrize(("value", "reason"), [("alice\nroot", "control character"), ("alice\x00", "control character"),
                                               ("bob\u2028bob", "control character"), ("a" * 257, "257 characters long"),
                                               ("tab\there", "control character")])
def test_hostile_user_names_are_refused_naming_the_source(value, reason):
    for variables, env, name in (({"awx_user_name": value}, {}, "awx_user_name"), ({}, {"DIHYA_OPS_USER": value}, "DIHYA_OPS_USER"),
                                 ({"dihya_ops_user": value}, TRUST, "dihya_ops_user")):
        with pytest.raises(ContextError, match=rf"{name} .*{reason}") as error:
            resolve(variables, env)
        assert error.value.variable == name
        assert value not in str(error.value), "a refused user name is not repeated"


def test_a_user_name_with_quotes_or_path_characters_is_kept_as_text():
    """A user name is recorded as a pseudonym, never used as a path: quotes and slashes are not refused."""
    for value in ("o'brien", "DOMAIN\\alice", "alice@example.org", "../alice"):
        assert resolve({"awx_user_name": value}, {}).user == value


@pytest.mark.parametrize("value", ["../../CHG", "CHG 1", "CHG\n1", "'CHG'", "c" * 129, "-CHG"])
def test_hostile_request_ids_are_refused(value):
    with pytest.raises(ContextError, match=r"dihya_ops_request_id=.* is not a request id"):
        resolve({"dihya_ops_request_id": value}, {})


@pytest.mark.parametrize("value", [42, ["acme"], {"name": "acme"}, True])
def test_values_that_are_not_strings_are_refused(value):
    with pytest.raises(ContextError, match=r"dihya_ops_tenant must be a string"):
        resolve({"dihya_ops_tenant": value}, {})


def test_text_of():
    assert _run_context.text_of(None) is None
    assert _run_context.text_of("  ") is None
    assert _run_context.text_of(" a ") == "a"
    assert _run_context.text_of(7) == "7"
