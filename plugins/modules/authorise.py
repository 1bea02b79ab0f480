#!/usr/bin/python
# Copyright (c) Dihya ops maintainers
# GNU General Public License v3.0+ (see LICENSES/GPL-3.0-or-later.txt or https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later

from __future__ import annotations


DOCUMENTATION = r"""
module: authorise
short_description: Decide, on the controller and before any host task, whether the run may do its operation
version_added: 0.2.0
description:
  - Reads the authorisation policy (YAML, see C(docs/policy.md) in the collection) and decides, for every distinct
    operation, tenant and environment of the play's hosts (C(ansible_play_hosts_all)), whether the user of the run
    may do it. Deny by default; check-only roles may dry-run (C(--check)) only; a denied dry run is denied.
  - The policy file is named by the environment variable C(DIHYA_OPS_POLICY) of C(ansible-playbook) (AWX - the
    execution environment), else by the inventory variable C(dihya_ops_policy_file). When both are set and differ, the
    variable is ignored with a warning, so that an extra variable cannot escape the controller's policy. Without a
    policy every operation is refused.
  - The user, tenant, environment and trace id are those of the run context (M(dihya.ops.operation_context)). The operation
    is O(operation) (the operation role gives its C(operation_name)); for C(rgpd) it is C(rgpd.<rgpd_operation>) and the tenant is
    C(rgpd_tenant) when set.
  - Any denial fails the task with a message naming who, what, which tenant and environment, and why; with C(run_once) in
    the operation role, every host of the play fails before any host task.
  - Every decision, allowed or denied, is an event (C(event.action=dihya.ops.authorise), category C(security)) in the
    controller's audit log of the C(dihya.ops.audit) callback, in the same chain and with the run's trace id, the user
    pseudonymised and the reason without the user's name.
  - The user's lock-out, the four-eyes approval and the quotas and concurrency limits of the policy are then checked, in
    that order, in the governance store (C(dihya_ops_governance_store)), which is opened only when the policy has such rules;
    a store that cannot decide refuses the request.
author:
  - Dihya ops maintainers (@dihya-ops)
extends_documentation_fragment:
  - dihya.ops._attributes
  - dihya.ops._attributes.controller
  - ansible.builtin.action_common_attributes.flow
  - ansible.builtin.action_common_attributes.facts
attributes:
  check_mode:
    support: full
    details:
      - The decision is made in check mode too; a check-only role is allowed only there.
  facts:
    support: full
  idempotent:
    support: full
    details:
      - The action changes nothing on any host; it appends its decision to the controller's audit log.
options:
  operation:
    description:
      - The operation to authorise, one of the policy's operation names (for example V(check_health) or V(rgpd.export)).
      - V(rgpd) stands for C(rgpd.<rgpd_operation>) of each host, for its C(rgpd_tenant) when set (the RGPD playbook's request).
    type: str
    required: true
  params:
    description:
      - The parameters of the request that an approval is bound to (their hash); a changed parameter invalidates an approval.
      - When not given, an RGPD request is bound to its subject (C(rgpd_subject_id) of its hosts, as the key C(subject)),
        which is what C(approve_params) of the playbook C(dihya.ops.approve) names; any other request to no parameter.
    type: dict
  approval_id:
    description:
      - The id of the approval of this request, when the policy asks for four eyes (the operation role gives
        C(operation_approval_id), that is C(dihya_ops_approval_id)).
    type: str
  release:
    description:
      - Instead of deciding, release the concurrency locks that this run (its trace id) holds for the play's requests, at
        the end of the run. A dry run, a request without a concurrency limit or a policy that cannot be read releases
        nothing; a store that cannot be reached is a warning (the locks then expire with their C(lock_ttl)).
    type: bool
    default: false
notes:
  - Run it with C(run_once) right after M(dihya.ops.operation_context); the operation role does.
seealso:
  - module: dihya.ops.operation_context
  - plugin: dihya.ops.audit
    plugin_type: callback
"""

EXAMPLES = r"""
- name: Authorise the operation of the lifecycle
  dihya.ops.authorise:
    operation: check_health
  run_once: true
  any_errors_fatal: true

- name: Authorise an erasure approved by someone else (docs/approvals.md)
  dihya.ops.authorise:
    operation: rgpd
    approval_id: "{{ dihya_ops_approval_id }}"
  run_once: true
  any_errors_fatal: true

- name: Release the run's concurrency locks at its end
  dihya.ops.authorise:
    operation: restart_services
    release: true
  run_once: true

- name: Authorise the RGPD request of each host (rgpd_operation, rgpd_tenant)
  dihya.ops.authorise:
    operation: rgpd
  run_once: true
  any_errors_fatal: true
"""

RETURN = r"""
ansible_facts:
  description: The decision, as the fact C(dihya_ops_decision).
  returned: when every request is allowed
  type: dict
  contains:
    dihya_ops_decision:
      description: The decision of the run.
      type: dict
      contains:
        allowed:
          description: Whether every request of the play is allowed.
          type: bool
          sample: true
        reason:
          description: Why, one reason per distinct request.
          type: str
          sample: "access granted: alice (role operator) may run check_health for tenant acme in prod"
        roles:
          description: The roles that granted the requests.
          type: list
          elements: str
          sample: [operator]
        decisions:
          description: One decision per distinct operation, tenant and environment (see RV(decisions)).
          type: list
          elements: dict
released:
  description: The operations whose concurrency locks of this run were released.
  returned: with O(release)
  type: list
  elements: str
  sample: [restart_services]
decisions:
  description: One decision per distinct operation, tenant and environment of the play's hosts.
  returned: unless O(release)
  type: list
  elements: dict
  contains:
    allowed:
      description: Whether the request is allowed.
      type: bool
    reason:
      description: Why, without the user's name.
      type: str
    roles:
      description: The roles the decision rests on.
      type: list
      elements: str
    operation:
      description: The operation.
      type: str
    tenant:
      description: The tenant, or null for the whole host.
      type: str
    environment:
      description: The environment, or null.
      type: str
    check_mode:
      description: Whether the request is a dry run.
      type: bool
    needs_approval:
      description: Whether the policy asks for a four-eyes approval.
      type: bool
    hosts:
      description: The hosts of the request.
      type: list
      elements: str
"""
