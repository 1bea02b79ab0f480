#!/usr/bin/python
# Copyright (c) Dihya ops maintainers
# GNU General Public License v3.0+ (see LICENSES/GPL-3.0-or-later.txt or https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later

from __future__ import annotations


DOCUMENTATION = r"""
module: audit_verify
short_description: Verify the hash chain and HMACs of a tamper-evident audit log
version_added: 0.1.0
description:
  - Reads an audit log written by the collection (one JSON record per line, each with a sequence number, the hash of the
    previous record and an HMAC-SHA256 of its canonical form) and checks, offline, every HMAC, every link of the chain and
    that sequence numbers have no gaps.
  - With O(include_rotated=true), the rotated predecessors of O(path) in the same directory are verified first, oldest first,
    as one chain. Numbered names (C(audit.log.2), C(audit.log.1)) and logrotate's C(dateext) names (C(audit.log-20261125)),
    compressed with gzip (C(.gz)) or not, are recognised. The first record of a file that follows a rotation is a checkpoint
    that links it to the last record of its predecessor.
  - The chain may start with the first record of the log, or with a rotation checkpoint whose predecessor was removed by
    log retention (RV(first_seq) is then greater than 1).
  - Stops at the first bad line and reports its file, line number and reason in RV(error).
  - B(Crashes are not tampering.) A writer killed during a write, or a write cut short by a full disk, can leave an
    incomplete line. Incomplete lines after the last record of a file are accepted when each is what a cut write leaves (the
    start of a record, possibly followed by zero bytes); there can be several when writes were cut short again before one got
    through. They are reported in RV(notes) as C(truncated record (crash)) and in the newest file they set RV(truncated_tail).
    The next writer starts a new line, chains its record to the last complete record and lists the size and SHA-256 of the
    incomplete lines it skipped in its HMAC-protected record, so an incomplete line in the middle of a file is accepted only
    when the next record attests it byte for byte. Any other line that is not a valid record, an HMAC or chain mismatch, a
    sequence gap or a record not in canonical form is reported as an error.
  - Each note is also shown as a warning of the task.
  - A hash chain cannot reveal records removed from its end. Keep RV(last_seq) of a verification (or of the writer) somewhere
    else and pass it as O(min_last_seq) later to detect that.
  - The key is never printed, neither in results nor in error messages.
author:
  - Dihya ops maintainers (@dihya-ops)
extends_documentation_fragment:
  - dihya.ops._attributes
attributes:
  check_mode:
    support: full
    details:
      - The module only reads; it does the same in check mode.
  diff_mode:
    support: none
  idempotent:
    support: full
    details:
      - The module never changes anything.
options:
  path:
    description:
      - The live audit log. A symbolic link at this path, or anything but a regular file, is refused.
      - An absolute path, without C(..) components or NUL bytes; a relative path is refused. C(~) is expanded to the home
        directory of the user the module runs as, as for every option of type C(path).
      - When it does not exist but rotated predecessors do, those are verified.
    type: path
    required: true
  key:
    description:
      - The HMAC-SHA256 chain key the log was written with (its UTF-8 bytes), at least 16 bytes. Keep it in Ansible Vault.
    type: str
    required: true
  include_rotated:
    description:
      - Also verify the rotated predecessors of O(path), oldest first, as one chain with it.
    type: bool
    default: true
  fail_on_error:
    description:
      - Fail when the log does not verify. With V(false), the module succeeds and reports the problem in RV(ok) and RV(error).
      - The module fails whatever this option says when the log cannot be read at all (missing, symbolic link, permissions).
    type: bool
    default: true
  min_last_seq:
    description:
      - The sequence number the log must at least reach, for example RV(last_seq) of an earlier verification. A log that ends
        before it has lost records at its end.
    type: int
notes:
  - A truncated last line leaves RV(ok) true, provided everything before it verifies; check RV(truncated_tail) to know about it.
seealso:
  - module: dihya.ops.audit_event
"""

EXAMPLES = r"""
- name: Verify the audit log and its rotated files
  dihya.ops.audit_verify:
    path: /var/log/dihya/audit.log
    key: "{{ vault_dihya_audit_key }}"
  register: dihya_audit

- name: Show how many records were verified
  ansible.builtin.debug:
    msg: "{{ dihya_audit.records }} records, last seq {{ dihya_audit.last_seq }}"

- name: Report problems without failing, and detect records removed from the end
  dihya.ops.audit_verify:
    path: /var/log/dihya/audit.log
    key: "{{ vault_dihya_audit_key }}"
    include_rotated: false
    fail_on_error: false
    min_last_seq: "{{ dihya_audit.last_seq }}"
  register: dihya_audit_again
"""

RETURN = r"""
ok:
  description: Whether the whole chain verifies. A truncated last line alone leaves it true.
  returned: always
  type: bool
  sample: true
records:
  description: Number of records verified (before the first bad line, if any), checkpoint records included.
  returned: always
  type: int
  sample: 1200
files:
  description: The files verified, oldest first.
  returned: always
  type: list
  elements: str
  sample: [/var/log/dihya/audit.log.1, /var/log/dihya/audit.log]
first_seq:
  description: Sequence number of the first record verified; greater than 1 when older files were removed by retention.
  returned: always
  type: int
  sample: 1
last_seq:
  description: Sequence number of the last record verified, or V(null) when there is none.
  returned: always
  type: int
  sample: 1200
last_hash:
  description: SHA-256 (hex) of the last record verified, the value the next record links to.
  returned: always
  type: str
  sample: 5073254364dd2e82e7097974a0b2e925450d9c561f5aa789358b09b010e83ed0
truncated_tail:
  description: Whether the last line of the newest file is an incomplete record left by a crash (not tampering).
  returned: always
  type: bool
  sample: false
error:
  description: The first bad line, or V(null) when the log verifies.
  returned: always
  type: dict
  contains:
    file:
      description: The file holding the bad line.
      type: str
      returned: success
      sample: /var/log/dihya/audit.log.1
    line:
      description: The line number in that file, from 1.
      type: int
      returned: success
      sample: 42
    reason:
      description: What is wrong with it.
      type: str
      returned: success
      sample: "HMAC mismatch: record altered, or written with another key"
notes:
  description:
    - Incomplete lines left by crashes or writes cut short and accepted, each with its file, line and reason
      C(truncated record (crash)...). Each is also shown as a task warning.
    - Earlier versions called it C(warnings), a name Ansible reserves for task warnings; that value never reached a registered result.
  returned: always
  type: list
  elements: dict
  sample: [{file: /var/log/dihya/audit.log, line: 7, reason: "truncated record (crash): recovered by the record at line 8"}]
"""

from ansible.module_utils.basic import AnsibleModule
from ansible.module_utils.common.text.converters import to_bytes

from ansible_collections.dihya.ops.plugins.module_utils._audit_event import AuditError, check_path
from ansible_collections.dihya.ops.plugins.module_utils._audit_verify import verify


def main() -> None:
    module = AnsibleModule(
        argument_spec=dict(
            path=dict(type='path', required=True),
            key=dict(type='str', required=True, no_log=True),
            include_rotated=dict(type='bool', default=True),
            fail_on_error=dict(type='bool', default=True),
            min_last_seq=dict(type='int'),
        ),
        supports_check_mode=True,
    )
    params = module.params
    try:
        report = verify(
            check_path(params['path'], 'path'),
            to_bytes(params['key'], errors='surrogate_or_strict'),
            include_rotated=params['include_rotated'],
            min_last_seq=params['min_last_seq'],
        )
    except AuditError as exc:
        module.fail_json(msg=str(exc))
    result = report.as_dict()
    for note in report.notes:
        module.warn(f"{note['file']} line {note['line']}: {note['reason']}")
    error = report.error
    if error is not None and params['fail_on_error']:
        module.fail_json(msg=f"audit log verification failed: {error['file']} line {error['line']}: {error['reason']}", **result)
    module.exit_json(changed=False, **result)


if __name__ == '__main__':
    main()
