# Copyright (c) Dihya ops maintainers
# GNU General Public License v3.0+ (see LICENSES/GPL-3.0-or-later.txt or https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later

# This module utility is PRIVATE to the collection. It can change at any time.

"""Tamper-evident audit log, in one import: ECS-compatible JSON lines chained with HMAC-SHA256.

The engine knows nothing about Ansible and uses the standard library only, so that it runs on
any managed host and on the controller. Its parts:

* ``_audit_event``: :class:`AuditSettings`, :func:`build_event` (the ECS event, pseudonyms),
  :func:`check_path`, :class:`AuditError`;
* ``_audit_record``: the record format (``dihya.audit = {"seq", "prev", "hmac"}``), reading lines,
  opening log files, :func:`rotated_files`;
* ``_audit_log``: :class:`AuditLog`, the writer (locking, rotation checkpoints, crash recovery,
  durability);
* ``_audit_verify``: :func:`verify` and :class:`VerifyReport` (what is a crash, what is tampering);
* ``_audit_emit``: the work of the audit_event module (event, log, spool and sinks).

Other engines and plugins import from here. The audit modules import the parts they need, so that
Ansible ships no more than those to the managed host. Each part's documentation tells its rules.
"""

from __future__ import annotations

from ansible_collections.dihya.ops.plugins.module_utils._audit_event import (
    CATEGORIES,
    FSYNC_MODES,
    OUTCOMES,
    AuditError,
    AuditSettings,
    build_event,
    check_path,
)
from ansible_collections.dihya.ops.plugins.module_utils._audit_log import AuditLog
from ansible_collections.dihya.ops.plugins.module_utils._audit_record import CHECKPOINT_ACTION, ZERO_HASH, rotated_files
from ansible_collections.dihya.ops.plugins.module_utils._audit_verify import VerifyReport, verify

__all__ = [
    'CATEGORIES', 'CHECKPOINT_ACTION', 'FSYNC_MODES', 'OUTCOMES', 'ZERO_HASH',
    'AuditError', 'AuditLog', 'AuditSettings', 'VerifyReport',
    'build_event', 'check_path', 'rotated_files', 'verify',
]
