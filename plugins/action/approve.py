# Copyright (c) Dihya ops maintainers
# GNU General Public License v3.0+ (see LICENSES/GPL-3.0-or-later.txt or https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later

"""The dihya.ops.approve action: a four-eyes approval of one request, signed and written to the governance store."""

from __future__ import annotations

import datetime
import re
import typing as t

from ansible_collections.dihya.ops.plugins.action import authorise
from ansible_collections.dihya.ops.plugins.action.operation_context import CONTEXT_VARIABLES
from ansible_collections.dihya.ops.plugins.module_utils import _audit
from ansible_collections.dihya.ops.plugins.plugin_utils import _approval, _governance_store, _policy, _run_context

DURATION = re.compile(r'^([1-9][0-9]{0,6})([smhd])$')
UNITS = {'s': 1, 'm': 60, 'h': 3600, 'd': 86400}


def lifetime_of(text: t.Any) -> datetime.timedelta:
    match = DURATION.match(text) if isinstance(text, str) else None
    if match is None:
        raise _approval.ApprovalError('lifetime must be a duration such as 30m, 24h or 2d')
    return datetime.timedelta(seconds=int(match.group(1)) * UNITS[match.group(2)])


class ActionModule(authorise.ActionModule):
    """The approver is the user of this run (its run context); the requester and the request are the options."""

    _VALID_ARGS = frozenset(('requester', 'operation', 'tenant', 'environment', 'params', 'lifetime'))

    def run(self, tmp: t.Any = None, task_vars: dict[str, t.Any] | None = None) -> dict[str, t.Any]:
        result: dict[str, t.Any] = super(authorise.ActionModule, self).run(tmp, task_vars)  # pylint: disable=bad-super-call
        task_vars = task_vars or {}
        self._vars = task_vars
        dummy, args = self.validate_argument_spec(argument_spec={
            'requester': {'type': 'str', 'required': True}, 'operation': {'type': 'str', 'required': True},
            'tenant': {'type': 'str'}, 'environment': {'type': 'str'}, 'params': {'type': 'dict', 'default': {}},
            'lifetime': {'type': 'str', 'default': '24h'}})
        warnings: list[str] = []
        check_mode = bool(self._play_context.check_mode)
        try:
            context = _run_context.resolve({name: self._templar.template(task_vars[name]) for name in CONTEXT_VARIABLES if name in task_vars})
            request = _policy.Request(user=_run_context.check_user(args['requester'], 'requester'), operation=args['operation'].strip(),
                                      tenant=_run_context.check_tenant(args['tenant'], 'tenant'),
                                      environment=_run_context.check_environment(args['environment'], 'environment'), check_mode=False)
            policy = self._load_policy(task_vars, warnings)
            key = str(self._templar.template(task_vars.get('dihya_ops_approval_key') or '')).encode()
            store = _governance_store.open_store(self._templar.template(task_vars.get('dihya_ops_governance_store')) or {})
            try:
                record = _approval.grant(store, key, policy, context.user, request, _policy.params_hash(args['params']),
                                         datetime.datetime.now(datetime.UTC), lifetime_of(args['lifetime']), write=not check_mode)
            finally:
                store.close()
        except (_run_context.ContextError, _policy.PolicyError, _governance_store.StoreError, _approval.ApprovalError) as exc:
            result.update(failed=True, msg=f'no approval was written: {exc}')
            return result
        self._audit_grant(record, context.trace_id, check_mode, warnings)
        result.update(changed=not check_mode, approval_id=None if check_mode else record.approval_id, approver=record.approver,
                      requester=record.requester, operation=record.operation, tenant=record.tenant, environment=record.environment,
                      expires=record.expires,
                      msg=(f'{record.approver} would approve {record.operation} (check mode: nothing written)' if check_mode else
                           f'approval {record.approval_id} of {record.operation} by {record.approver}, valid until {record.expires}'))
        if warnings:
            result['warnings'] = warnings
        return result

    def _audit_grant(self, record: _approval.Approval, trace_id: str, check_mode: bool, warnings: list[str]) -> None:
        found = authorise.controller_log()
        if found is None or check_mode:
            return
        log, settings = found
        event = _audit.build_event(action='dihya.ops.approve', category='security', outcome='success', settings=settings,
                                   user=record.approver, tenant=record.tenant, trace_id=trace_id, labels={'operation': record.operation},
                                   details={'approval_id': record.approval_id, 'operation': record.operation,
                                            'environment': record.environment, 'expires': record.expires})
        authorise.release_inherited_lock(log.path + '.lock')
        try:
            _audit.AuditLog(log.path, settings).append([event])
        except (_audit.AuditError, OSError) as exc:
            warnings.append(f'the approval could not be written to the controller audit log: {exc}')
