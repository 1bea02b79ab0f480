#!/usr/bin/python
# Copyright (c) Dihya ops maintainers
# GNU General Public License v3.0+ (see LICENSES/GPL-3.0-or-later.txt or https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later

from __future__ import annotations


DOCUMENTATION = r"""
module: purge_files
short_description: Safely remove old temporary files below a set of directories
version_added: 0.1.0
description:
  - Removes files older than O(age) below each directory of O(paths), optionally filtered by name and size,
    and optionally removes the directories left empty.
  - Every directory in O(paths) must lie inside one of O(allowed_roots) once symbolic links and C(..) are resolved.
    System directories are refused themselves, whatever O(allowed_roots) says, namely C(/), C(/etc), C(/boot), C(/dev), C(/proc),
    C(/sys), C(/run), C(/root), C(/home), C(/srv), C(/opt), C(/mnt), C(/media), C(/bin), C(/sbin), every C(/lib*), C(/usr) and
    every directory directly in C(/usr) or C(/usr/local) (C(/usr/bin), C(/usr/lib), C(/usr/local/bin)...), C(/var), C(/var/lib),
    C(/var/log), C(/var/spool), C(/var/mail), C(/var/backups), C(/var/opt) and C(/var/local). They are compared by name and by
    identity (device and inode), so on a merged-C(/usr) system C(/bin) and C(/usr/bin) are both refused, by any name.
    Directories below them, such as C(/var/tmp/app), are fine.
  - A directory in O(paths) that is one of O(protected_paths), or that contains one, is refused unless O(force=true).
  - Every path is validated, and its directories opened, before anything is removed, so if any path is refused, nothing is removed.
  - Symbolic links are never followed. A symbolic link given in O(paths) is refused; a symbolic link met during the walk is
    left alone (or, with O(file_type=any), removed itself when it matches, never its target).
  - Each allowed root is opened once, one component at a time from C(/) with C(O_NOFOLLOW), and each path is opened the same
    way from its allowed root's descriptor, never by its name. Each directory on the way is checked again, by device and
    inode, right before its path is purged, so a component swapped for a symbolic link or another directory after the paths
    were checked (for example while an earlier path is walked) stops that path, is reported in RV(errors), and makes the
    module fail once the other paths are done; nothing below it is touched.
  - The walk goes through directory file descriptors and opens every directory with C(O_NOFOLLOW), so a directory replaced
    by a symbolic link while the module runs cannot redirect a removal outside the tree; such a directory is reported in
    RV(errors) and skipped.
  - The walk stays on the file system of each path in O(paths); mount points below it (bind mounts included) and critical
    or protected directories met there under another name are not entered.
  - Paths that overlap (the same directory twice, or one inside another) are walked once, so each file is counted once.
  - The module does not build a list of the files in memory, so it can purge very large trees. It only returns counts,
    the first O(sample_size) removed paths and at most 50 errors.
  - The directories in O(paths) themselves are never removed. A directory in O(paths) that does not exist is reported with
    RV(paths[].exists=false) and is not an error.
author:
  - Dihya ops maintainers (@dihya-ops)
extends_documentation_fragment:
  - dihya.ops._attributes
attributes:
  check_mode:
    support: full
    details:
      - In check mode the module walks the same tree and reports exactly what it would remove, but removes nothing.
      - Removals the kernel would refuse are reported in RV(errors) as a real run would report them, not counted as removed
        (a read-only mount, a directory without write permission for the user, another user's file in a sticky directory,
        an immutable or append-only file or directory).
  diff_mode:
    support: none
  idempotent:
    support: full
    details:
      - Once the old files are gone, a second run with the same arguments finds nothing to remove, unless more files have aged meanwhile.
options:
  paths:
    description:
      - Absolute paths of the directories to purge. The directories themselves are kept.
    type: list
    elements: path
    required: true
  allowed_roots:
    description:
      - Absolute paths of the directories that O(paths) must be inside of (or equal to), after resolving symbolic links and C(..).
      - A path outside all of them makes the module fail before anything is removed.
    type: list
    elements: path
    required: true
  protected_paths:
    description:
      - Absolute paths that must never be purged, for example the application's root, code, virtual environment and data.
      - A directory of O(paths) that is one of them, or an ancestor of one of them, is refused, compared by name once symbolic links
        and C(..) are resolved and by identity (device and inode). Directories below them, such as C(<root>/tmp), are fine.
    type: list
    elements: path
    default: []
  force:
    description:
      - Purge O(paths) even when they are or contain one of O(protected_paths).
      - Critical system directories and paths outside O(allowed_roots) are refused whatever this says.
    type: bool
    default: false
  age:
    description:
      - Minimum age of the files to remove, compared with O(age_stamp).
      - A number of seconds, or a duration such as V(7d), V(12h), V(30m), V(90s) or V(1d12h). Units are C(s), C(m), C(h), C(d) and C(w).
    type: raw
    required: true
  age_stamp:
    description:
      - Which time stamp of a file gives its age.
    type: str
    choices: [mtime, atime]
    default: mtime
  include:
    description:
      - Shell-style patterns (C(*), C(?), C([...])) matched against the base name of each entry; only matching entries are removed.
      - Matching is case-sensitive. Directories are walked whatever their names.
    type: list
    elements: str
    default: ['*']
  exclude:
    description:
      - Shell-style patterns matched against the base name of each entry; matching entries are kept.
      - A directory whose name matches is neither walked nor removed, which protects everything below it.
    type: list
    elements: str
    default: []
  min_size:
    description:
      - Only regular files of at least this many bytes are removed. Other entries are not filtered by size.
    type: int
    default: 0
  file_type:
    description:
      - V(file) removes regular files only.
      - V(any) also removes symbolic links (never their targets), sockets, FIFOs and device nodes. Directories are only removed
        with O(remove_empty_dirs).
    type: str
    choices: [file, any]
    default: file
  max_depth:
    description:
      - How many directory levels below each path to walk. V(0) purges only the entries directly inside the path.
      - Without it, the whole tree is walked.
    type: int
  remove_empty_dirs:
    description:
      - Also remove the directories that are empty once purged, when their own O(age_stamp), as found before the purge,
        is older than O(age). A directory that held files newer than O(age) is therefore kept.
      - The directories in O(paths) themselves are never removed.
    type: bool
    default: false
  sample_size:
    description:
      - How many removed paths to return in RV(sample).
    type: int
    default: 20
notes:
  - Entries that cannot be handled, for example because of permissions, are reported in RV(errors) and do not make the module fail.
  - A path whose directories changed after the paths were checked (a component swapped for a symbolic link or another directory,
    or the allowed root itself replaced) makes the module fail with a message naming the component, after the other paths were purged.
seealso:
  - module: ansible.builtin.find
  - module: ansible.builtin.file
"""

EXAMPLES = r"""
- name: Remove files older than a week from the application's temporary directory
  dihya.ops.purge_files:
    paths:
      - /var/tmp/myapp
    allowed_roots:
      - /var/tmp
    age: 7d

- name: Purge the application's temporary folders, never its code, virtual environment or data
  dihya.ops.purge_files:
    paths:
      - /srv/myapp/tmp
    allowed_roots:
      - /srv/myapp
    protected_paths:
      - /srv/myapp
      - /srv/myapp/app
      - /srv/myapp/venv
      - /srv/myapp/data
    age: 7d

- name: Purge old uploads and caches, keeping lock files, and tidy empty directories
  dihya.ops.purge_files:
    paths:
      - /srv/myapp/uploads/tmp
      - /srv/myapp/cache
    allowed_roots:
      - /srv/myapp
    age: 12h
    exclude:
      - '*.lock'
      - .keep
    remove_empty_dirs: true
  register: dihya_purge

- name: Show how much space was freed
  ansible.builtin.debug:
    msg: "{{ dihya_purge.files_removed }} files, {{ dihya_purge.bytes_freed | human_readable }} freed"

- name: Remove large core dumps not read for 30 days, only at the top of the directory
  dihya.ops.purge_files:
    paths:
      - /var/crash/myapp
    allowed_roots:
      - /var/crash
    age: 30d
    age_stamp: atime
    include:
      - 'core.*'
    min_size: 1048576
    max_depth: 0
"""

RETURN = r"""
files_removed:
  description: Number of files (and, with O(file_type=any), other non-directory entries) removed, or that would be removed in check mode.
  returned: always
  type: int
  sample: 42
bytes_freed:
  description: Total size of the regular files removed (or that would be removed in check mode), in bytes.
  returned: always
  type: int
  sample: 1048576
dirs_removed:
  description: Number of empty directories removed, or that would be removed in check mode. Always V(0) without O(remove_empty_dirs).
  returned: always
  type: int
  sample: 3
skipped_symlinks:
  description: Number of symbolic links met during the walk and left in place. Links are never followed.
  returned: always
  type: int
  sample: 1
sample:
  description:
    - The first O(sample_size) paths removed (or that would be removed in check mode), in the order of the walk.
    - Directories end with C(/). Bytes that are not valid UTF-8 are shown as U+FFFD.
  returned: always
  type: list
  elements: str
  sample: [/var/tmp/myapp/report-2024-01-01.csv, /var/tmp/myapp/old/]
errors:
  description: Entries that could not be handled, at most 50. RV(error_count) counts all of them.
  returned: always
  type: list
  elements: dict
  contains:
    path:
      description: The entry.
      type: str
      returned: always
      sample: /var/tmp/myapp/locked
    error:
      description: What went wrong.
      type: str
      returned: always
      sample: "not descended: too many levels of symbolic links"
error_count:
  description: Number of entries that could not be handled.
  returned: always
  type: int
  sample: 0
paths:
  description: One summary per entry of O(paths), in the same order.
  returned: always
  type: list
  elements: dict
  contains:
    path:
      description: The directory, with symbolic links resolved.
      type: str
      returned: always
      sample: /var/tmp/myapp
    exists:
      description: Whether the directory exists. A missing directory is skipped.
      type: bool
      returned: always
      sample: true
    files_removed:
      description: Files removed below this directory (or that would be, in check mode).
      type: int
      returned: always
      sample: 40
    bytes_freed:
      description: Bytes freed below this directory (or that would be, in check mode).
      type: int
      returned: always
      sample: 1000000
    dirs_removed:
      description: Empty directories removed below this directory (or that would be, in check mode).
      type: int
      returned: always
      sample: 2
    skipped_symlinks:
      description: Symbolic links left in place below this directory.
      type: int
      returned: always
      sample: 1
    other_filesystems:
      description: Mount points below this directory that were not entered.
      type: int
      returned: always
      sample: 0
    errors:
      description: Entries below this directory that could not be handled.
      type: int
      returned: always
      sample: 0
"""

from ansible.module_utils.basic import AnsibleModule

from ansible_collections.dihya.ops.plugins.module_utils._purge import (
    AGE_STAMPS,
    DEFAULT_SAMPLE_SIZE,
    FILE_TYPES,
    PurgeError,
    Purger,
    PurgeSpec,
    parse_age,
)


def main() -> None:
    module = AnsibleModule(
        argument_spec=dict(
            paths=dict(type='list', elements='path', required=True),
            allowed_roots=dict(type='list', elements='path', required=True),
            protected_paths=dict(type='list', elements='path', default=[]),
            force=dict(type='bool', default=False),
            age=dict(type='raw', required=True),
            age_stamp=dict(type='str', default='mtime', choices=list(AGE_STAMPS)),
            include=dict(type='list', elements='str', default=['*']),
            exclude=dict(type='list', elements='str', default=[]),
            min_size=dict(type='int', default=0),
            file_type=dict(type='str', default='file', choices=list(FILE_TYPES)),
            max_depth=dict(type='int'),
            remove_empty_dirs=dict(type='bool', default=False),
            sample_size=dict(type='int', default=DEFAULT_SAMPLE_SIZE),
        ),
        supports_check_mode=True,
    )
    params = module.params

    try:
        spec = PurgeSpec(
            age=parse_age(params['age']),
            age_stamp=params['age_stamp'],
            include=tuple(params['include']),
            exclude=tuple(params['exclude']),
            min_size=params['min_size'],
            file_type=params['file_type'],
            max_depth=params['max_depth'],
            remove_empty_dirs=params['remove_empty_dirs'],
            sample_size=params['sample_size'],
            check_mode=module.check_mode,
        )
        purger = Purger(spec)
    except PurgeError as exc:
        module.fail_json(msg=str(exc))

    with purger:
        try:
            # Every path is validated, and its directories opened from its allowed root, before anything is removed.
            purger.prepare(params['paths'], params['allowed_roots'], params['protected_paths'], params['force'])
        except PurgeError as exc:
            module.fail_json(msg=str(exc), **purger.result())
        purger.run()
    result = purger.result()
    if purger.swapped:
        module.fail_json(
            msg='refusing to purge what changed after the paths were checked, nothing below it was touched: ' + '; '.join(purger.swapped),
            **result
        )
    module.exit_json(**result)


if __name__ == '__main__':
    main()
