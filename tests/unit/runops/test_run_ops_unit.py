# Copyright (c) Dihya ops maintainers
# GNU General Public License v3.0+ (see LICENSES/GPL-3.0-or-later.txt or https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later

"""run_ops and dihya-ops without a run: validation of the operation, the context and the options (nothing runs on bad
input: in the unit tier, an ansible-playbook process would fail the test), the command line's parsing and exit codes,
the JUnit report, what is read from runner's events, and the example CI pipelines of docs/examples/."""

from __future__ import annotations

import json
import pathlib
import re
import shlex
import xml.etree.ElementTree as ET

import click
import pytest
import yaml
from click.testing import CliRunner

from dihya_ops_run import EXIT_CODES, EventLog, RunResult, operations, run_ops, validate_context
from dihya_ops_run import _operations as ops
from dihya_ops_run._results import HostFailure
from dihya_ops_run._run import _Dumper, _literal
from dihya_ops_run.cli import main
from dihya_ops_run.junit import junit_xml

ROOT = pathlib.Path(__file__).resolve().parents[3]
DEMO = ROOT / 'inventories' / 'local'


@pytest.mark.parametrize(('context', 'expected'), [
    ('acme', 'must be a dictionary'),
    ({'usr': 'alice'}, "unknown context key(s): 'usr'"),
    ({'user': 42}, 'context.user must be a string, got int'),
    ({'user': ''}, 'non-empty'),
    ({'user': 'alice\nbob'}, 'control characters'),
    ({'tenant': '../acme'}, 'context.tenant must be a tenant name'),
    ({'tenant': "acme' or '1"}, 'context.tenant'),
    ({'route': 'api/x'}, 'starting with /'),
    ({'route': '/a b'}, 'context.route'),
    ({'action': '{{ x }}'}, 'context.action'),
    ({'subject': '42; rm -rf /'}, 'context.subject'),
    ({'outcome': 'maybe'}, 'context.outcome'),
    ({'data': ['a']}, 'context.data must be a dictionary'),
    ({'data': {'Bad-Key': 1}}, 'not a lowercase identifier'),
    ({'data': {'x': {1, 2}}}, 'must hold JSON values'),
    ({'data': {'x': 'a\x00b'}}, 'NUL'),
    ({'data': {'x': [[[[[[[['deep']]]]]]]]}}, 'nested deeper'),
    ({'data': {'x': 'y' * 70000}}, 'larger than'),
])
def test_bad_contexts_are_refused_with_a_clear_message(context, expected):
    with pytest.raises(ops.BadInput) as caught:
        validate_context(context)
    assert expected in str(caught.value)


def test_hostile_data_values_are_data():
    ctx = validate_context({'user': 'ci-pipeline', 'tenant': 'acme', 'data': {'note': "{{ lookup('pipe', 'id') }}", 'n': [1, True, None]}})
    assert ctx.data['note'] == "{{ lookup('pipe', 'id') }}"
    text = yaml.dump(_literal({'note': ctx.data['note'], 'nested': {'v': ['{% raw %}']}, 'n': 1}), Dumper=_Dumper)
    assert "note: !unsafe '{{ lookup(''pipe'', ''id'') }}'" in text and "!unsafe '{% raw %}'" in text and 'n: 1' in text


def test_operations_are_the_playbooks_and_the_original_names():
    known = operations()
    playbooks = sorted(p.stem for p in (ROOT / 'playbooks').glob('*.yml'))
    assert set(playbooks) <= set(known)
    assert known['monitoring'].playbook == 'check_health'
    assert ('approve' in known) == ('approve' in playbooks)
    for name in ('security', 'plugin', 'reporting'):
        if name not in playbooks:
            assert known[name].playbook is None
            with pytest.raises(ops.BadInput, match='not available yet'):
                ops.resolve(name)
    for bad in ('nosuch', '../check_health', 'Check_Health', 7):
        with pytest.raises(ops.BadInput):
            ops.resolve(bad)


def test_the_context_becomes_the_playbook_variables():
    rgpd = ops.resolve('rgpd')
    ctx = validate_context({'action': 'export', 'subject': '42', 'tenant': 'acme'})
    assert ops.playbook_vars(rgpd, ctx, ops.collection_dir()) == {
        'dihya_ops_tenant': 'acme', 'rgpd_operation': 'export', 'rgpd_subject_id': '42', 'rgpd_tenant': 'acme'}
    with pytest.raises(ops.BadInput, match=r'context\.action, one of'):
        ops.playbook_vars(rgpd, validate_context({'action': 'drop', 'subject': '42', 'tenant': 'acme'}), None)
    health = ops.resolve('monitoring')
    assert ops.playbook_vars(health, validate_context({'data': {'check_health_timeout': 3}}), ops.collection_dir()) == {'check_health_timeout': 3}
    with pytest.raises(ops.BadInput, match=r'not a variable of the monitoring operation'):
        ops.playbook_vars(health, validate_context({'data': {'check_health_nosuch': 1}}), ops.collection_dir())
    with pytest.raises(ops.BadInput, match='not a variable'):
        ops.playbook_vars(health, validate_context({'data': {'ansible_connection': 'ssh'}}), ops.collection_dir())
    with pytest.raises(ops.BadInput, match=r'needs context\.action'):
        ops.playbook_vars(ops.resolve('audit'), validate_context({'user': 'a'}), None)


@pytest.mark.parametrize(('kwargs', 'expected'), [
    ({'inventory': '/nonexistent/inventory'}, 'does not exist'),
    ({'inventory': DEMO}, 'no Vault password file was given'),
    ({'inventory': DEMO, 'vault_password_file': '/nonexistent'}, 'not a readable file'),
    ({'inventory': DEMO / 'hosts.yml', 'vault_password_file': DEMO / 'demo-vault-password', 'limit': 'a b'}, 'limit must be'),
    ({'inventory': DEMO / 'hosts.yml', 'vault_password_file': DEMO / 'demo-vault-password', 'timeout': 0}, 'timeout'),
    ({'inventory': DEMO / 'hosts.yml', 'vault_password_file': DEMO / 'demo-vault-password', 'extra_vars': {'A': 1}}, 'lowercase identifier'),
    ({'inventory': DEMO / 'hosts.yml', 'vault_password_file': DEMO / 'demo-vault-password', 'verbosity': 9}, 'verbosity'),
    ({'inventory': DEMO / 'hosts.yml', 'vault_password_file': DEMO / 'demo-vault-password', 'trace_id': '0' * 32}, 'trace_id'),
])
def test_bad_options_run_nothing(tmp_path, kwargs, expected):
    pdd = tmp_path / 'pdd'
    result = run_ops('check_health', {'user': 'ci-pipeline'}, private_data_dir=pdd, **kwargs)
    assert result.status == 'bad_input' and result.exit_code == EXIT_CODES['bad_input'] == 2
    assert expected in result.message
    assert result.rc is None and not result.hosts and not pdd.exists()


def _events(*events: dict) -> EventLog:
    log = EventLog(check=False)
    for event in events:
        log(event)
    return log


def test_the_event_log_reads_failures_denials_and_produced_files():
    log = _events(
        {'event': 'playbook_on_task_start', 'event_data': {'task': 'Decide'}},
        {'event': 'runner_on_failed', 'event_data': {'host': 'h1', 'task': 'Decide', 'task_action': 'dihya.ops.authorise',
                                                     'res': {'msg': 'access denied: mallory may not run check_health'}}},
        {'event': 'runner_on_failed', 'event_data': {'host': 'h2', 'task': 'Loop', 'task_action': 'ansible.builtin.command', 'ignore_errors': True,
                                                     'res': {'msg': 'ignored'}}},
        {'event': 'runner_on_ok', 'event_data': {'host': 'h2', 'task_action': 'dihya.ops.health_check',
                                                 'res': {'metrics_path': '/srv/m/health.prom', 'record': {'url': {'path': '/api/x'}}}}},
        {'event': 'runner_on_ok', 'event_data': {'host': 'h2', 'task_action': 'dihya.ops.audit_event', 'res': {'path': '/srv/audit/audit.log'}}},
        {'event': 'runner_on_ok', 'event_data': {'host': 'h2', 'task_action': 'dihya.ops.rgpd', 'res': {'archive': '/srv/x/export.zip'}}},
        {'event': 'runner_on_ok', 'event_data': {'host': 'h2', 'task_action': 'x', 'res': {'censored': 'hidden', 'path': '/secret'}}},
        {'event': 'runner_on_ok', 'event_data': {'host': 'h2', 'task_action': 'ansible.builtin.file', 'res': {'path': '/srv/audit'}}},
        {'event': 'runner_on_ok', 'event_data': {'host': 'h2', 'task_action': 'x', 'res': {'state': 'directory', 'path': '/srv/m'}}},
    )
    assert log.denied() and list(log.failures) == ['h1'] and log.hosts == ['h1', 'h2']
    assert log.paths == {'metrics': ['/srv/m/health.prom'], 'audit_logs': ['/srv/audit/audit.log'], 'exports': ['/srv/x/export.zip']}
    assert log.task == 'Decide' and log.task_done == {'h1', 'h2'}
    loop = _events({'event': 'runner_on_failed', 'event_data': {'host': 'h', 'task': 'T', 'res': {
        'msg': 'One or more items failed', 'results': [{'failed': False}, {'failed': True, 'msg': 'item two broke'}]}}})
    assert loop.failures['h'].message == 'One or more items failed: item two broke'
    assert not _events({'event': 'runner_on_failed', 'event_data': {'host': 'h', 'task_action': 'ansible.builtin.fail',
                                                                    'res': {'msg': 'access denied: but not from the policy'}}}).denied()


def test_what_a_role_names_as_produced_replaces_the_temporary_name_of_its_kind():
    log = _events(
        {'event': 'runner_on_ok', 'event_data': {'host': 'h1', 'task_action': 'ansible.builtin.fetch',
                                                 'res': {'dest': '/srv/exports/acme/.fetch-x1/archive'}}},
        {'event': 'runner_on_ok', 'event_data': {'host': 'h1', 'task_action': 'dihya.ops.health_check', 'res': {'metrics_path': '/srv/m/h.prom'}}},
        {'event': 'runner_on_ok', 'event_data': {'host': 'h1', 'task_action': 'ansible.builtin.set_fact',
                                                 'res': {'ansible_facts': {'rgpd_produced': {'exports': ['/srv/exports/acme/h1-export.zip.enc']}}}}},
        {'event': 'runner_on_ok', 'event_data': {'host': 'h2', 'task_action': 'ansible.builtin.set_fact',
                                                 'res': {'ansible_facts': {'rgpd_produced': {'exports': '/srv/exports/acme/h2-export.zip.enc'}}}}},
        # Not a declaration: another fact, a relative path, a value that is not a list of paths.
        {'event': 'runner_on_ok', 'event_data': {'host': 'h2', 'task_action': 'ansible.builtin.set_fact',
                                                 'res': {'ansible_facts': {'other': {'exports': ['/x']}, 'a_produced': {'reports': ['rel', 3]}}}}},
    )
    assert log.produced() == {'metrics': ['/srv/m/h.prom'],
                              'exports': ['/srv/exports/acme/h1-export.zip.enc', '/srv/exports/acme/h2-export.zip.enc']}
    checked = EventLog(check=True)
    checked({'event': 'runner_on_ok', 'event_data': {'host': 'h1', 'task_action': 'ansible.builtin.set_fact',
                                                     'res': {'ansible_facts': {'rgpd_produced': {'exports': ['/srv/e.zip']}}}}})
    assert checked.produced() == {}


def _result(**more) -> RunResult:
    data = {'operation': 'restart_services', 'playbook': 'dihya.ops.restart_services', 'status': 'failed', 'rc': 2, 'trace_id': 'a' * 32,
            'check': False, 'start': '2026-01-01T00:00:00+00:00', 'end': '2026-01-01T00:00:09+00:00', 'duration': 9.0}
    data.update(more)
    return RunResult(**data)


def test_junit_has_one_case_per_host_and_one_failure_for_the_failed_host():
    stats = {'ok': 3, 'changed': 1, 'failures': 0, 'dark': 0, 'skipped': 0}
    result = _result(hosts={'h1': dict(stats), 'h2': dict(stats, failures=1)},
                     failures=[HostFailure('h2', 'Gate', 'dihya.ops.health_check', 'h2 is unhealthy: <http_health> & "x"')])
    root = ET.fromstring(junit_xml(result).split('\n', 1)[1])
    suite = root.find('testsuite')
    assert suite.get('tests') == '2' and suite.get('failures') == '1' and suite.get('errors') == '0'
    failure = suite.find("testcase[@name='h2: restart_services']/failure")
    assert failure.get('message') == 'Gate: h2 is unhealthy: <http_health> & "x"'
    assert suite.find("testcase[@name='h1: restart_services']/failure") is None
    bad = ET.fromstring(junit_xml(_result(status='bad_input', message='unknown operation')).split('\n', 1)[1])
    assert bad.find('.//error').get('type') == 'bad_input'
    timeout = ET.fromstring(junit_xml(_result(status='timeout', hosts={'h1': dict(stats)})).split('\n', 1)[1])
    assert timeout.find('testsuite').get('errors') == '1'


def test_exit_codes_are_distinct_and_documented():
    assert len(set(EXIT_CODES.values())) == len(EXIT_CODES)
    doc = (ROOT / 'docs' / 'run-ops.md').read_text()
    for status, code in EXIT_CODES.items():
        assert re.search(rf'\|\s*`?{code}`?\s*\|\s*`{status}`', doc), status
    assert 'Exit codes: 0 successful' in CliRunner().invoke(main, ['run', '--help']).output


def test_the_command_line_refuses_bad_input_without_a_traceback(tmp_path):
    runner = CliRunner()
    bad = runner.invoke(main, ['run', 'check_health', '-i', str(DEMO), '--data', 'no-equals'])
    assert bad.exit_code == 2 and 'expected KEY=VALUE' in bad.output
    missing = runner.invoke(main, ['run', 'check_health'])
    assert missing.exit_code == 2 and "Missing option '-i'" in missing.output
    (tmp_path / 'data.yml').write_text('- not a dict\n')
    listed = runner.invoke(main, ['run', 'check_health', '-i', str(DEMO), '--data-file', str(tmp_path / 'data.yml')])
    assert listed.exit_code == 2 and 'must hold a dictionary' in listed.output
    unknown = runner.invoke(main, ['run', 'nosuch', '-i', str(DEMO), '--json'])
    assert unknown.exit_code == 2 and json.loads(unknown.output)['status'] == 'bad_input'
    assert 'Traceback' not in bad.output + missing.output + listed.output + unknown.output
    # A pipeline log keeps the message on one line, however long (rich would cut it at 80 columns).
    far = tmp_path / ('deep-' * 30) / 'inventory'
    gone = runner.invoke(main, ['run', 'check_health', '-i', str(far)])
    assert gone.exit_code == 2 and f"inventory '{far}' does not exist\n" in gone.output, gone.output


def test_list_names_every_operation():
    listed = CliRunner().invoke(main, ['list', '--json'])
    assert listed.exit_code == 0
    data = json.loads(listed.output)
    assert data['monitoring']['playbook'] == 'dihya.ops.check_health' and data['security']['playbook'] is None


def _commands(script: object) -> list[str]:
    lines = script if isinstance(script, list) else [script]
    found = []
    for line in lines:
        for raw in str(line).replace('\\\n', ' ').split('\n'):
            part = raw.strip()
            if re.match(r'(?:\S*/)?dihya-ops\s', part):
                found.append(part.split(None, 1)[1].split(' > ')[0])
    return found


@pytest.mark.parametrize('name', ['gitlab-ci.yml', 'github-actions.yml'])
def test_the_example_pipelines_parse_and_call_existing_commands(name):
    pipeline = yaml.safe_load((ROOT / 'docs' / 'examples' / name).read_text())
    scripts: list[object] = []
    if name == 'gitlab-ci.yml':
        scripts = [job['script'] for job in pipeline.values() if isinstance(job, dict) and 'script' in job]
        assert any(job.get('artifacts', {}).get('reports', {}).get('junit') for job in pipeline.values() if isinstance(job, dict))
    else:
        for job in pipeline['jobs'].values():
            scripts += [step['run'] for step in job['steps'] if 'run' in step]
    commands = [c for s in scripts for c in _commands(s)]
    assert any('--check' in c for c in commands) and any('--check' not in c and ' run ' in f' {c} ' for c in commands)
    for command in commands:
        argv = shlex.split(re.sub(r'\$\{?\{?\s*[A-Za-z_.]+\s*\}?\}?', 'X', command))
        sub = main.commands[argv[0]]  # type: ignore[attr-defined]
        with sub.make_context(argv[0], argv[1:]) as ctx:
            assert isinstance(ctx, click.Context)
        if argv[0] == 'run':
            assert argv[1] in operations(), argv[1]
