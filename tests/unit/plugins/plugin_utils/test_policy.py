# Copyright (c) Dihya ops maintainers
# GNU General Public License v3.0+ (see LICENSES/GPL-3.0-or-later.txt or https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later

"""The authorisation policy: loading (line-numbered errors, hostile input) and every allow and deny path of evaluate."""

from __future__ import annotations

import datetime
import hashlib
import os
import time

import pytest

from ansible_collections.dihya.ops.plugins.plugin_utils import _policy
from ansible_collections.dihya.ops.plugins.plugin_utils._policy import Request

POLICY = """\
version: 1
roles:
  operator:
    operations: [check_health, restart_services, rotate_logs, purge_temp_files, update_dependencies, audit]
    environments: all
    check_only: false
  support:
    operations: [check_health, rgpd.inventory, rgpd.export]
    environments: [dev, staging, prod]
  auditor:
    operations: ["*"]
    environments: [prod]
    check_only: true
  dpo:
    operations: ["rgpd.*"]
    environments: all
    approve: [rgpd.erase, rgpd.anonymise]
groups:
  sre: [alice, carol]
  privacy: [dana]
bindings:
  - groups: [sre]
    roles: [operator]
    tenants: all
  - users: [bob]
    roles: [support]
    tenants: [acme]
  - users: [erin]
    roles: [auditor]
    tenants: all
  - groups: [privacy]
    users: [frank]
    roles: [dpo]
    tenants: [acme, globex]
quotas:
  - operations: [rgpd.export]
    per: tenant
    max_runs: 5
    window: 1h
concurrency:
  - operations: [update_dependencies]
    per: environment
    max: 1
    lock_ttl: 2h
anti_abuse:
  max_denials: 5
  window: 15m
  lockout: 30m
"""


@pytest.fixture(name="policy")
def fixture_policy() -> _policy.Policy:
    return _policy.parse(POLICY, "policy.yml")


def decide(policy: _policy.Policy, user: str, operation: str, tenant: str | None = "acme", environment: str | None = "prod",
           check_mode: bool = False) -> _policy.Decision:
    return _policy.evaluate(policy, Request(user, operation, tenant, environment, check_mode))


def test_the_policy_of_the_format_loads(policy):
    assert set(policy.roles) == {"operator", "support", "auditor", "dpo"}
    assert policy.roles["dpo"].operations == frozenset(_policy.RGPD_OPERATIONS)
    assert policy.roles["auditor"].operations == frozenset(_policy.ALL_OPERATIONS) and policy.roles["auditor"].check_only
    assert policy.roles["operator"].environments is None and policy.roles["support"].environments == {"dev", "staging", "prod"}
    assert policy.groups["sre"] == {"alice", "carol"}
    assert policy.bindings[1].tenants == {"acme"} and policy.bindings[0].tenants is None and policy.bindings[1].line == 25
    assert policy.quotas[0].window == datetime.timedelta(hours=1) and policy.quotas[0].max_runs == 5
    assert policy.concurrency[0].lock_ttl == datetime.timedelta(hours=2) and policy.concurrency[0].per == "environment"
    assert policy.anti_abuse == _policy.AntiAbuse(5, datetime.timedelta(minutes=15), datetime.timedelta(minutes=30))


def test_the_message_of_the_issue(policy):
    decision = decide(policy, "bob", "rgpd.erase", "globex", "prod")
    assert not decision.allowed
    assert decision.reason.startswith("access denied: bob (role support) may not run rgpd.erase for tenant globex in prod: ")
    assert "bob" not in decision.impersonal and decision.impersonal.startswith("access denied: the user (role support)")
    assert decision.summary()["reason"] == decision.impersonal


def test_a_user_of_one_tenant_asking_for_another(policy):
    decision = decide(policy, "bob", "check_health", "globex")
    assert not decision.allowed and "bound to tenants acme only" in decision.reason
    assert decide(policy, "bob", "check_health", "acme").allowed


def test_a_run_for_every_tenant_needs_tenants_all(policy):
    decision = decide(policy, "bob", "check_health", None)
    assert not decision.allowed and 'needs a binding with "tenants: all"' in decision.reason
    assert "every tenant" in decision.reason
    assert decide(policy, "alice", "check_health", None).allowed


def test_a_role_without_the_operation(policy):
    decision = decide(policy, "bob", "restart_services")
    assert not decision.allowed and "has the operation restart_services" in decision.reason and decision.roles == ("support",)


def test_an_environment_not_granted(policy):
    decision = decide(policy, "bob", "check_health", environment="qa")
    assert not decision.allowed and "granted in dev, prod, staging only" in decision.reason
    unnamed = decide(policy, "bob", "check_health", environment=None)
    assert not unnamed.allowed and "unnamed environment" in unnamed.reason
    assert decide(policy, "alice", "check_health", environment=None).allowed


def test_check_only_roles_may_dry_run_only(policy):
    assert decide(policy, "erin", "restart_services", check_mode=True).allowed
    real = decide(policy, "erin", "restart_services")
    assert not real.allowed and "only dry runs (--check)" in real.reason and "may not run restart_services" in real.reason


def test_a_denied_dry_run_is_denied(policy):
    decision = decide(policy, "bob", "rgpd.erase", check_mode=True)
    assert not decision.allowed and "may not dry-run rgpd.erase" in decision.reason


def test_an_unknown_user_is_denied(policy):
    decision = decide(policy, "mallory", "check_health")
    assert not decision.allowed and "no binding of the policy gives this user a role" in decision.reason
    assert "(no role)" in decision.reason


def test_an_unknown_operation_is_denied(policy):
    assert "not an operation the policy knows" in decide(policy, "alice", "rm_rf").reason


def test_groups_and_users_of_one_binding(policy):
    assert decide(policy, "carol", "update_dependencies").allowed
    assert decide(policy, "dana", "rgpd.erase", "globex").allowed and decide(policy, "frank", "rgpd.erase", "globex").allowed
    assert not decide(policy, "dana", "rgpd.erase", "initech").allowed


def test_precedence_a_real_run_needs_a_role_that_is_not_check_only():
    policy = _policy.parse("""\
version: 1
roles:
  look: {operations: ["*"], environments: all, check_only: true}
  act: {operations: [check_health], environments: [dev]}
bindings:
  - {users: [u], roles: [look, act], tenants: all}
""")
    assert decide(policy, "u", "check_health", environment="dev").roles == ("act",)
    assert decide(policy, "u", "check_health", environment="dev", check_mode=True).roles == ("act", "look")
    assert not decide(policy, "u", "check_health", environment="prod").allowed
    assert decide(policy, "u", "restart_services", environment="prod", check_mode=True).allowed


def test_approvals_quotas_and_concurrency_of_an_allowed_request(policy):
    erase = decide(policy, "dana", "rgpd.erase", environment="dev")
    assert erase.allowed and erase.needs_approval
    restart = decide(policy, "alice", "restart_services", environment="prod")
    assert restart.needs_approval and not decide(policy, "alice", "restart_services", environment="dev").needs_approval
    assert decide(policy, "bob", "rgpd.export").quotas == policy.quotas
    assert decide(policy, "alice", "update_dependencies").concurrency == policy.concurrency
    assert decide(policy, "alice", "check_health").quotas == () and not decide(policy, "alice", "check_health").needs_approval


def test_approvals_can_be_turned_off_or_changed():
    base = "version: 1\nroles: {r: {operations: ['*']}}\nbindings: [{users: [u], roles: [r], tenants: all}]\n"
    assert not decide(_policy.parse(base + "approvals: []\n"), "u", "rgpd.erase").needs_approval
    custom = _policy.parse(base + "approvals:\n  - operations: [check_health]\n    environments: [prod]\n    max_age: 24h\n")
    assert custom.approvals[0].max_age == datetime.timedelta(hours=24)
    assert decide(custom, "u", "check_health").needs_approval and not decide(custom, "u", "rgpd.erase").needs_approval


def test_approvers_hold_an_approve_role_for_the_tenant(policy):
    assert _policy.approvers(policy, "dana", "rgpd.erase", "acme") == ("dpo",)
    assert _policy.approvers(policy, "dana", "rgpd.erase", "initech") == ()
    assert _policy.approvers(policy, "alice", "rgpd.erase", "acme") == ()
    assert _policy.approvers(policy, "dana", "rgpd.erase", None) == ()


def test_a_policy_that_grants_nothing_is_valid_and_denies_everything():
    for text in ("version: 1\n", "version: 1\nroles: {r: {operations: []}}\nbindings: [{users: [u], roles: [r], tenants: all}]\n"):
        policy = _policy.parse(text)
        assert policy.grants_nothing
        decision = decide(policy, "u", "check_health")
        assert not decision.allowed and "the policy grants no role any operation" in decision.reason


def test_the_params_hash_is_canonical():
    assert _policy.params_hash({"b": 1, "a": [1, 2]}) == _policy.params_hash({"a": [1, 2], "b": 1})
    assert _policy.params_hash({"a": 1}) != _policy.params_hash({"a": 2})
    # The text every digest of the collection is computed over (module_utils/_canonical).
    assert _policy.params_hash({"subject": "é"}) == hashlib.sha256('{"subject":"é"}'.encode()).hexdigest()


@pytest.mark.parametrize("value", [datetime.date(2026, 12, 3), {1, 2}, float("nan"), float("inf"), b"bytes"])
def test_parameters_that_are_not_json_are_an_error_not_a_text_of_their_own(value):
    with pytest.raises(_policy.PolicyError, match="not plain JSON data"):
        _policy.params_hash({"subject": value})


@pytest.mark.parametrize(("text", "message"), [
    ("version: 1\nfoo: 1\n", "line 2, foo: unknown key 'foo'"),
    ("version: 2\n", "line 1, version: this collection reads policies of version 1"),
    ("roles: {}\n", "the key version is required"),
    ("", "the policy is empty"),
    ("version: 1\nroles:\n  r:\n    operations: [check_health]\n    colour: red\n", "line 5, roles.r.colour: unknown key 'colour'"),
    ("version: 1\nroles:\n  r:\n    operations: [reboot]\n", "line 4, roles.r.operations: unknown operation 'reboot'"),
    ("version: 1\nroles:\n  r:\n    environments: all\n", "line 4, roles.r: the key operations is required"),
    ("version: 1\nroles:\n  r: {operations: [audit], check_only: 'yes'}\n", "roles.r.check_only: expected true or false"),
    ("version: 1\nroles:\n  r: {operations: [audit], environments: [Prod]}\n", "roles.r.environments: value='Prod' is not an environment"),
    ("version: 1\nroles:\n  r: {operations: audit}\n", "roles.r.operations: expected a list"),
    ("version: 1\nroles:\n  'a b': {operations: [audit]}\n", "'a b' is not a name"),
    ("version: 1\nroles: {r: {operations: [audit]}}\nbindings:\n  - {users: [u], roles: [r], tenants: ['../etc']}\n",
     "line 4, bindings[0].tenants: value='../etc' is not a tenant name"),
    ("version: 1\nroles: {r: {operations: [audit]}}\nbindings:\n  - {users: [u], roles: [r], tenants: [\"acme'; DROP\"]}\n",
     "is not a tenant name"),
    ("version: 1\nroles: {r: {operations: [audit]}}\nbindings:\n  - {users: [u], roles: [r], tenants: [" + "t" * 300 + "]}\n",
     "is not a tenant name"),
    ("version: 1\nroles: {r: {operations: [audit]}}\nbindings:\n  - {users: [u], roles: [r], tenants: [7]}\n", "expected tenant names (text)"),
    ("version: 1\nroles: {r: {operations: [audit]}}\nbindings:\n  - {users: [u], roles: [x], tenants: all}\n", "the role x is not defined"),
    ("version: 1\nroles: {r: {operations: [audit]}}\nbindings:\n  - {groups: [g], roles: [r], tenants: all}\n", "the group g is not defined"),
    ("version: 1\nroles: {r: {operations: [audit]}}\nbindings:\n  - {roles: [r], tenants: all}\n", "a binding names users, groups or both"),
    ("version: 1\nroles: {r: {operations: [audit]}}\nbindings:\n  - {users: [u], roles: [r]}\n", "the key tenants is required"),
    ("version: 1\ngroups: {g: [\"a\\nb\"]}\n", "groups.g: a user name is one line"),
    ("version: 1\nroles: {}\nroles: {}\n", "line 3, roles: the key is given twice"),
    ("version: 1\nquotas: [{operations: [audit], per: host, max_runs: 1, window: 1h}]\n", "quotas[0].per: expected one of tenant"),
    ("version: 1\nquotas: [{operations: [audit], per: tenant, max_runs: 0, window: 1h}]\n", "quotas[0].max_runs: expected a whole number"),
    ("version: 1\nquotas: [{operations: [audit], per: tenant, max_runs: true, window: 1h}]\n", "expected a whole number"),
    ("version: 1\nquotas: [{operations: [audit], per: tenant, max_runs: 1, window: 1w}]\n", "quotas[0].window: expected a duration"),
    ("version: 1\nquotas: [{operations: [audit], per: tenant, max_runs: 1, window: 400d}]\n", "a duration is at most a year"),
    ("version: 1\nconcurrency: [{operations: [audit], per: user, max: 1, lock_ttl: 1h}]\n", "concurrency[0].per: expected one of"),
    ("version: 1\nanti_abuse: {max_denials: 5, window: 15m}\n", "anti_abuse: the key lockout is required"),
    ("version: 1\nroles: [a, b]\n", "roles: expected a mapping"),
    ("version: 1\nroles:\n  r: {operations: [[audit]]}\n", "expected a single value"),
    ("version: 1\nroles: {r: {operations: [2020-01-01]}}\n", "is not a string, number or boolean"),
    ("version: [1\n", "not valid YAML"),
    ("a: &x [1]\nb: *x\n", "line 1: YAML anchors and aliases"),
    ("version: !!python/object/apply:os.system ['true']\n", "explicit YAML tags"),
    ("version: 1\nroles: !!map {}\n", "explicit YAML tags"),
])
def test_bad_policies_are_refused_naming_the_line_and_key(text, message):
    with pytest.raises(_policy.PolicyError) as error:
        _policy.parse(text, "/etc/dihya/policy.yml")
    assert str(error.value).startswith("/etc/dihya/policy.yml")
    assert message in str(error.value)


def test_a_billion_laughs_is_a_quick_clear_error():
    lines = ["version: 1", 'a: &a ["lol","lol","lol","lol","lol","lol","lol","lol","lol"]']
    lines += [f"{chr(98 + index)}: &{chr(98 + index)} [" + ",".join([f"*{chr(97 + index)}"] * 9) + "]" for index in range(8)]
    started = time.monotonic()
    with pytest.raises(_policy.PolicyError, match="anchors and aliases"):
        _policy.parse("\n".join(lines) + "\n")
    assert time.monotonic() - started < 2


def test_a_policy_over_the_size_limit_is_refused(tmp_path):
    with pytest.raises(_policy.PolicyError, match="at most 1048576 bytes"):
        _policy.parse("version: 1\n" + "#" * _policy.MAX_POLICY_BYTES)
    big = tmp_path / "big.yml"
    big.write_bytes(b"version: 1\n" + b"#" * _policy.MAX_POLICY_BYTES)
    with pytest.raises(_policy.PolicyError, match="at most 1048576 bytes"):
        _policy.load(str(big))


def test_load_reads_a_regular_file_only(tmp_path):
    good = tmp_path / "policy.yml"
    good.write_text(POLICY)
    assert _policy.load(str(good)).source == str(good)
    link = tmp_path / "link.yml"
    link.symlink_to(good)
    fifo = tmp_path / "fifo"
    os.mkfifo(fifo)
    (tmp_path / "latin1.yml").write_bytes(b"version: 1\n# \xe9\n")
    for path, message in ((str(link), "cannot read the policy file"), (str(tmp_path), "is not a regular file"),
                          (str(fifo), "is not a regular file"), (str(tmp_path / "missing.yml"), "cannot read the policy file"),
                          ("policy.yml", "is not an absolute path"), ("", "empty"), ("/a\x00b", "NUL"),
                          (str(tmp_path / "latin1.yml"), "is not UTF-8 text")):
        with pytest.raises(_policy.PolicyError, match=message):
            _policy.load(path)
