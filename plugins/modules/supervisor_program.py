#!/usr/bin/python
# Copyright (c) Dihya ops maintainers
# GNU General Public License v3.0+ (see LICENSES/GPL-3.0-or-later.txt or https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later

from __future__ import annotations

DOCUMENTATION = r"""
module: supervisor_program
short_description: Start, stop or restart a program managed by supervisord
version_added: 0.1.0
description:
  - Drives one program of a supervisord instance through C(supervisorctl), always as an argument vector, never through a shell.
  - Reports the program's state and process id before and after, so a caller can prove that a restart really replaced the process.
  - The program name is validated before anything runs; a name with shell metacharacters is refused.
author:
  - Dihya ops maintainers (@dihya-ops)
extends_documentation_fragment:
  - dihya.ops._attributes
attributes:
  check_mode:
    support: full
    details: In check mode the current state is read and the module reports what it would do.
  diff_mode:
    support: none
  idempotent:
    support: partial
    details: O(state=started) and O(state=stopped) are idempotent; O(state=restarted) always restarts.
options:
  name:
    description:
      - Name of the supervisor program, optionally C(group:name).
    type: str
    required: true
  state:
    description:
      - Desired state of the program.
    type: str
    required: true
    choices: [started, stopped, restarted]
  config:
    description:
      - Path of the supervisord configuration file, passed to C(supervisorctl -c).
      - When omitted, C(supervisorctl) finds its configuration in the usual places.
    type: path
  supervisorctl:
    description:
      - Path or name of the C(supervisorctl) executable, for example the one in the backend's virtual environment.
    type: path
    default: supervisorctl
notes:
  - O(state=restarted) waits as long as C(supervisorctl restart) does, that is until the program is C(RUNNING) or has failed to start.
seealso:
  - module: dihya.ops.health_check
"""

EXAMPLES = r"""
- name: Restart the web program of the backend
  dihya.ops.supervisor_program:
    name: dihya-web
    state: restarted
    config: /srv/dihya/etc/supervisord.conf
    supervisorctl: /opt/dihya/venv/bin/supervisorctl
  register: restart

- name: Show that the process was replaced
  ansible.builtin.debug:
    msg: "pid {{ restart.pid_before }} -> {{ restart.pid_after }}"
"""

RETURN = r"""
name:
  description: The program name.
  returned: always
  type: str
  sample: dihya-web
state_before:
  description: Supervisor state of the program before the module acted.
  returned: always
  type: str
  sample: RUNNING
state_after:
  description: Supervisor state after the module acted; in check mode, the state the program would have.
  returned: always
  type: str
  sample: RUNNING
pid_before:
  description: Process id before the module acted, or null when the program was not running.
  returned: always
  type: int
  sample: 4242
pid_after:
  description: Process id after the module acted; null in check mode or when the program is not running.
  returned: always
  type: int
  sample: 4311
"""

import os

from ansible.module_utils.basic import AnsibleModule

from ansible_collections.dihya.ops.plugins.module_utils._supervisor import (
    STOPPED_STATES,
    SupervisorError,
    Supervisorctl,
    validate_name,
)

WOULD_BE = {"started": "RUNNING", "restarted": "RUNNING", "stopped": "STOPPED"}
ACTIONS = {"started": "start", "restarted": "restart", "stopped": "stop"}


def main() -> None:
    module = AnsibleModule(
        argument_spec={
            "name": {"type": "str", "required": True},
            "state": {"type": "str", "required": True, "choices": ["started", "stopped", "restarted"]},
            "config": {"type": "path"},
            "supervisorctl": {"type": "path", "default": "supervisorctl"},
        },
        supports_check_mode=True,
    )
    name = module.params["name"]
    state = module.params["state"]
    try:
        validate_name(name)
    except ValueError as exc:
        module.fail_json(msg=str(exc), name=name)

    executable = module.params["supervisorctl"]
    if "/" not in executable:
        executable = module.get_bin_path(executable, required=True)
    config = module.params["config"]
    if config is not None and not os.access(config, os.R_OK):
        module.fail_json(msg=f"supervisord configuration {config} does not exist or is not readable", name=name)

    def runner(argv: list[str]) -> tuple[int, str, str]:
        rc, out, err = module.run_command(argv, use_unsafe_shell=False, environ_update={"LC_ALL": "C"})
        return int(rc), str(out), str(err)

    ctl = Supervisorctl(runner, executable, config)
    result = {"name": name, "changed": False}
    try:
        before = ctl.status(name)
        result.update(state_before=before.state, pid_before=before.pid, state_after=before.state, pid_after=before.pid)
        if state == "started" and before.running:
            module.exit_json(**result)
        if state == "stopped" and before.state in STOPPED_STATES:
            module.exit_json(**result)
        result["changed"] = True
        if module.check_mode:
            result.update(state_after=WOULD_BE[state], pid_after=None)
            module.exit_json(**result)
        ctl.act(ACTIONS[state], name)
        after = ctl.status(name)
        result.update(state_after=after.state, pid_after=after.pid)
    except SupervisorError as exc:
        module.fail_json(msg=str(exc), **result)
    module.exit_json(**result)


if __name__ == "__main__":
    main()
