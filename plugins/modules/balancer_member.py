#!/usr/bin/python
# Copyright (c) Dihya ops maintainers
# GNU General Public License v3.0+ (see LICENSES/GPL-3.0-or-later.txt or https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later

from __future__ import annotations

DOCUMENTATION = r"""
module: balancer_member
short_description: Drain a backend server at a load balancer, or set it ready again
version_added: 0.2.0
description:
  - Reads or sets the administrative state of one server of a load-balancer backend, for rolling restarts without lost requests.
  - With O(state=drain) the balancer sends the server no new session; the module then waits until the server's active sessions
    reach zero, or O(drain_timeout) seconds passed (then it fails unless O(fail_on_timeout=false)).
  - With O(state=ready) the server takes traffic again; O(state=maint) takes it out entirely; O(state=status) only reads.
  - HAProxy is reached through its runtime API (the stats socket, C(level admin)) from Python, never a shell; every connection
    and every read and write has a deadline (O(timeout)). The interface other balancers implement is described in docs/balancer.md.
author:
  - Dihya ops maintainers (@dihya-ops)
extends_documentation_fragment:
  - dihya.ops._attributes
attributes:
  check_mode:
    support: full
    details: In check mode the module only reads the server's state (HAProxy C(show stat)) and reports what the balancer would be told.
  diff_mode:
    support: none
  idempotent:
    support: full
options:
  balancer:
    description: Kind of load balancer.
    type: str
    choices: [haproxy]
    default: haproxy
  socket:
    description:
      - Address of the balancer's runtime API. For HAProxy the path of its stats socket (a unix socket), or C(tcp:HOST:PORT).
    type: str
    required: true
  backend:
    description: Name of the backend the server belongs to.
    type: str
    required: true
  server:
    description: Name of the server in that backend.
    type: str
    required: true
  state:
    description: Administrative state to set, or V(status) to read it only.
    type: str
    choices: [drain, ready, maint, status]
    default: status
  drain_timeout:
    description: Seconds to wait, with O(state=drain), for the server's active sessions to reach zero; V(0) does not wait.
    type: float
    default: 30
  fail_on_timeout:
    description: Fail when the sessions did not reach zero within O(drain_timeout).
    type: bool
    default: true
  timeout:
    description: Deadline in seconds of each exchange with the balancer (connection, command and answer).
    type: float
    default: 5
seealso:
  - module: dihya.ops.gunicorn_master
"""

EXAMPLES = r"""
- name: Drain the host before its restart
  dihya.ops.balancer_member:
    socket: /run/haproxy/admin.sock
    backend: dihya_backend
    server: "{{ inventory_hostname }}"
    state: drain
    drain_timeout: 30
  delegate_to: lb1

- name: Put it back once it passed the health gate
  dihya.ops.balancer_member:
    socket: /run/haproxy/admin.sock
    backend: dihya_backend
    server: "{{ inventory_hostname }}"
    state: ready
  delegate_to: lb1
"""

RETURN = r"""
before:
  description: The server as the balancer saw it before the module acted (backend, server, admin_state, status, sessions).
  returned: always
  type: dict
  sample: {"backend": "dihya_backend", "server": "web1", "admin_state": "ready", "status": "UP", "sessions": 3}
after:
  description: The server after the module acted; in check mode, the same as O(state) would leave it, as far as known.
  returned: always
  type: dict
  sample: {"backend": "dihya_backend", "server": "web1", "admin_state": "drain", "status": "DRAIN", "sessions": 0}
drained:
  description: With O(state=drain), whether the active sessions reached zero in time; true in check mode.
  returned: always
  type: bool
waited:
  description: Seconds waited for the sessions to reach zero.
  returned: always
  type: float
message:
  description: What was done or, in check mode, what the balancer would be told.
  returned: always
  type: str
  sample: HAProxy /run/haproxy/admin.sock set dihya_backend/web1 to drain; 0 active sessions after 1.2 s
"""

from ansible.module_utils.basic import AnsibleModule

from ansible_collections.dihya.ops.plugins.module_utils._balancer import BalancerError, drain_and_wait, validate_name
from ansible_collections.dihya.ops.plugins.module_utils._haproxy import BALANCERS


def main() -> None:
    module = AnsibleModule(
        argument_spec={
            "balancer": {"type": "str", "choices": sorted(BALANCERS), "default": "haproxy"},
            "socket": {"type": "str", "required": True},
            "backend": {"type": "str", "required": True},
            "server": {"type": "str", "required": True},
            "state": {"type": "str", "choices": ["drain", "ready", "maint", "status"], "default": "status"},
            "drain_timeout": {"type": "float", "default": 30.0},
            "fail_on_timeout": {"type": "bool", "default": True},
            "timeout": {"type": "float", "default": 5.0},
        },
        supports_check_mode=True,
    )
    params = module.params
    backend, server, state = params["backend"], params["server"], params["state"]
    result: dict[str, object] = {"changed": False, "drained": False, "waited": 0.0}
    try:
        validate_name("backend", backend)
        validate_name("server", server)
        if params["timeout"] <= 0 or params["drain_timeout"] < 0:
            raise ValueError("timeout must be positive and drain_timeout not negative")
        balancer = BALANCERS[params["balancer"]](params["socket"], params["timeout"])
        where = f"{params['balancer']} {params['socket']}"
        before = balancer.member(backend, server)
        result.update(before=before.as_dict(), after=before.as_dict())
        if state == "status":
            result.update(message=f"{where}: {backend}/{server} is {before.admin_state} ({before.status}, {before.sessions} active sessions)")
            module.exit_json(**result)
        changed = before.admin_state != state or (state == "drain" and before.sessions > 0)
        if module.check_mode:
            after = dict(before.as_dict(), admin_state=state)
            result.update(changed=before.admin_state != state, after=after, drained=True,
                          message=f"would tell {where} to set {backend}/{server} to {state} (now {before.admin_state}, {before.sessions} active sessions)"
                          + (f", then wait up to {params['drain_timeout']:g} s for its sessions to end" if state == "drain" else ""))
            module.exit_json(**result)
        if state == "drain":
            drained = drain_and_wait(balancer, backend, server, params["drain_timeout"])
            result.update(changed=changed, after=drained.member.as_dict(), drained=drained.drained, waited=round(drained.waited, 3))
            message = f"{where} set {backend}/{server} to drain; {drained.member.sessions} active sessions after {drained.waited:.1f} s"
            result["message"] = message
            if not drained.drained and params["fail_on_timeout"]:
                module.fail_json(msg=f"{message}: the sessions did not end within {params['drain_timeout']:g} s; the server is left drained", **result)
            module.exit_json(**result)
        if before.admin_state != state:
            balancer.set_state(backend, server, state)
        after_member = balancer.member(backend, server)
        result.update(changed=changed, after=after_member.as_dict(), drained=state != "ready",
                      message=f"{where} set {backend}/{server} to {state} ({after_member.status})")
        module.exit_json(**result)
    except (BalancerError, ValueError) as exc:
        module.fail_json(msg=str(exc), **result)


if __name__ == "__main__":
    main()
