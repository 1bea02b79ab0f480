#!/usr/bin/python
# Copyright (c) Dihya ops maintainers
# GNU General Public License v3.0+ (see LICENSES/GPL-3.0-or-later.txt or https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later

from __future__ import annotations


DOCUMENTATION = r"""
module: advisory_gate
short_description: Check a set of Python package versions against vulnerability advisories
version_added: 0.1.0
description:
  - Matches every package version of O(packages) against the OSV records of O(osv_dirs) (for sites without internet) and,
    when the command is installed, against C(pip-audit), whose vulnerability services need network access.
  - OSV records are read from C(*.json) files below each folder. Only C(PyPI) packages and C(ECOSYSTEM) ranges are used;
    C(introduced), C(fixed) and C(last_affected) events are evaluated as the OSV specification says, and exact
    C(versions) lists are honoured. Versions are compared as PEP 440 versions.
  - Findings can be ignored per package, optionally per advisory id or alias, and every ignore expires on its O(ignores[].until)
    date. An expired ignore does not suppress anything and is reported in RV(notes).
  - With O(policy=fail) the module fails when any finding is not ignored; with O(policy=warn) it warns and passes.
author:
  - Dihya ops maintainers (@dihya-ops)
extends_documentation_fragment:
  - dihya.ops._attributes
  - dihya.ops._attributes.IDEMPOTENT_NOT_MODIFY_STATE
attributes:
  check_mode:
    support: full
    details:
      - The gate only reads; it runs the same in check mode.
  diff_mode:
    support: none
requirements:
  - packaging (Python library)
options:
  packages:
    description:
      - The package set to check, name -> version, for example RV(dihya.ops.python_deps#module:result) of a plan.
    type: dict
    required: true
  osv_dirs:
    description: Folders of OSV JSON records.
    type: list
    elements: path
    default: []
  pip_audit:
    description:
      - V(auto) runs C(pip-audit) when O(pip_audit_executable) is found and otherwise notes that it was skipped;
        a C(pip-audit) that fails (service unreachable) is noted and skipped too.
      - V(always) fails when C(pip-audit) is missing or fails. V(never) does not use it.
      - The gate fails when no source at all could be checked.
    type: str
    choices: [auto, always, never]
    default: auto
  pip_audit_executable:
    description: Name (looked up on E(PATH)) or absolute path of C(pip-audit).
    type: str
    default: pip-audit
  policy:
    description: V(fail) fails on any finding not ignored; V(warn) only warns.
    type: str
    choices: [fail, warn]
    default: fail
  ignores:
    description: Findings not to block on, each with an expiry date.
    type: list
    elements: dict
    default: []
    suboptions:
      package:
        description: Package name.
        type: str
        required: true
      id:
        description: Advisory id or alias (V(GHSA-...), V(PYSEC-...), V(CVE-...)); without it every advisory of the package is ignored.
        type: str
      until:
        description: Last day (YYYY-MM-DD, inclusive) the ignore applies.
        type: str
        required: true
      reason:
        description: Why, for the report.
        type: str
  today:
    description: The date ignores are compared with (YYYY-MM-DD); defaults to today on the managed host.
    type: str
  timeout:
    description: Seconds C(pip-audit) may take.
    type: int
    default: 300
seealso:
  - module: dihya.ops.python_deps
  - name: OSV schema
    description: The format of the advisory records.
    link: https://ossf.github.io/osv-schema/
"""

EXAMPLES = r"""
- name: Check the versions an update would install
  dihya.ops.advisory_gate:
    packages: "{{ dihya_plan.result }}"
    osv_dirs:
      - /srv/advisories/osv
    policy: fail
    ignores:
      - package: jinja2
        id: CVE-2024-22195
        until: "2026-12-31"
        reason: xmlattr is not used with user keys
  register: dihya_gate
"""

RETURN = r"""
passed:
  description: Whether the gate lets the update through (no finding left, or O(policy=warn)).
  returned: always
  type: bool
  sample: true
findings:
  description: Every advisory affecting a version of O(packages), ignored ones included.
  returned: always
  type: list
  elements: dict
  contains:
    package:
      description: Package name.
      type: str
      returned: always
      sample: flask
    version:
      description: Version checked.
      type: str
      returned: always
      sample: 2.2.4
    id:
      description: Advisory id.
      type: str
      returned: always
      sample: PYSEC-2023-62
    aliases:
      description: Other ids of the same advisory.
      type: list
      elements: str
      returned: always
      sample: [CVE-2023-30861, GHSA-m2qf-hxjv-5gpq]
    summary:
      description: First line of the advisory's summary.
      type: str
      returned: always
      sample: Flask session cookie may be cached by a proxy
    fixed:
      description: Versions that fix it.
      type: list
      elements: str
      returned: always
      sample: [2.2.5, 2.3.2]
    sources:
      description: V(osv) and/or V(pip-audit).
      type: list
      elements: str
      returned: always
      sample: [osv]
    ignored:
      description: Whether a valid ignore covers it.
      type: bool
      returned: always
      sample: false
    ignore:
      description: The ignore that covers it.
      type: str
      returned: always
      sample: ""
    expired_ignore:
      description: The expired ignore that would have covered it.
      type: str
      returned: always
      sample: CVE-2023-30861 of flask until 2026-01-31
blocking:
  description: "RV(findings) not ignored, as C(package version: id) strings."
  returned: always
  type: list
  elements: str
  sample: ["flask 2.2.4: PYSEC-2023-62, fixed in 2.2.5, 2.3.2"]
notes:
  description: Skipped sources, unreadable records and expired ignores.
  returned: always
  type: list
  elements: str
  sample: ["pip-audit (pip-audit) is not installed: skipped, only the OSV folders were checked"]
sources:
  description: Sources actually checked.
  returned: always
  type: list
  elements: str
  sample: [osv:/srv/advisories/osv]
msg:
  description: One-line verdict.
  returned: always
  type: str
  sample: no unignored advisory affects the 12 packages checked
"""

import datetime

from ansible.module_utils.basic import AnsibleModule, missing_required_lib

from ansible_collections.dihya.ops.plugins.module_utils._advisories import (
    PIP_AUDIT_MODES,
    POLICIES,
    AdvisoryError,
    gate,
    parse_ignores,
)
from ansible_collections.dihya.ops.plugins.module_utils._pydeps import HAS_PACKAGING, PACKAGING_IMPORT_ERROR


def main() -> None:
    module = AnsibleModule(
        argument_spec=dict(
            packages=dict(type='dict', required=True),
            osv_dirs=dict(type='list', elements='path', default=[]),
            pip_audit=dict(type='str', default='auto', choices=list(PIP_AUDIT_MODES)),
            pip_audit_executable=dict(type='str', default='pip-audit'),
            policy=dict(type='str', default='fail', choices=list(POLICIES)),
            ignores=dict(type='list', elements='dict', default=[], options=dict(
                package=dict(type='str', required=True),
                id=dict(type='str'),
                until=dict(type='str', required=True),
                reason=dict(type='str'),
            )),
            today=dict(type='str'),
            timeout=dict(type='int', default=300),
        ),
        supports_check_mode=True,
    )
    if not HAS_PACKAGING:
        module.fail_json(msg=missing_required_lib('packaging'), exception=PACKAGING_IMPORT_ERROR)
    params = module.params
    try:
        today = datetime.date.fromisoformat(params['today']) if params['today'] else None
    except ValueError:
        module.fail_json(msg=f'today must be a date as YYYY-MM-DD (got {params["today"]!r})')
    packages = {str(name): str(version) for name, version in params['packages'].items()}
    try:
        ignores = parse_ignores([{key: value for key, value in item.items() if value is not None} for item in params['ignores']])
        outcome = gate(packages, osv_dirs=params['osv_dirs'], ignores=ignores, policy=params['policy'], pip_audit=params['pip_audit'],
                       pip_audit_executable=params['pip_audit_executable'], today=today, timeout=params['timeout'])
    except AdvisoryError as exc:
        module.fail_json(msg=f'advisory gate could not run: {exc}')
    result = dict(changed=False, passed=outcome.passed, findings=[finding.as_dict() for finding in outcome.findings],
                  blocking=[finding.describe() for finding in outcome.blocking], notes=outcome.notes, sources=outcome.sources,
                  msg=outcome.message())
    for note in outcome.notes:
        module.warn(note)
    if not outcome.passed:
        module.fail_json(**result)
    if outcome.blocking:
        module.warn(outcome.message())
    module.exit_json(**result)


if __name__ == '__main__':
    main()
