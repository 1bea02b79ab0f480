#!/usr/bin/python
# Copyright (c) Dihya ops maintainers
# GNU General Public License v3.0+ (see LICENSES/GPL-3.0-or-later.txt or https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later

from __future__ import annotations


DOCUMENTATION = r"""
module: log_tail
short_description: Show the last lines of a service's log, bounded and scrubbed of secrets and personal identifiers
version_added: 0.1.0
description:
  - Reads the end of one log file on the target (for example the error log of a service that failed to restart) and returns
    its last O(lines) lines, read from at most its last O(max_bytes) bytes, whatever the size of the file.
  - Every line is scrubbed before it leaves the host. C(Authorization) headers, bearer tokens, JSON web tokens, the password of
    a URL and the values of pairs whose key looks secret (C(password=), C(token:), a JSON C(api_key) member, C(secret), C(session_id),
    C(cookie)...) are replaced by C(********). E-mail and IP addresses are replaced by their pseudonym (C(hmac:) and the
    HMAC-SHA256 of the value, as the collection's audit events and personal-data operations write it) with O(pseudonym_key),
    and masked without it (an e-mail keeps its first letter and its domain, an IPv4 address its /24 network, an IPv6 address its /48).
    Terminal escape sequences and control characters are removed, and a line longer than 1000 characters is cut.
  - The file is read safely. No symbolic link is followed, neither at the file nor at any folder on the way to it; only a
    regular file is read (a FIFO, a device, a socket or a directory is refused before it is opened); the file is opened
    with C(O_NOFOLLOW) and C(O_NONBLOCK) and read with positioned reads from its end.
  - A missing, refused or unreadable log is not a failure. The result says so in RV(status) and RV(message), so that a task
    reporting a failure can always include it. Only unusable options fail the module.
author:
  - Dihya ops maintainers (@dihya-ops)
extends_documentation_fragment:
  - dihya.ops._attributes
  - dihya.ops._attributes.idempotent_not_modify_state
attributes:
  check_mode:
    support: full
    details:
      - The module only reads, and runs the same in check mode.
  diff_mode:
    support: none
options:
  path:
    description:
      - Absolute path of the log file. A C(..) component is refused.
      - For a supervisor program, the file of its C(stderr_logfile) (or of its C(stdout_logfile) with C(redirect_stderr=true)).
        Reading the file, rather than asking C(supervisorctl tail), works when supervisord itself is down or refuses the program.
    type: path
    required: true
  lines:
    description:
      - How many lines, at most, from the end of the file. Between V(0) and V(1000).
    type: int
    default: 20
  max_bytes:
    description:
      - How many bytes, at most, are read from the end of the file. Between V(1) and V(1048576).
      - A first line cut by this limit is left out when later lines are shown.
    type: int
    default: 4096
  pseudonym_key:
    description:
      - Key of the pseudonyms of e-mail and IP addresses, from Ansible Vault (the backend model's C(dihya_backend_pseudonym_key)).
        Without it they are masked.
    type: str
notes:
  - Scrubbing recognises common forms; it cannot know every secret an application may write. Keep secrets out of logs.
seealso:
  - module: dihya.ops.supervisor_program
  - module: dihya.ops.health_check
"""

EXAMPLES = r"""
- name: Show the end of the web service's error log
  dihya.ops.log_tail:
    path: /srv/dihya/log/dihya-web.stderr.log
    lines: 30
    pseudonym_key: "{{ dihya_backend_pseudonym_key }}"
  register: web_errors

- name: Say where to look
  ansible.builtin.debug:
    msg: "{{ web_errors.message }}: {{ web_errors.text }}"
"""

RETURN = r"""
path:
  description: The log file.
  returned: always
  type: str
  sample: /srv/dihya/log/dihya-web.stderr.log
status:
  description:
    - V(ok) when the file was read, V(missing) when it does not exist, V(refused) when it (or a folder on the way) is a
      symbolic link or not a regular file, V(unreadable) when it could not be opened or read.
  returned: always
  type: str
  sample: ok
message:
  description: What was read, or why nothing was, for humans.
  returned: always
  type: str
  sample: last 20 line(s) of /srv/dihya/log/dihya-web.stderr.log (earlier lines left out)
lines:
  description: The last lines, scrubbed, oldest first.
  returned: always
  type: list
  elements: str
  sample: ['RuntimeError: cannot connect to postgresql://********@10.0.3.0/dihya']
text:
  description: RV(lines) joined by newlines.
  returned: always
  type: str
  sample: 'RuntimeError: cannot connect to postgresql://********@10.0.3.0/dihya'
bytes_read:
  description: How many bytes were read from the end of the file.
  returned: always
  type: int
  sample: 4096
truncated:
  description: Whether earlier content of the file was left out (by O(max_bytes) or O(lines)).
  returned: always
  type: bool
  sample: true
"""

from ansible.module_utils.basic import AnsibleModule

from ansible_collections.dihya.ops.plugins.module_utils._log_tail import read_tail, settings_errors

ARGUMENT_SPEC = dict(
    path=dict(type='path', required=True),
    lines=dict(type='int', default=20),
    max_bytes=dict(type='int', default=4096),
    pseudonym_key=dict(type='str', no_log=True),
)


def main() -> None:
    module = AnsibleModule(argument_spec=ARGUMENT_SPEC, supports_check_mode=True)
    params = module.params
    errors = settings_errors(params['path'], params['lines'], params['max_bytes'])
    if errors:
        module.fail_json(msg='; '.join(errors))
    key = params['pseudonym_key']
    tail = read_tail(params['path'], params['lines'], params['max_bytes'], key.encode('utf-8') if key else None)
    module.exit_json(changed=False, **tail.to_dict())


if __name__ == '__main__':
    main()
