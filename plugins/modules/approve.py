#!/usr/bin/python
# Copyright (c) Dihya ops maintainers
# GNU General Public License v3.0+ (see LICENSES/GPL-3.0-or-later.txt or https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later

from __future__ import annotations


DOCUMENTATION = r"""
module: approve
short_description: Approve one request (four eyes) and write the signed approval to the governance store
version_added: 0.2.0
description:
  - The approver is the user of this run (the run context, M(dihya.ops.operation_context); in AWX the launching user).
    The approver must hold a role whose C(approve) list has O(operation), bound to O(tenant), and must not be O(requester)
    (see C(docs/approvals.md) in the collection).
  - The approval is bound to O(requester), O(operation), O(tenant), O(environment) and the SHA-256 of O(params); it is
    signed with the HMAC key C(dihya_ops_approval_key) (from Vault), expires after O(lifetime) (at most the policy's
    C(max_age) and 30 days) and is consumed once, by the first real run that gives its id to M(dihya.ops.authorise).
  - The store is C(dihya_ops_governance_store) (SQLite on the controller by default, or PostgreSQL); the policy is the
    one M(dihya.ops.authorise) reads.
  - The approval is an event (C(event.action=dihya.ops.approve)) of the controller's audit log of the C(dihya.ops.audit) callback.
author:
  - Dihya ops maintainers (@dihya-ops)
extends_documentation_fragment:
  - dihya.ops._attributes
  - dihya.ops._attributes.controller
  - ansible.builtin.action_common_attributes.flow
attributes:
  check_mode:
    support: full
    details:
      - Everything is checked and nothing is written; no approval id is returned.
  idempotent:
    support: none
    details:
      - Each run writes a new approval.
options:
  requester:
    description: The user who will run the request.
    type: str
    required: true
  operation:
    description: The operation approved, for example V(rgpd.erase).
    type: str
    required: true
  tenant:
    description: The tenant of the request (for RGPD, its C(rgpd_tenant)).
    type: str
  environment:
    description: The environment of the request (C(dihya_environment) of its hosts).
    type: str
  params:
    description: The parameters of the request that matter, exactly as the run gives them to M(dihya.ops.authorise).
    type: dict
    default: {}
  lifetime:
    description: How long the approval stays valid, V(30m), V(24h), V(2d).
    type: str
    default: 24h
seealso:
  - module: dihya.ops.authorise
"""

EXAMPLES = r"""
- name: Approve the erasure of one subject of acme by bob
  dihya.ops.approve:
    requester: bob
    operation: rgpd.erase
    tenant: acme
    environment: prod
    params: {subject: user-42}
    lifetime: 4h
  run_once: true
"""

RETURN = r"""
approval_id:
  description: The id the requester gives to the run (C(dihya_ops_approval_id)); null in check mode.
  returned: success
  type: str
  sample: apr-5f0c2b6a9d8e4f7a8b1c2d3e4f5a6b7c
approver:
  description: The approver (the user of this run).
  returned: success
  type: str
requester:
  description: The requester.
  returned: success
  type: str
operation:
  description: The operation approved.
  returned: success
  type: str
tenant:
  description: The tenant.
  returned: success
  type: str
environment:
  description: The environment.
  returned: success
  type: str
expires:
  description: When the approval expires (UTC, ISO 8601).
  returned: success
  type: str
  sample: "2026-12-03T14:00:00Z"
"""
