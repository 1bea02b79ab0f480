#!/usr/bin/python
# Copyright (c) Dihya ops maintainers
# GNU General Public License v3.0+ (see LICENSES/GPL-3.0-or-later.txt or https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later

from __future__ import annotations


DOCUMENTATION = r"""
module: python_deps
short_description: Plan, snapshot, apply and roll back the packages of a Python virtual environment
version_added: 0.1.0
description:
  - Works on one virtual environment, always through its own interpreter (C(<venv>/bin/python -m pip)) with an argument
    vector, never a shell.
  - O(action=plan) asks C(pip install --dry-run --report) what installing O(packages) would do and returns exactly the
    packages whose version would change (RV(changes)) and the whole set of versions the environment would then hold
    (RV(result)). It never changes anything.
  - O(action=snapshot) records C(pip freeze) and a wheel of every frozen version into O(snapshot_dir), from O(find_links)
    (typically the wheelhouse the environment was installed from, with O(no_index)) and the wheels of the snapshot already
    there, so that O(action=rollback) works with no index. A snapshot with a missing wheel fails and leaves the previous one.
  - O(action=apply) plans, then installs exactly the planned versions (C(--no-deps), the plan resolved them) and checks the
    environment holds them. Nothing to change means no pip install at all.
  - O(action=rollback) reinstalls offline (C(--no-index)) from O(snapshot_dir) every package whose version differs from the
    snapshot, uninstalls the packages the snapshot does not have, then checks that C(pip freeze) equals the snapshot.
  - Package specifications are validated as PEP 508 requirements and passed to pip in their canonical form (a name,
    optional extras and version specifiers with PEP 440 versions). Options (C(-r), C(-e), C(--index-url)), shell
    metacharacters, environment markers, local paths, anything shaped like an archive or wheel file name
    (C(evilpkg-1.0.tar.gz), C(x-1.0-py3-none-any.whl)), arbitrary equality (C(===)) and URLs are refused; URLs of wheels
    only with O(allow_urls).
  - Nothing is ever built. Every pip command that fetches distributions gets C(--only-binary :all:), in a plan (check mode
    included), an install, a snapshot and a rollback alike, so no source distribution's build backend (arbitrary code) runs.
    Every package must therefore be available as a wheel in O(find_links) or the index; build the wheels of source-only
    packages beforehand into a wheelhouse (C(pip wheel)).
  - pip always runs in an empty private working directory made for the command, never in the caller's, so no file that lies
    where the task runs can stand in for a package.
author:
  - Dihya ops maintainers (@dihya-ops)
extends_documentation_fragment:
  - dihya.ops._attributes
attributes:
  check_mode:
    support: full
    details:
      - O(action=plan) runs the same in check mode.
      - O(action=apply) in check mode plans and reports a change only when a package would change; nothing is installed.
      - O(action=snapshot) in check mode reads C(pip freeze) and writes nothing. O(action=rollback) reports what it would
        reinstall and remove.
  diff_mode:
    support: none
  idempotent:
    support: full
    details:
      - Once the planned versions are installed, O(action=apply) finds nothing to change. O(action=rollback) of an environment
        that equals its snapshot changes nothing. O(action=snapshot) always writes a new snapshot.
requirements:
  - packaging (Python library, on the managed host's Ansible interpreter)
  - pip 22.2 or later in the virtual environment (for C(--dry-run --report))
options:
  venv:
    description: Absolute path of the virtual environment.
    type: path
    required: true
  action:
    description: What to do; see the description.
    type: str
    choices: [snapshot, plan, apply, rollback]
    required: true
  packages:
    description:
      - Package specifications (PEP 508), for example V(dihya-demo-ext==1.1.0), V(flask>=3.1,<4) or V(Flask[async]).
      - Names and versions only; see the description for what is refused.
      - Required with O(action=plan) and O(action=apply).
    type: list
    elements: str
    default: []
  upgrade:
    description: Pass C(--upgrade), so that specifications already satisfied are upgraded too.
    type: bool
    default: false
  find_links:
    description: Folders (absolute paths) or URLs where pip looks for packages (C(--find-links)).
    type: list
    elements: str
    default: []
  index_url:
    description: Package index (C(--index-url)); by default pip's own configuration applies.
    type: str
  no_index:
    description: Use only O(find_links), no index (C(--no-index)).
    type: bool
    default: false
  allow_urls:
    description:
      - Accept direct references (C(name @ https://...)) in O(packages).
      - Only C(http://) and C(https://) URLs of wheels (C(.whl)) are accepted; C(file:), VCS (C(git+...)) and source archive
        URLs are refused, since they would have to be built.
      - A package asked for this way is installed from its URL by O(action=apply); its RV(changes[].pin) is C(name @ URL).
    type: bool
    default: false
  snapshot_dir:
    description:
      - Folder of the snapshot (C(freeze.txt), C(snapshot.json), C(wheels/)). Required with O(action=snapshot) and O(action=rollback).
      - A new snapshot replaces only an earlier snapshot (a folder holding C(snapshot.json) and nothing but those three entries);
        a file, a symbolic link, a FIFO, a device or any other directory at this path is refused before pip runs, in check mode too.
    type: path
  timeout:
    description: Seconds each pip command may take.
    type: int
    default: 600
notes:
  - The module runs on the managed host and needs the C(packaging) library there, in the interpreter Ansible uses.
  - C(pip freeze) leaves out pip, setuptools and wheel; a snapshot and a rollback therefore do not cover them.
seealso:
  - module: dihya.ops.advisory_gate
  - module: ansible.builtin.pip
"""

EXAMPLES = r"""
- name: Plan an update of the backend's virtual environment
  dihya.ops.python_deps:
    venv: /srv/dihya/venv
    action: plan
    packages:
      - flask==3.1.3
    find_links:
      - /srv/wheelhouse
    no_index: true
  register: dihya_plan

- name: Show what would change
  ansible.builtin.debug:
    msg: "{{ dihya_plan.changes | map(attribute='name') | zip(dihya_plan.changes | map(attribute='new')) | list }}"

- name: Snapshot the environment before touching it
  dihya.ops.python_deps:
    venv: /srv/dihya/venv
    action: snapshot
    snapshot_dir: /var/lib/dihya-ops/update_dependencies/snapshot
    find_links:
      - /srv/wheelhouse
    no_index: true

- name: Install the planned versions
  dihya.ops.python_deps:
    venv: /srv/dihya/venv
    action: apply
    packages: "{{ dihya_plan.pins }}"
    find_links:
      - /srv/wheelhouse
    no_index: true

- name: Roll back to the snapshot, offline
  dihya.ops.python_deps:
    venv: /srv/dihya/venv
    action: rollback
    snapshot_dir: /var/lib/dihya-ops/update_dependencies/snapshot
"""

RETURN = r"""
changes:
  description: Packages whose version changes (or would change), by name. Empty when nothing would change.
  returned: action is plan or apply
  type: list
  elements: dict
  contains:
    name:
      description: Distribution name, as its metadata spells it.
      type: str
      returned: always
      sample: dihya-demo-ext
    current:
      description: Installed version, or V(null) when the package is new.
      type: str
      returned: always
      sample: 1.0.0
    new:
      description: Version after the install.
      type: str
      returned: always
      sample: 1.1.0
    action:
      description: V(install), V(upgrade), V(downgrade), or V(change) when a version is not PEP 440.
      type: str
      returned: always
      sample: upgrade
    requested:
      description: Whether the package was asked for in O(packages) (V(false) for a dependency).
      type: bool
      returned: always
      sample: true
    pin:
      description:
        - C(name==new), or C(name @ URL) for a package asked for as a direct reference (O(allow_urls)), which is installed
          from that URL.
      type: str
      returned: always
      sample: dihya-demo-ext==1.1.0
    url:
      description: The URL of a package asked for as a direct reference (C(name @ URL)), V(null) for any other package.
      type: str
      returned: always
      sample: null
    summary:
      description: C(name current -> new), or C(name (new) -> new) for a new package.
      type: str
      returned: always
      sample: dihya-demo-ext 1.0.0 -> 1.1.0
  sample: [{name: dihya-demo-ext, current: 1.0.0, new: 1.1.0, action: upgrade, requested: true, pin: dihya-demo-ext==1.1.0,
            summary: dihya-demo-ext 1.0.0 -> 1.1.0}]
pins:
  description: The C(pin) (C(name==version), or C(name @ URL)) of every entry of RV(changes), ready for O(action=apply).
  returned: action is plan or apply
  type: list
  elements: str
  sample: [dihya-demo-ext==1.1.0]
before:
  description: Every installed distribution (pip and setuptools included) and its version before the install.
  returned: action is plan or apply
  type: dict
  sample: {flask: 3.1.3, dihya-demo-ext: 1.0.0}
result:
  description: Every distribution and its version after the install, the set a vulnerability gate should check.
  returned: action is plan or apply
  type: dict
  sample: {flask: 3.1.3, dihya-demo-ext: 1.1.0}
snapshot:
  description: The snapshot written (or, in check mode, what it would record), or the one rolled back to.
  returned: action is snapshot or rollback
  type: dict
  contains:
    path:
      description: Snapshot folder.
      type: str
      returned: always
      sample: /var/lib/dihya-ops/update_dependencies/snapshot
    created:
      description: UTC time the snapshot was taken.
      type: str
      returned: always
      sample: "2026-11-25T21:00:00Z"
    freeze:
      description: The C(pip freeze) lines.
      type: list
      elements: str
      returned: always
      sample: [Flask==3.1.3, dihya-demo-ext==1.0.0]
    packages:
      description: Name -> version of the frozen set.
      type: dict
      returned: always
      sample: {Flask: 3.1.3}
    wheels:
      description: Wheel files kept (empty in check mode).
      type: list
      elements: str
      returned: always
      sample: [flask-3.1.3-py3-none-any.whl]
reinstalled:
  description: Packages put back to their snapshot version (same keys as RV(changes)).
  returned: action is rollback
  type: list
  elements: dict
  sample: [{name: dihya-demo-ext, current: 2.0.0, new: 1.0.0, action: downgrade, requested: true, pin: dihya-demo-ext==1.0.0,
            summary: dihya-demo-ext 2.0.0 -> 1.0.0}]
removed:
  description: Packages uninstalled because the snapshot did not have them.
  returned: action is rollback
  type: list
  elements: str
  sample: [dihya-demo-ext]
freeze:
  description: C(pip freeze) after the rollback (equal to the snapshot's).
  returned: action is rollback
  type: list
  elements: str
  sample: [Flask==3.1.3]
"""

import typing as t

from ansible.module_utils.basic import AnsibleModule, missing_required_lib

from ansible_collections.dihya.ops.plugins.module_utils._pydeps import (
    ACTIONS,
    HAS_PACKAGING,
    PACKAGING_IMPORT_ERROR,
    Change,
    Pip,
    Plan,
    PyDepsError,
    Sources,
    apply,
    load_snapshot,
    make_plan,
    rollback,
    take_snapshot,
)


def plan_result(plan: Plan, changes: list[Change]) -> dict[str, t.Any]:
    return dict(changed=bool(changes), changes=[change.as_dict() for change in changes], pins=[change.pin for change in changes],
                before=dict(plan.before.values()), result=plan.result)


def main() -> None:
    module = AnsibleModule(
        argument_spec=dict(
            venv=dict(type='path', required=True),
            action=dict(type='str', required=True, choices=list(ACTIONS)),
            packages=dict(type='list', elements='str', default=[]),
            upgrade=dict(type='bool', default=False),
            find_links=dict(type='list', elements='str', default=[]),
            index_url=dict(type='str'),
            no_index=dict(type='bool', default=False),
            allow_urls=dict(type='bool', default=False),
            snapshot_dir=dict(type='path'),
            timeout=dict(type='int', default=600),
        ),
        required_if=[
            ('action', 'plan', ('packages',)),
            ('action', 'apply', ('packages',)),
            ('action', 'snapshot', ('snapshot_dir',)),
            ('action', 'rollback', ('snapshot_dir',)),
        ],
        supports_check_mode=True,
    )
    if not HAS_PACKAGING:
        module.fail_json(msg=missing_required_lib('packaging'), exception=PACKAGING_IMPORT_ERROR)
    params = module.params
    action = params['action']
    pip = None
    try:
        sources = Sources(index_url=params['index_url'], find_links=tuple(params['find_links']), no_index=params['no_index'])
        pip = Pip(params['venv'], timeout=params['timeout'])
        if action in ('plan', 'apply'):
            plan = make_plan(pip, params['packages'], sources, upgrade=params['upgrade'], allow_urls=params['allow_urls'])
            if action == 'plan':
                result = plan_result(plan, plan.changes)
                result['changed'] = False
            else:
                result = plan_result(plan, apply(pip, plan, sources, check_mode=module.check_mode))
        elif action == 'snapshot':
            snapshot = take_snapshot(pip, params['snapshot_dir'], sources, check_mode=module.check_mode)
            result = dict(changed=True, snapshot=snapshot.as_dict())
        else:
            snapshot = load_snapshot(params['snapshot_dir'])
            done = rollback(pip, snapshot, check_mode=module.check_mode)
            result = dict(changed=done.changed, snapshot=snapshot.as_dict(), reinstalled=[change.as_dict() for change in done.reinstalled],
                          removed=done.removed, freeze=done.freeze)
    except PyDepsError as exc:
        module.fail_json(msg=f'{action} of {params["venv"]} failed: {exc}')
    module.exit_json(**result)


if __name__ == '__main__':
    main()
