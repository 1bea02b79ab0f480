# Copyright (c) Dihya ops maintainers
# GNU General Public License v3.0+ (see LICENSES/GPL-3.0-or-later.txt or https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later

"""The operations of the dihya.ops collection from Python: :func:`run_ops` over ansible-runner (docs/run-ops.md)."""

from __future__ import annotations

from ._operations import CONTEXT_KEYS, BadInput, Context, Operation, operations, validate_context
from ._results import EXIT_CODES, STATUSES, EventLog, HostFailure, RunResult
from ._run import DEFAULT_ROTATE_ARTIFACTS, run_ops

__all__ = ['CONTEXT_KEYS', 'DEFAULT_ROTATE_ARTIFACTS', 'EXIT_CODES', 'STATUSES', 'BadInput', 'Context', 'EventLog', 'HostFailure',
           'Operation', 'RunResult', 'operations', 'run_ops', 'validate_context']
