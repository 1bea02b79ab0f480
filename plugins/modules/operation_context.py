#!/usr/bin/python
# Copyright (c) Dihya ops maintainers
# GNU General Public License v3.0+ (see LICENSES/GPL-3.0-or-later.txt or https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later

from __future__ import annotations


DOCUMENTATION = r"""
module: operation_context
short_description: Resolve the context of a run once, on the controller - who asks, for which tenant, under which trace id
version_added: 0.2.0
description:
  - Resolves, on the controller and without contacting the host, who runs the operation, for which tenant and environment,
    under which trace id and request id, validates it, and returns it as one fact, C(dihya_ops_context), that the
    operation's role and its modules receive explicitly.
  - "Who asks, first found wins: the AWX / Automation Controller job's user (extra variables C(awx_user_name), then
    C(tower_user_name)); the caller of C(ansible-playbook), such as ansible-runner or a CI job (the environment variable
    C(DIHYA_OPS_USER), else the C(user) option of the C(dihya.ops.audit) callback, C(DIHYA_AUDIT_USER)); the declared
    variable C(dihya_ops_user), only when the controller trusts declared users (C(DIHYA_OPS_TRUST_DECLARED_USER=true) in
    the environment of C(ansible-playbook): a variable could be set by whoever runs the playbook); else the operating
    system user of the controller process (its effective user id, never C($USER))."
  - The tenant is C(dihya_ops_tenant) (or C(dihya_tenant)), else the C(tenant) option of the C(dihya.ops.audit) callback;
    the environment is C(dihya_environment) (for example C(dev), C(staging), C(prod)), usually set in the inventory; the
    request id is C(dihya_ops_request_id).
  - The trace id is C(dihya_trace_id), else the caller's C(DIHYA_TRACE_ID) or C(DIHYA_AUDIT_TRACE_ID), else the run's own
    id, made once in the C(ansible-playbook) process and inherited by every worker, so that every host, serial batch and
    play of the run shares it. The C(dihya.ops.audit) callback resolves the context with the same code, so its events name
    the same user and trace id.
  - A malformed value (a tenant or environment name with C(../), quotes or spaces, a user name with a newline, a value too
    long, a trace id that is not 32 hexadecimal digits) fails the task with a message naming the variable; the operation
    role runs this action first, so nothing runs on the host.
  - When the host has no interpreter set (neither C(ansible_python_interpreter) nor C(interpreter_python) in the
    configuration) and the backend model names the application's virtual environment (C(dihya_backend_venv)), RV(interpreter)
    is the virtual environment's Python, which the operation role then sets as the host's C(ansible_python_interpreter).
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
      - The action only reads; it does the same in check mode.
  facts:
    support: full
  idempotent:
    support: full
    details:
      - The action never changes anything.
options:
  operation:
    description:
      - The operation's role, a sibling of the role of this task (the C(dihya.ops.operation) role passes its
        C(operation_name)). The options of that role and of the role of this task (their C(meta/argument_specs.yml),
        entry point C(main)) are validated as Ansible's role validation would, from the task's variables; a failure
        names the role and each option. A value that names a variable of the role itself, unknown before the role
        runs, is left to the role's own module.
      - A string value that role validation accepts as a boolean (V(y), V(t), V(n), V(f)) but the C(bool) filter would
        not read the same way fails the task too, naming each variable, before anything runs.
    type: str
notes:
  - The run's variables (C(awx_user_name), C(dihya_ops_tenant), C(dihya_trace_id)...) are extra variables (C(-e), an AWX
    survey or job template); the C(dihya.ops.audit) callback reads only those, so set them there for both to agree.
seealso:
  - module: dihya.ops.audit_event
  - plugin: dihya.ops.audit
    plugin_type: callback
"""

EXAMPLES = r"""
- name: Resolve the run context
  dihya.ops.operation_context:

- name: Record an event under the run's context
  dihya.ops.audit_event:
    path: "{{ dihya_backend_audit_log }}"
    key: "{{ dihya_backend_audit_key }}"
    action: invoice.export
    user: "{{ dihya_ops_context.user }}"
    tenant: "{{ dihya_ops_context.tenant | default(omit, true) }}"
    trace_id: "{{ dihya_ops_context.trace_id }}"
    host: "{{ dihya_ops_context.host }}"
"""

RETURN = r"""
ansible_facts:
  description: The run context, as the fact C(dihya_ops_context).
  returned: success
  type: dict
  contains:
    dihya_ops_context:
      description: The run context.
      type: dict
      contains:
        user:
          description: Who runs the operation (pseudonymise it before recording it).
          type: str
          sample: alice
        user_source:
          description: Where the user comes from.
          type: str
          choices: [awx, caller, declared, os]
          sample: awx
        tenant:
          description: The tenant the operation is run for, or null for the whole host.
          type: str
          sample: acme
        environment:
          description: The environment (C(dihya_environment)), or null.
          type: str
          sample: prod
        trace_id:
          description: The trace id of the run, 32 lowercase hexadecimal digits.
          type: str
          sample: 4bf92f3577b34da6a3ce929d0e0e4736
        trace_id_source:
          description: Where the trace id comes from (C(extra_vars) for C(dihya_trace_id), C(option), C(caller) or C(run)).
          type: str
          sample: run
        correlation_id:
          description: The caller's request or change id (C(dihya_ops_request_id)), or null.
          type: str
          sample: CHG-1234
        host:
          description: The name of the host in every record of the run (its inventory name, as the callback names it).
          type: str
          sample: web-1.dihya.example
interpreter:
  description:
    - The Python of the application's virtual environment (C(dihya_backend_venv)/bin/python) when no interpreter is set for
      the host, else null.
  returned: success
  type: str
  sample: /srv/dihya/venv/bin/python
"""
