#!/usr/bin/python
# Copyright (c) Dihya ops maintainers
# GNU General Public License v3.0+ (see LICENSES/GPL-3.0-or-later.txt or https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later

from __future__ import annotations


DOCUMENTATION = r"""
module: ipfs_export
short_description: Pack audit logs, reports and RGPD manifests into a deterministic CARv1 file for IPFS, optionally pushed to Kubo
version_added: 0.1.0
description:
  - Packs the files and folders of O(paths) into one CARv1 file at O(dest) and returns its root CID and the CID of each input.
    The DAG is the one the reference tool of O(profile) builds, so the CIDs are those that tool gives for the same files
    (C(ipfs add --cid-version=1) for V(kubo), C(ipfs-car pack) for V(ipfs-car)). See C(docs/ipfs.md).
  - The output is deterministic. The same inputs give a byte-identical CAR file, whatever the order of O(paths). Folder
    entries are sorted as UnixFS requires, and no modification time or mode is recorded.
  - Memory stays bounded whatever the size of the inputs. Files are read and written one chunk at a time.
  - IPFS content cannot be erased. Without O(force), every file must be a pseudonymised audit log of the collection (chained
    records, pseudonyms in the personal fields), an RGPD export manifest, or a report (in O(report_dirs)), and the export must be
    encrypted (O(encrypt=true)), so that destroying the key erases it (crypto-shredding).
  - Inputs are reached inside O(allowed_roots) one component at a time without following symbolic links. A symbolic link, FIFO,
    socket or device, a path outside the roots or with C(..) is refused before anything is written.
  - The CAR file is written under a temporary name in the folder of O(dest), fsynced and put in place with mode C(0600). An
    existing regular file at O(dest) is left alone when it already is this export (the task reports no change), replaced only with
    O(force) otherwise. A symbolic link, folder, FIFO or device at O(dest) is always refused.
  - With O(push), the CAR file is then sent to a Kubo node (C(/api/v0/dag/import)). If the node cannot be reached or refuses
    it, the module fails with a clear message once the CAR file is safely written, and the result names the CAR file.
requirements:
  - multiformats (Python library, on the managed host)
  - cryptography (Python library, on the managed host, for O(encrypt))
author:
  - Dihya ops maintainers (@dihya-ops)
extends_documentation_fragment:
  - dihya.ops._attributes
attributes:
  check_mode:
    support: full
    details:
      - Check mode reads the inputs and computes every CID, the CAR's size and number of blocks, and whether O(dest) would change.
        It writes nothing and pushes nothing. RV(car.sha256) is given only when O(dest) already holds this export.
  diff_mode:
    support: none
  idempotent:
    support: full
    details:
      - A second run with the same inputs finds O(dest) byte-identical and reports no change. With O(push), the CAR file is
        sent again each time and the task reports a change.
options:
  paths:
    description:
      - Absolute paths of the files and folders to export. Folders are exported with everything below them.
    type: list
    elements: path
    required: true
  dest:
    description:
      - Absolute path of the CAR file to write. Its folder must exist. It must not be inside one of O(paths).
    type: path
    required: true
  allowed_roots:
    description:
      - Folders that every path of O(paths) must be inside of (or equal to). Each is opened from C(/) without following symbolic
        links, so a root whose path holds a symbolic link is refused.
    type: list
    elements: path
    required: true
  wrap:
    description:
      - Wrap the inputs in a folder, as C(ipfs add -w) and C(ipfs-car pack) do. The root CID is then the folder's.
      - V(false) takes exactly one path and makes it the root (a file's CID, or a folder's CID).
    type: bool
    default: true
  profile:
    description:
      - DAG parameters. V(kubo) is CIDv1, raw leaves, 262,144-byte chunks and at most 174 links per node, as C(ipfs add --cid-version=1).
        V(ipfs-car) is CIDv1, raw leaves, 1 MiB chunks and at most 1,024 links per node, as C(ipfs-car pack) 3.x.
      - The two profiles give the same CIDs for files up to 256 KiB only.
    type: str
    choices: [kubo, ipfs-car]
    default: kubo
  force:
    description:
      - Export files that are not recognised as pseudonymised audit logs, RGPD manifests or reports, and export without encryption.
        What is published to IPFS cannot be erased, so this means taking that responsibility.
      - Also replaces an existing regular file at O(dest) that is not this export.
      - Paths outside O(allowed_roots), symbolic links and special files are refused whatever this says.
    type: bool
    default: false
  report_dirs:
    description:
      - Folders whose C(.json), C(.md), C(.txt) and C(.html) files are reports (for example the backend model's C(dihya_backend_reports_dir)).
    type: list
    elements: path
    default: []
  encrypt:
    description:
      - Store every file AES-256-GCM encrypted with O(key), under its name plus C(.aesgcm). The wrapping folder also holds
        C(dihya-ipfs-manifest.json), which names O(key_id), the cipher and each file's path, kind and size.
      - Needs O(wrap=true).
      - The nonce of each file is derived from the key, the file's path and its content, so an encrypted export is deterministic too.
    type: bool
    default: false
  key:
    description:
      - The export's 32-byte key (from Vault), as URL-safe base64 (44 characters) or 64 hex characters. Use one key per export and
        destroy it to erase the export.
    type: str
  key_id:
    description:
      - The name of O(key) recorded in the manifest (never the key itself). 1 to 128 letters, digits or C(._:@/-).
    type: str
  push:
    description:
      - Send the CAR file to a Kubo node once it is written.
    type: dict
    suboptions:
      url:
        description:
          - Base URL of the Kubo RPC API, for example V(http://127.0.0.1:5001). C(/api/v0/dag/import) is appended unless the URL
            already ends with it. No user name or password in it.
        type: str
        required: true
      username:
        description: User name for HTTP basic authentication (with O(push.password)).
        type: str
      password:
        description: Password for HTTP basic authentication (from Vault).
        type: str
      token:
        description: Bearer token (from Vault), instead of O(push.username) and O(push.password).
        type: str
      pin:
        description: Ask the node to pin the root (C(pin-roots)) and check that it reports pinning it.
        type: bool
        default: false
      timeout:
        description: Seconds for the whole push, connection, sending and answer included.
        type: float
        default: 60
      validate_certs:
        description: Verify the node's TLS certificate for an C(https) URL.
        type: bool
        default: true
notes:
  - Folders that either reference tool would shard (more than 1,000 entries, or names too long for a plain UnixFS folder) are refused.
seealso:
  - name: CARv1 specification
    description: The file format written.
    link: https://ipld.io/specs/transport/car/carv1/
  - name: Kubo RPC dag/import
    description: The endpoint O(push) uses.
    link: https://docs.ipfs.tech/reference/kubo/rpc/#api-v0-dag-import
"""

EXAMPLES = r"""
- name: Export the host's audit log and reports, encrypted with this export's key
  dihya.ops.ipfs_export:
    paths:
      - /srv/dihya/audit/audit.log
      - /srv/dihya/reports
    dest: /srv/dihya/exports/audit-2026-11.car
    allowed_roots: [/srv/dihya]
    report_dirs: [/srv/dihya/reports]
    encrypt: true
    key: "{{ vault_ipfs_export_key_2026_11 }}"
    key_id: ipfs-export-2026-11
  register: export

- name: Same, and push it to a Kubo node, pinned
  dihya.ops.ipfs_export:
    paths: [/srv/dihya/audit/audit.log]
    dest: /srv/dihya/exports/audit.car
    allowed_roots: [/srv/dihya]
    encrypt: true
    key: "{{ vault_ipfs_export_key }}"
    key_id: ipfs-export-2026-11
    push:
      url: http://127.0.0.1:5001
      token: "{{ vault_kubo_token }}"
      pin: true
      timeout: 30

- name: Pack one public file as ipfs-car would, without wrapping (forced, in clear)
  dihya.ops.ipfs_export:
    paths: [/srv/dihya/public/status.json]
    dest: /srv/dihya/exports/status.car
    allowed_roots: [/srv/dihya/public]
    profile: ipfs-car
    wrap: false
    force: true
"""

RETURN = r"""
root_cid:
  description: The root CID of the CAR file (the wrapping folder's, or the single input's with O(wrap=false)).
  type: str
  returned: success
  sample: bafybeihygzokhvarz4ishjej3lbknt5ekosxmva2iqlzf2rdgbfrqdyvyu
profile:
  description: The profile used.
  type: str
  returned: success
  sample: kubo
wrap:
  description: Whether the inputs were wrapped in a folder.
  type: bool
  returned: success
inputs:
  description: Each input, in the order of their names.
  type: list
  elements: dict
  returned: success
  contains:
    path:
      description: The path given.
      type: str
    name:
      description: Its name in the export (with C(.aesgcm) for an encrypted file).
      type: str
    cid:
      description: Its CID.
      type: str
    type:
      description: V(file) or V(directory).
      type: str
    size:
      description: Bytes of content stored (encrypted sizes when encrypted).
      type: int
    files:
      description: Number of files.
      type: int
    kinds:
      description: What its files were recognised as (V(audit-log), V(rgpd-manifest), V(report), V(empty), V(unknown); V(unchecked) when forced in clear).
      type: list
      elements: str
car:
  description: The CAR file.
  type: dict
  returned: success
  contains:
    path:
      description: Its path (O(dest)).
      type: str
    size:
      description: Its size in bytes.
      type: int
    blocks:
      description: Number of blocks in it.
      type: int
    sha256:
      description: SHA-256 of the file (null in check mode unless O(dest) already holds this export).
      type: str
    written:
      description: Whether this run wrote it.
      type: bool
encryption:
  description: The cipher, key id and manifest name when O(encrypt=true), else null.
  type: dict
  returned: success
push:
  description: What the node answered (endpoint, whether the root is pinned, roots it reported), or null without O(push).
  type: dict
  returned: success
"""

from ansible.module_utils.basic import AnsibleModule

from ansible_collections.dihya.ops.plugins.module_utils._ipfs_export import ExportPushError, ExportRequest, export
from ansible_collections.dihya.ops.plugins.module_utils._ipfs_push import PushTarget
from ansible_collections.dihya.ops.plugins.module_utils._ipfs_unixfs import IpfsError


def main() -> None:
    module = AnsibleModule(
        argument_spec=dict(
            paths=dict(type='list', elements='path', required=True),
            dest=dict(type='path', required=True),
            allowed_roots=dict(type='list', elements='path', required=True),
            wrap=dict(type='bool', default=True),
            profile=dict(type='str', default='kubo', choices=['kubo', 'ipfs-car']),
            force=dict(type='bool', default=False),
            report_dirs=dict(type='list', elements='path', default=[]),
            encrypt=dict(type='bool', default=False),
            key=dict(type='str', no_log=True),
            key_id=dict(type='str'),
            push=dict(type='dict', options=dict(
                url=dict(type='str', required=True),
                username=dict(type='str'),
                password=dict(type='str', no_log=True),
                token=dict(type='str', no_log=True),
                pin=dict(type='bool', default=False),
                timeout=dict(type='float', default=60.0),
                validate_certs=dict(type='bool', default=True),
            )),
        ),
        required_if=[('encrypt', True, ('key', 'key_id'))],
        supports_check_mode=True,
    )
    params = module.params
    push = params['push']
    request = ExportRequest(
        paths=params['paths'], dest=params['dest'], allowed_roots=params['allowed_roots'], wrap=params['wrap'],
        force=params['force'], profile=params['profile'], report_dirs=params['report_dirs'], encrypt=params['encrypt'],
        key=params['key'], key_id=params['key_id'], check_mode=module.check_mode,
        push=PushTarget(**push) if push else None,
    )
    try:
        result = export(request)
    except ExportPushError as exc:
        module.fail_json(msg=str(exc), **exc.result)
    except IpfsError as exc:
        module.fail_json(msg=str(exc))
    except OSError as exc:
        module.fail_json(msg=f'IPFS export failed: {exc}')
    module.exit_json(**result)


if __name__ == '__main__':
    main()
