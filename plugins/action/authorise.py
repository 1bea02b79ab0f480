# Copyright (c) Dihya ops maintainers
# GNU General Public License v3.0+ (see LICENSES/GPL-3.0-or-later.txt or https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later

"""The dihya.ops.authorise action: the authorisation policy, decided on the controller before any host task (see the module's documentation)."""

from __future__ import annotations

import datetime
import gc
import os
import sys
import typing as t

from ansible.plugins.action import ActionBase

from ansible_collections.dihya.ops.plugins.action.operation_context import CONTEXT_VARIABLES
from ansible_collections.dihya.ops.plugins.module_utils import _audit
from ansible_collections.dihya.ops.plugins.plugin_utils import _approval, _governance_store, _policy, _quota, _run_context

#: The environment variable naming the controller's policy file; it wins over the variable dihya_ops_policy_file.
POLICY_ENV = 'DIHYA_OPS_POLICY'
POLICY_VARIABLE = 'dihya_ops_policy_file'
CALLBACK_MODULE = 'ansible_collections.dihya.ops.plugins.callback.audit'
HOW = (f'give the controller a policy: {POLICY_ENV} in the environment of ansible-playbook (AWX: the execution '
       f'environment), or the inventory variable {POLICY_VARIABLE}; see docs/policy.md')


def governance() -> dict[str, t.Any] | None:
    """The governance store, quota and approval engines (plugin_utils); tests replace them, or remove them (None)."""
    return {'_governance_store': _governance_store, '_quota': _quota, '_approval': _approval}


def controller_log() -> tuple[t.Any, _audit.AuditSettings] | None:
    """The log and settings of the dihya.ops.audit callback of this run, when it is enabled and keyed.

    The action runs in a worker forked from ``ansible-playbook``, which holds the callback object; writing through
    the same engine (one exclusive lock, the chain read from the file) keeps one tamper-evident chain on the controller.
    """
    module = sys.modules.get(CALLBACK_MODULE)
    if module is None:
        return None
    kind = getattr(module, 'CallbackModule', None)
    if not isinstance(kind, type):
        return None
    for item in gc.get_referrers(kind):
        log, settings = getattr(item, '_log', None), getattr(item, '_settings', None)
        if isinstance(item, kind) and not getattr(item, 'disabled', True) and log is not None and isinstance(settings, _audit.AuditSettings):
            return log, settings
    return None


def release_inherited_lock(lock_path: str) -> None:
    """Close this process's descriptors of the log's lock file, inherited when ``ansible-playbook`` forked the worker.

    A worker forked while the callback was writing (its flush timer) holds a copy of the descriptor that holds the
    ``flock``; the callback's ``close()`` then does not release the lock, and this process would wait for itself.
    The callback keeps its own descriptor, so closing this process's copies changes nothing for it.
    """
    try:
        target = os.path.realpath(lock_path)
        descriptors = os.listdir('/proc/self/fd')
    except OSError:
        return
    for name in descriptors:
        try:
            if os.path.realpath(os.readlink(f'/proc/self/fd/{name}')) == target:
                os.close(int(name))
        except (OSError, ValueError):
            continue


class ActionModule(ActionBase):  # type: ignore[misc]  # ansible-core ships no type information
    """Decide every (tenant, environment) of the play's hosts against the policy; fail the run on any denial."""

    TRANSFERS_FILES = False
    _VALID_ARGS = frozenset(('operation', 'params', 'approval_id', 'release'))
    _requires_connection = False
    _vars: t.Mapping[str, t.Any] = {}

    def _host_var(self, hostvars: t.Any, host: str, name: str) -> t.Any:
        try:
            value = hostvars[host].get(name)
        except (KeyError, TypeError):
            return None
        return self._templar.template(value) if value is not None else None

    def _load_policy(self, task_vars: t.Mapping[str, t.Any], warnings: list[str]) -> _policy.Policy:
        declared = self._templar.template(task_vars.get(POLICY_VARIABLE)) if POLICY_VARIABLE in task_vars else None
        declared = declared.strip() if isinstance(declared, str) and declared.strip() else None
        controller = (os.environ.get(POLICY_ENV) or '').strip() or None
        if controller is not None:
            if declared is not None and os.path.realpath(os.path.expanduser(declared)) != os.path.realpath(os.path.expanduser(controller)):
                warnings.append(f'{POLICY_VARIABLE}={declared} is ignored: the controller names its policy with {POLICY_ENV}')
            path = controller
        elif declared is not None:
            path = declared
        else:
            raise _policy.PolicyError(f'no authorisation policy: {HOW}')
        return _policy.load(os.path.expanduser(path))

    def _requests(self, task_vars: t.Mapping[str, t.Any], operation: t.Any, check_mode: bool,
                  params: dict[_policy.Request, dict[str, t.Any] | None] | None = None) -> dict[_policy.Request, list[str]]:
        """Every distinct request of the play: one per (operation, tenant, environment) of its hosts.

        ``params`` receives the parameters an approval of each request is bound to: for an RGPD request, its subject
        (``rgpd_subject_id``); None when hosts of one request name different subjects, which only a request that
        needs an approval refuses.
        """
        hostvars = task_vars.get('hostvars') or {}
        hosts = list(task_vars.get('ansible_play_hosts_all') or task_vars.get('ansible_play_hosts') or [task_vars.get('inventory_hostname')])
        requests: dict[_policy.Request, list[str]] = {}
        for host in hosts:
            bound: dict[str, t.Any] = {}
            variables = {name: self._host_var(hostvars, host, name) for name in CONTEXT_VARIABLES}
            context = _run_context.resolve({name: value for name, value in variables.items() if value is not None})
            name = operation.strip() if isinstance(operation, str) else None
            tenant = context.tenant
            if name == 'rgpd':
                action = self._host_var(hostvars, host, 'rgpd_operation')
                name = f'rgpd.{action}' if isinstance(action, str) and action.strip() else 'rgpd'
                tenant = _run_context.check_tenant(self._host_var(hostvars, host, 'rgpd_tenant'), 'rgpd_tenant') or tenant
                subject = self._host_var(hostvars, host, 'rgpd_subject_id')
                if subject not in (None, ''):
                    bound['subject'] = str(subject)
            if not isinstance(name, str) or not name.strip():
                raise _policy.PolicyError('the operation to authorise is not named (the option operation)')
            request = _policy.Request(user=context.user, operation=name.strip(), tenant=tenant, environment=context.environment,
                                      check_mode=check_mode)
            requests.setdefault(request, []).append(str(host))
            if params is not None and params.setdefault(request, bound) not in (None, bound):
                params[request] = None  # hosts of the request name different subjects: one approval cannot bind them
        return requests

    def run(self, tmp: t.Any = None, task_vars: dict[str, t.Any] | None = None) -> dict[str, t.Any]:
        result: dict[str, t.Any] = super().run(tmp, task_vars)
        task_vars = task_vars or {}
        self._vars = task_vars
        dummy, args = self.validate_argument_spec(argument_spec={
            'operation': {'type': 'str', 'required': True}, 'params': {'type': 'dict'}, 'approval_id': {'type': 'str', 'no_log': False},
            'release': {'type': 'bool', 'default': False}})
        check_mode = bool(self._play_context.check_mode)
        warnings: list[str] = []
        trace_id = _run_context.resolve({name: self._templar.template(task_vars[name]) for name in CONTEXT_VARIABLES
                                         if name in task_vars}).trace_id
        self._params: dict[_policy.Request, dict[str, t.Any] | None] = {}
        try:
            requests = self._requests(task_vars, args['operation'], check_mode, self._params)
        except (_run_context.ContextError, _policy.PolicyError) as exc:
            result.update(failed=True, msg=f'{exc}. Nothing was run.')
            return result
        if args['release']:
            return self._release(result, task_vars, list(requests), trace_id, warnings)
        try:
            policy = self._load_policy(task_vars, warnings)
        except _policy.PolicyError as exc:
            decisions = [(request, hosts, _policy.Decision(allowed=False, reason=f'access denied: {exc}', impersonal=f'access denied: {exc}'))
                         for request, hosts in requests.items()]
        else:
            decisions = [(request, hosts, self._decide(policy, request, args, trace_id)) for request, hosts in requests.items()]
        self._record(decisions, trace_id, warnings)
        denied = [decision for dummy_request, dummy_hosts, decision in decisions if not decision.allowed]
        summary = [dict(decision.summary(), operation=request.operation, tenant=request.tenant, environment=request.environment,
                        check_mode=request.check_mode, hosts=hosts) for request, hosts, decision in decisions]
        fact = {'allowed': not denied, 'reason': '; '.join(decision.reason for dummy_r, dummy_h, decision in decisions),
                'roles': sorted({role for dummy_r, dummy_h, decision in decisions for role in decision.roles}), 'decisions': summary}
        result.update(changed=False, ansible_facts={'dihya_ops_decision': fact}, decisions=summary)
        if warnings:
            result['warnings'] = warnings
        if denied:
            del result['ansible_facts']
            result.update(failed=True, msg='; '.join(decision.reason for decision in denied) + '. Nothing was run on any host.')
        else:
            result['msg'] = fact['reason']
        return result

    def _decide(self, policy: _policy.Policy, request: _policy.Request, args: t.Mapping[str, t.Any], trace_id: str) -> _policy.Decision:
        """RBAC, then (with the governance engines) lock-outs, four eyes and quotas, as docs/policy.md orders them."""
        decision = _policy.evaluate(policy, request)
        engines = governance()
        if engines is None:
            if decision.allowed and (decision.needs_approval or decision.quotas or decision.concurrency):
                why = (f'{request.operation} needs a four-eyes approval or a quota here, and the governance store of this '
                       'collection is not installed; nothing can enforce them, so the request is refused')
                return _policy.Decision(allowed=False, reason=f'access denied: {why}', roles=decision.roles, impersonal=f'access denied: {why}')
            return decision
        try:
            return self._governed(engines, policy, request, decision, args, trace_id)
        except (_governance_store.StoreError, _quota.QuotaError) as exc:
            why = f'access denied: the governance store cannot decide: {exc}'
            return _policy.Decision(allowed=False, reason=why, roles=decision.roles, impersonal=why.replace(request.user, 'the user'))

    def _governed(self, engines: t.Mapping[str, t.Any], policy: _policy.Policy, request: _policy.Request, decision: _policy.Decision,
                  args: t.Mapping[str, t.Any], trace_id: str) -> _policy.Decision:
        """The stateful checks through the governance store (interfaces in docs/policy.md)."""
        now = datetime.datetime.now(datetime.UTC)
        if policy.anti_abuse is None and not (decision.allowed and (decision.needs_approval or decision.quotas or decision.concurrency)):
            return decision  # nothing stateful to check: the store is not opened
        config = self._templar.template(self._vars.get('dihya_ops_governance_store'))
        store = engines['_governance_store'].open_store(config or {})
        try:
            return self._stateful(engines, store, policy, request, decision, args, trace_id, now)
        finally:
            store.close()

    def _stateful(self, engines: t.Mapping[str, t.Any], store: t.Any, policy: _policy.Policy, request: _policy.Request,
                  decision: _policy.Decision, args: t.Mapping[str, t.Any], trace_id: str, now: datetime.datetime) -> _policy.Decision:
        """Lock-outs, approval and quotas against an open ``store``."""
        quota, approval = engines['_quota'], engines['_approval']

        def refused(reason: str) -> _policy.Decision:
            return _policy.Decision(allowed=False, reason=reason, roles=decision.roles, impersonal=reason.replace(request.user, 'the user'))

        if policy.anti_abuse is not None:
            locked = quota.locked_out(store, policy.anti_abuse, request.user, now)
            if locked:
                return refused(f'access denied: {locked}')
        if not decision.allowed:
            if policy.anti_abuse is not None:
                locked = quota.record_denial(store, policy.anti_abuse, request.user, trace_id, now)
                if locked:
                    return refused(f'{decision.reason}; {locked}')
            return decision
        if decision.needs_approval:
            key = str(self._templar.template(self._vars.get('dihya_ops_approval_key') or '')).encode()
            params = args['params'] if args.get('params') is not None else self._params.get(request, {})
            if params is None:
                return refused(f'access denied: the hosts of one {request.operation} request name different subjects, and an approval '
                               'binds one subject; run them one by one')
            try:
                digest = _policy.params_hash(params)
            except _policy.PolicyError as exc:
                return refused(f'access denied: {exc}')
            answer = approval.require(store, key, request, args.get('approval_id'), digest, trace_id, now)
            if not answer.allowed:
                return refused(f'access denied: {answer.reason}')
        answer = quota.enforce(store, decision.quotas, decision.concurrency, request, trace_id, now)
        if not answer.allowed:
            return refused(f'access denied: {answer.reason}')
        return decision

    def _release(self, result: dict[str, t.Any], task_vars: t.Mapping[str, t.Any], requests: list[_policy.Request], trace_id: str,
                 warnings: list[str]) -> dict[str, t.Any]:
        """The end of the run: free the concurrency locks its requests hold, so that the next run need not wait for their TTL.

        Only locks of this trace id are freed; a request without a concurrency limit, a dry run or a policy that cannot
        be read frees nothing. A store that cannot be reached is a warning: the locks then expire with their TTL.
        """
        result.update(changed=False, released=[])
        engines = governance()
        try:
            policy = self._load_policy(task_vars, warnings)
        except _policy.PolicyError:
            return result
        limited = [request for request in requests if not request.check_mode and _policy.evaluate(policy, request).concurrency]
        if engines is None or not limited:
            return result
        try:
            store = engines['_governance_store'].open_store(self._templar.template(task_vars.get('dihya_ops_governance_store')) or {})
            try:
                for request in limited:
                    engines['_quota'].release(store, request, trace_id)
                    result['released'].append(request.operation)
            finally:
                store.close()
        except (_governance_store.StoreError, _quota.QuotaError) as exc:
            warnings.append(f'the concurrency locks of this run are not released (they expire with their lock_ttl): {exc}')
        if warnings:
            result['warnings'] = warnings
        return result

    def _record(self, decisions: list[tuple[_policy.Request, list[str], _policy.Decision]], trace_id: str, warnings: list[str]) -> None:
        """Every decision, allowed or denied, as an event of the controller's audit log (the callback's chain)."""
        found = controller_log()
        if found is None:
            warnings.append('the authorisation decision is not in a controller audit log: enable the dihya.ops.audit callback '
                            'with a key (docs/audit.md)')
            return
        log, settings = found
        events = []
        for request, hosts, decision in decisions:
            details = {'operation': request.operation, 'environment': request.environment, 'check_mode': request.check_mode,
                       'allowed': decision.allowed, 'reason': decision.impersonal or decision.reason, 'roles': list(decision.roles),
                       'needs_approval': decision.needs_approval, 'hosts': len(hosts)}
            events.append(_audit.build_event(action='dihya.ops.authorise', category='security',
                                             outcome='success' if decision.allowed else 'denied', settings=settings,
                                             user=request.user, tenant=request.tenant, trace_id=trace_id,
                                             labels={'operation': request.operation}, details=details))
        release_inherited_lock(log.path + '.lock')
        try:
            _audit.AuditLog(log.path, settings).append(events)
        except (_audit.AuditError, OSError) as exc:
            warnings.append(f'the authorisation decision could not be written to the controller audit log: {exc}')
