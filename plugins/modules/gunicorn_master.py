#!/usr/bin/python
# Copyright (c) Dihya ops maintainers
# GNU General Public License v3.0+ (see LICENSES/GPL-3.0-or-later.txt or https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later

from __future__ import annotations

DOCUMENTATION = r"""
module: gunicorn_master
short_description: Reload or upgrade a gunicorn master through its pidfile, without dropping requests
version_added: 0.2.0
description:
  - O(action=reload) sends HUP to the master named by O(pidfile) and waits until all its workers are new ones.
  - O(action=upgrade) sends USR2 to the master, which starts a new master (new code, new dependencies) beside the old one on the
    same listening sockets, and waits until the new master's workers stayed up O(settle) seconds. When they do not (the new release
    fails to boot) the new master is stopped and the old one, which kept serving, keeps its pidfile; the module then fails.
  - O(action=commit) stops the old master gracefully (TERM) once the new one passed the health gate, and waits for the new master
    to take over the pidfile. O(action=rollback) stops the new master and leaves the old one in place.
  - Under supervisord the gunicorn master must not be supervisord's own process for O(action=upgrade) (supervisord would start
    it again when the old master exits); run it under the keeper described in docs/balancer.md. Such a master is refused.
author:
  - Dihya ops maintainers (@dihya-ops)
extends_documentation_fragment:
  - dihya.ops._attributes
attributes:
  check_mode:
    support: full
    details: In check mode the master is read and no signal is sent.
  diff_mode:
    support: none
  idempotent:
    support: none
  platform:
    platforms: posix
options:
  pidfile:
    description: Path of the gunicorn master's pidfile (its C(pidfile) setting).
    type: path
    required: true
  action:
    description: What to do.
    type: str
    choices: [reload, upgrade, commit, rollback]
    required: true
  old_pid:
    description: The old master of an upgrade (RV(old_pid) of O(action=upgrade)); required by O(action=commit) and O(action=rollback).
    type: int
  new_pid:
    description: The new master of an upgrade (RV(new_pid) of O(action=upgrade)); required by O(action=commit).
    type: int
  timeout:
    description: Seconds each step may take at most.
    type: float
    default: 60
  settle:
    description: Seconds the new master's workers must stay up in O(action=upgrade).
    type: float
    default: 3
seealso:
  - module: dihya.ops.balancer_member
  - module: dihya.ops.health_check
"""

EXAMPLES = r"""
- name: Start the new master beside the old one
  dihya.ops.gunicorn_master:
    pidfile: /srv/dihya/run/gunicorn.pid
    action: upgrade
  register: upgrade

- name: Retire the old master once the health gate passed
  dihya.ops.gunicorn_master:
    pidfile: /srv/dihya/run/gunicorn.pid
    action: commit
    old_pid: "{{ upgrade.old_pid }}"
    new_pid: "{{ upgrade.new_pid }}"
"""

RETURN = r"""
old_pid:
  description: The master before the action.
  returned: always
  type: int
  sample: 4242
new_pid:
  description: The master serving after the action (the new one of an upgrade); null in check mode for an upgrade.
  returned: always
  type: int
  sample: 4311
workers:
  description: Worker process ids of the serving master after the action.
  returned: always
  type: list
  elements: int
message:
  description: What was done, or would be done in check mode.
  returned: always
  type: str
"""

from ansible.module_utils.basic import AnsibleModule

from ansible_collections.dihya.ops.plugins.module_utils import _gunicorn


def main() -> None:
    module = AnsibleModule(
        argument_spec={
            "pidfile": {"type": "path", "required": True},
            "action": {"type": "str", "choices": ["reload", "upgrade", "commit", "rollback"], "required": True},
            "old_pid": {"type": "int"},
            "new_pid": {"type": "int"},
            "timeout": {"type": "float", "default": 60.0},
            "settle": {"type": "float", "default": 3.0},
        },
        required_if=[("action", "commit", ("old_pid", "new_pid")), ("action", "rollback", ("old_pid",))],
        supports_check_mode=True,
    )
    params = module.params
    pidfile, action = params["pidfile"], params["action"]
    try:
        if module.check_mode:
            old = params["old_pid"] or _gunicorn.master(pidfile)
            words = {"reload": "send HUP to", "upgrade": "send USR2 to", "commit": "send TERM to", "rollback": "keep"}
            module.exit_json(changed=True, old_pid=old, new_pid=params["new_pid"], workers=[],
                             message=f"would {words[action]} gunicorn master {old} ({action})")
        if action == "reload":
            outcome = _gunicorn.reload(pidfile, params["timeout"])
        elif action == "upgrade":
            outcome = _gunicorn.upgrade_start(pidfile, params["timeout"], params["settle"])
        elif action == "commit":
            outcome = _gunicorn.upgrade_commit(pidfile, params["old_pid"], params["new_pid"], params["timeout"])
        else:
            outcome = _gunicorn.upgrade_rollback(pidfile, params["old_pid"], params["new_pid"], params["timeout"])
    except (_gunicorn.GunicornError, OSError) as exc:
        module.fail_json(msg=str(exc), old_pid=params["old_pid"], new_pid=params["new_pid"], workers=[])
    result = {"changed": True, "old_pid": outcome.old_pid, "new_pid": outcome.new_pid, "workers": outcome.workers, "message": outcome.message}
    if not outcome.ok:
        module.fail_json(msg=outcome.message, **result)
    module.exit_json(**result)


if __name__ == "__main__":
    main()
