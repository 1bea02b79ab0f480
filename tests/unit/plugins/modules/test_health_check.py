# Copyright (c) Dihya ops maintainers
# GNU General Public License v3.0+ (see LICENSES/GPL-3.0-or-later.txt or https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later

"""Tests of the dihya.ops.health_check module, run in-process through the module harness."""

from __future__ import annotations

import base64
import json
import os
import pathlib
import shutil
import socket
import stat
import subprocess
import sys
import threading
import time
import typing as t
import uuid

import pytest

from ansible_collections.dihya.ops.plugins.module_utils import _health, _metrics
from ansible_collections.dihya.ops.plugins.modules import health_check
from ansible_collections.dihya.ops.tests.unit.plugins.modules.utils import (
    AnsibleExitJson,
    AnsibleFailJson,
    patch_module_exits,
    promtool_check,
    run_module,
    set_module_args,
)

if t.TYPE_CHECKING:
    from ansible_collections.dihya.ops.tests.unit.conftest import Server, Supervisor


RESULT_KEYS = {'changed', 'healthy', 'summary', 'failed_checks', 'checks', 'duration_seconds', 'metrics_path', 'metrics_written',
               'metrics_dir_created'}


def run(args: dict[str, t.Any], check_mode: bool = False) -> dict[str, t.Any]:
    return run_module(health_check.main, args, check_mode=check_mode)


def test_all_healthy(http_server: Server, tmp_path: pathlib.Path) -> None:
    result = run({'checks': [
        {'name': 'healthz', 'type': 'http', 'url': http_server.url('/ok'), 'json_field': 'database.status', 'json_value': 'ok'},
        {'name': 'port', 'type': 'tcp', 'host': '127.0.0.1', 'port': http_server.port},
        {'name': 'disk', 'type': 'disk', 'path': str(tmp_path), 'min_free_bytes': 1},
    ]})
    assert set(result) == RESULT_KEYS
    assert result['changed'] is False
    assert result['healthy'] is True
    assert result['failed_checks'] == []
    assert result['summary'] == '3/3 checks healthy'
    assert [check['name'] for check in result['checks']] == ['healthz', 'port', 'disk']
    assert result['checks'][0]['details']['status_code'] == 200
    assert set(result['checks'][0]) == {'name', 'type', 'healthy', 'status', 'message', 'latency_seconds', 'attempts', 'details'}
    assert result['metrics_path'] is None and result['metrics_written'] is False
    assert result['duration_seconds'] > 0


def test_unhealthy_without_failing(http_server: Server) -> None:
    result = run({'checks': [
        {'name': 'healthz', 'type': 'http', 'url': http_server.url('/unavailable')},
        {'name': 'ok', 'type': 'http', 'url': http_server.url('/ok')},
        {'name': 'ready', 'type': 'http', 'url': http_server.url('/ok')},
    ]})
    assert 'failed' not in result
    assert result['changed'] is False
    assert result['healthy'] is False
    assert result['failed_checks'] == ['healthz']
    assert result['summary'] == '2/3 checks healthy; failed: healthz (HTTP 503 not in [200])'


def test_fail_on_unhealthy(http_server: Server, closed_port: int) -> None:
    result = run({'fail_on_unhealthy': True, 'checks': [
        {'name': 'healthz', 'type': 'http', 'url': http_server.url('/unavailable')},
        {'name': 'db', 'type': 'tcp', 'host': '127.0.0.1', 'port': closed_port},
        {'name': 'ok', 'type': 'http', 'url': http_server.url('/ok')},
    ]})
    assert result['failed'] is True
    assert result['msg'] == '1/3 checks healthy; failed: healthz (HTTP 503 not in [200]), db (connection refused)'
    assert result['msg'] == result['summary']
    assert result['failed_checks'] == ['healthz', 'db']
    assert len(result['checks']) == 3
    assert result['changed'] is False


def test_fail_on_unhealthy_when_healthy(http_server: Server) -> None:
    result = run({'fail_on_unhealthy': True, 'checks': [{'name': 'ok', 'type': 'http', 'url': http_server.url('/ok')}]})
    assert 'failed' not in result and result['healthy'] is True


def test_per_check_errors_do_not_stop_the_others(http_server: Server) -> None:
    result = run({'checks': [
        {'name': 'bad', 'type': 'http', 'url': 'http://[::1/'},
        {'name': 'ok', 'type': 'http', 'url': http_server.url('/ok')},
    ]})
    bad, good = result['checks']
    assert bad['status'] == 'error' and bad['message'].startswith('malformed url')
    assert good['healthy'] is True
    assert result['failed_checks'] == ['bad']


def test_check_timeout_overrides_the_default(http_server: Server) -> None:
    result = run({'timeout': 0.1, 'checks': [
        {'name': 'slow', 'type': 'http', 'url': http_server.url('/slow')},
        {'name': 'patient', 'type': 'http', 'url': http_server.url('/slow'), 'timeout': 5},
    ]})
    assert [check['message'] for check in result['checks']] == [
        'deadline exceeded while reading the status line and headers (timeout 0.1 s)', 'HTTP 200']


def test_retries_rerun_failing_checks(http_server: Server) -> None:
    url = http_server.url(f'/flaky/{uuid.uuid4().hex}')
    result = run({'retries': 2, 'delay': 0.05, 'checks': [
        {'name': 'flaky', 'type': 'http', 'url': url},
        {'name': 'steady', 'type': 'http', 'url': http_server.url('/ok')},
    ]})
    assert result['healthy'] is True
    assert [check['attempts'] for check in result['checks']] == [3, 1]


def test_deadline(http_server: Server) -> None:
    result = run({'concurrency': 1, 'deadline': 0.45, 'checks': [
        {'name': f'slow-{index}', 'type': 'http', 'url': http_server.url('/slow')} for index in range(3)
    ]})
    assert result['duration_seconds'] < 1.2
    assert result['checks'][2]['message'] == 'deadline exceeded before the check could start'


def test_metrics_written(http_server: Server, tmp_path: pathlib.Path) -> None:
    path = tmp_path / 'health.prom'
    result = run({'tenant': 'acme', 'metrics_path': str(path), 'checks': [
        {'name': 'healthz', 'type': 'http', 'url': http_server.url('/unavailable')},
        {'name': 'ok', 'type': 'http', 'url': http_server.url('/ok')},
    ]})
    assert result['metrics_written'] is True
    assert result['metrics_path'] == str(path)
    assert result['changed'] is False
    assert 'warnings' not in result
    promtool_check(str(path))
    text = path.read_text()
    assert 'dihya_health_check_up{check="healthz",tenant="acme",type="http"} 0.0' in text
    assert 'dihya_health_check_up{check="ok",tenant="acme",type="http"} 1.0' in text
    assert 'dihya_health_check_healthy{tenant="acme"} 0.0' in text
    assert stat.S_IMODE(path.stat().st_mode) == 0o644


def test_metrics_written_before_failing(http_server: Server, tmp_path: pathlib.Path) -> None:
    path = tmp_path / 'health.prom'
    result = run({'fail_on_unhealthy': True, 'metrics_path': str(path), 'checks': [
        {'name': 'healthz', 'type': 'http', 'url': http_server.url('/unavailable')},
    ]})
    assert result['failed'] is True
    assert result['metrics_written'] is True
    promtool_check(str(path))


def test_check_mode_runs_checks_but_writes_no_metrics(http_server: Server, tmp_path: pathlib.Path) -> None:
    path = tmp_path / 'health.prom'
    result = run({'metrics_path': str(path), 'checks': [{'name': 'ok', 'type': 'http', 'url': http_server.url('/ok')}]}, check_mode=True)
    assert result['healthy'] is True
    assert result['checks'][0]['attempts'] == 1
    assert result['metrics_written'] is False
    assert result['changed'] is False
    assert not path.exists()


def test_metrics_directory_missing(http_server: Server, tmp_path: pathlib.Path) -> None:
    path = tmp_path / 'absent' / 'health.prom'
    args = {'metrics_path': str(path), 'checks': [{'name': 'ok', 'type': 'http', 'url': http_server.url('/ok')}]}
    result = run(args)
    assert result['failed'] is True
    assert result['msg'] == f"the directory of metrics_path does not exist: {tmp_path / 'absent'}"
    assert 'checks' not in result, 'nothing runs when the metrics cannot be written'

    result = run(args, check_mode=True)
    assert 'failed' not in result
    assert result['healthy'] is True
    assert result['warnings'] == [f"the directory of metrics_path does not exist: {tmp_path / 'absent'} (it must exist when the task runs outside check mode)"]


def test_metrics_write_failure(http_server: Server) -> None:
    result = run({'metrics_path': '/proc/dihya-health.prom', 'checks': [{'name': 'ok', 'type': 'http', 'url': http_server.url('/ok')}]})
    assert result['failed'] is True
    assert result['msg'].startswith('cannot write /proc/dihya-health.prom')
    assert result['checks'][0]['healthy'] is True
    assert result['metrics_written'] is False


def test_metrics_path_without_prom_suffix(http_server: Server, tmp_path: pathlib.Path) -> None:
    path = tmp_path / 'health.txt'
    result = run({'metrics_path': str(path), 'checks': [{'name': 'ok', 'type': 'http', 'url': http_server.url('/ok')}]})
    assert result['metrics_written'] is True
    assert result['warnings'] == [f'metrics_path {path} does not end in .prom; the node_exporter textfile collector ignores such files']


def test_unparsable_previous_metrics_warn(http_server: Server, tmp_path: pathlib.Path) -> None:
    path = tmp_path / 'health.prom'
    path.write_text('garbage {\n')
    result = run({'metrics_path': str(path), 'checks': [{'name': 'ok', 'type': 'http', 'url': http_server.url('/ok')}]})
    assert result['metrics_written'] is True
    assert len(result['warnings']) == 1 and 'cannot parse the existing metrics file' in result['warnings'][0]


def test_prometheus_client_missing(http_server: Server, tmp_path: pathlib.Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(_metrics, 'HAS_PROMETHEUS_CLIENT', False)
    args = {'checks': [{'name': 'ok', 'type': 'http', 'url': http_server.url('/ok')}]}
    assert run(args)['healthy'] is True, 'the library is only needed with metrics_path'
    result = run(dict(args, metrics_path=str(tmp_path / 'health.prom')))
    assert result['failed'] is True
    assert 'prometheus_client' in result['msg']
    assert 'Failed to import the required Python library' in result['msg']


def test_hostile_supervisor_program_is_never_run(supervisor: Supervisor, tmp_path: pathlib.Path) -> None:
    marker = f'/tmp/pwned-{uuid.uuid4().hex}'
    result = run({'checks': [
        {'name': 'evil', 'type': 'process', 'supervisor_program': f'x; touch {marker}',
         'supervisorctl': supervisor.supervisorctl, 'supervisor_config': supervisor.config},
        {'name': 'web', 'type': 'process', 'supervisor_program': 'web',
         'supervisorctl': supervisor.supervisorctl, 'supervisor_config': supervisor.config},
    ]})
    evil, web = result['checks']
    assert evil['status'] == 'error'
    assert evil['message'].startswith(f"invalid supervisor program name 'x; touch {marker}'")
    assert web['healthy'] is True and web['details']['supervisor_state'] == 'RUNNING'
    assert not os.path.exists(marker)


def test_hostile_process_name(tmp_path: pathlib.Path) -> None:
    marker = tmp_path / 'pwned'
    result = run({'checks': [{'name': 'evil', 'type': 'process', 'process_name': f'$(touch {marker})'}]})
    assert result['checks'][0]['status'] == 'error'
    assert not marker.exists()


def test_tls_cert_and_sql(https_server: Server, tmp_path: pathlib.Path) -> None:
    import sqlite3  # pylint: disable=import-outside-toplevel

    database = tmp_path / 'app.db'
    sqlite3.connect(database).close()
    result = run({'checks': [
        {'name': 'cert', 'type': 'tls_cert', 'host': '127.0.0.1', 'port': https_server.port},
        {'name': 'db', 'type': 'sql', 'db_url': str(database), 'expect': 1},
        {'name': 'db-by-alias', 'type': 'sql', 'dsn': f'sqlite://{database}', 'expect': 1},
    ]})
    cert, db, alias = result['checks']
    assert cert['message'] == 'expires in 5 days (< 14)' and cert['details']['days_left'] == 5
    assert db['healthy'] is True and alias['healthy'] is True


@pytest.mark.parametrize('args, message', [
    ({'checks': [{'name': 'x', 'type': 'smtp'}]}, 'value of type must be one of: http, https, tcp, process, disk, tls_cert, sql, got: smtp'),
    ({'checks': [{'type': 'tcp', 'host': 'h', 'port': 1}]}, 'missing required arguments: name'),
    ({'checks': [{'name': 'x', 'type': 'tcp', 'host': 'h', 'port': 1, 'colour': 'red'}]}, 'Unsupported parameters'),
    ({'checks': [{'name': 'x', 'type': 'http'}]}, 'type is http but all of the following are missing: url'),
    ({'checks': [{'name': 'x', 'type': 'tcp', 'host': 'h'}]}, 'type is tcp but all of the following are missing: port'),
    ({'checks': [{'name': 'x', 'type': 'process'}]}, 'type is process but any of the following are missing: pidfile, process_name, supervisor_program'),
    ({'checks': [{'name': 'x', 'type': 'process', 'pidfile': '/run/x.pid', 'process_name': 'x'}]},
     'parameters are mutually exclusive: pidfile|process_name|supervisor_program'),
    ({'checks': [{'name': 'x', 'type': 'disk', 'path': '/'}]}, 'type is disk but any of the following are missing: min_free_bytes, min_free_percent'),
    ({'checks': [{'name': 'x', 'type': 'sql'}]}, 'type is sql but all of the following are missing: db_url'),
    ({'checks': [{'name': 'x', 'type': 'tls_cert'}]}, 'type is tls_cert but all of the following are missing: host'),
    ({'checks': [{'name': 'x', 'type': 'tcp', 'host': 'h', 'port': 'eighty'}]}, "cannot be converted to an int"),
    ({'checks': []}, None),
])
def test_argument_errors(args: dict[str, t.Any], message: str | None) -> None:
    result = run(args)
    if message is None:
        assert result['healthy'] is True and result['summary'] == '0/0 checks healthy'
        return
    assert result['failed'] is True
    assert message in result['msg']


TCP = {'name': 'x', 'type': 'tcp', 'host': '127.0.0.1', 'port': 1}


@pytest.mark.parametrize('args, message', [
    ({'timeout': -1}, 'timeout must be greater than 0 (got -1.0)'),
    ({'timeout': 0}, 'timeout must be greater than 0 (got 0.0)'),
    ({'concurrency': 0}, 'concurrency must be at least 1 (got 0)'),
    ({'retries': -1}, 'retries must be 0 or more (got -1)'),
    ({'delay': -0.5}, 'delay must be 0 or more (got -0.5)'),
    ({'deadline': 0}, 'deadline must be greater than 0 (got 0.0)'),
    ({'tenant': ''}, 'tenant must not be empty'),
    ({'checks': [TCP, dict(TCP, type='http', url='http://h/', port=None), dict(TCP, name='y')]}, 'check names must be unique; repeated: x'),
    ({'timeout': -1, 'concurrency': 0}, 'timeout must be greater than 0 (got -1.0); concurrency must be at least 1 (got 0)'),
])
def test_invalid_settings(args: dict[str, t.Any], message: str) -> None:
    result = run(dict({'checks': [TCP]}, **args))
    assert result['failed'] is True
    assert result['msg'] == message
    assert 'checks' not in result


def test_negative_check_timeout_is_a_check_error() -> None:
    result = run({'checks': [dict(TCP, timeout=-2)]})
    assert result['checks'][0]['status'] == 'error'
    assert result['checks'][0]['message'] == 'timeout must be greater than 0 (got -2.0)'


def test_secrets_are_hidden_from_the_output(http_server: Server, tmp_path: pathlib.Path, capsys: pytest.CaptureFixture[str]) -> None:
    """The real exit_json: the DSN and header values never reach the output."""
    database = tmp_path / 'app.db'
    args = {'checks': [
        {'name': 'db', 'type': 'sql', 'dsn': 'postgresql://app:Sup3r-S3cret@127.0.0.1:1/app'},
        {'name': 'api', 'type': 'http', 'url': http_server.url('/echo'), 'headers': {'X-Api-Token': 'T0ken-Value-42'}},
        {'name': 'file', 'type': 'sql', 'dsn': f'sqlite://{database}'},
        {'name': 'db2', 'type': 'sql', 'db_url': "host=127.0.0.1 port=1 dbname=app user=app password='Sup3r-S3cret-2'"},
    ]}
    with set_module_args(args), pytest.raises(SystemExit):
        health_check.main()
    output = capsys.readouterr().out
    assert 'Sup3r-S3cret' not in output
    assert 'T0ken-Value-42' not in output
    result = json.loads(output)
    assert result['checks'][0]['message'] == 'connection refused'
    assert result['checks'][3]['message'] == 'connection refused'
    assert result['invocation']['module_args']['checks'][0]['dsn'] == 'VALUE_SPECIFIED_IN_NO_LOG_PARAMETER'
    assert result['invocation']['module_args']['checks'][3]['db_url'] == 'VALUE_SPECIFIED_IN_NO_LOG_PARAMETER'


def test_harness_exit_and_fail(http_server: Server) -> None:
    args = {'checks': [{'name': 'ok', 'type': 'http', 'url': http_server.url('/ok')}]}
    with set_module_args(args), patch_module_exits() as warnings, pytest.raises(AnsibleExitJson) as exit_info:
        health_check.main()
    assert exit_info.value.result['healthy'] is True
    assert warnings == []
    with set_module_args({'checks': 'nope'}), patch_module_exits(), pytest.raises(AnsibleFailJson) as fail_info:
        health_check.main()
    assert fail_info.value.result['failed'] is True


def test_build_specs() -> None:
    checks = [dict(dict.fromkeys(health_check.CHECK_OPTIONS), name='a', type='tcp', host='h', port=1)]
    [spec] = _health.build_specs(checks, 7.5)
    assert spec.timeout == 7.5 and spec.latency_budget is None
    assert spec.options == {'host': 'h', 'port': 1}


def test_argument_spec_matches_the_engine() -> None:
    from ansible_collections.dihya.ops.plugins.module_utils._health import COMMON_OPTIONS, OPTIONS_BY_TYPE  # pylint: disable=import-outside-toplevel

    options = t.cast(dict[str, dict[str, t.Any]], health_check.CHECK_OPTIONS)
    documented = set(options)
    aliases = {alias for spec in options.values() for alias in spec.get('aliases', ())}
    assert documented | aliases == set(COMMON_OPTIONS).union(*OPTIONS_BY_TYPE.values())
    assert aliases == {'dsn'} and options['db_url']['aliases'] == ['dsn']
    assert options['db_url']['no_log'] is True
    assert options['headers']['no_log'] is True
    assert options['url_password']['no_log'] is True


# ---------------------------------------------------------------------------
# Credentials in URLs never reach the output
# ---------------------------------------------------------------------------

SECRET = 'Vvv-Secret-77'


def test_url_credentials_are_refused_and_hidden_everywhere(http_server: Server, tmp_path: pathlib.Path, capsys: pytest.CaptureFixture[str]) -> None:
    """The real exit_json: the password is in no result, no message, no name, no invocation echo, no metrics file."""
    url = f'http://user:{SECRET}@127.0.0.1:{http_server.port}/echo'
    metrics = tmp_path / 'health.prom'
    args = {'metrics_path': str(metrics), 'fail_on_unhealthy': True, 'checks': [
        {'name': f'api {url}', 'type': 'http', 'url': url},
        {'name': 'encoded', 'type': 'http', 'url': url.replace('-', '%2D')},
        {'name': 'ok', 'type': 'http', 'url': http_server.url('/ok')},
    ]}
    with set_module_args(args), pytest.raises(SystemExit):
        health_check.main()
    output = capsys.readouterr().out
    assert SECRET not in output and SECRET.replace('-', '%2D') not in output
    result = json.loads(output)
    assert result['failed'] is True
    assert [check['status'] for check in result['checks']] == ['error', 'error', 'ok']
    assert 'url_username and url_password' in result['checks'][0]['message']
    assert result['failed_checks'][0].startswith('api http://********@')
    assert SECRET not in metrics.read_text() and 'http://********@' in metrics.read_text()


def test_basic_authentication_options_are_hidden(http_server: Server, capsys: pytest.CaptureFixture[str]) -> None:
    expected = 'Basic ' + base64.b64encode(f'user:{SECRET}'.encode()).decode()
    args = {'checks': [{'name': 'api', 'type': 'http', 'url': http_server.url('/echo'), 'url_username': 'user', 'url_password': SECRET,
                        'json_field': 'headers.authorization', 'json_value': expected}]}
    with set_module_args(args), pytest.raises(SystemExit):
        health_check.main()
    output = capsys.readouterr().out
    assert SECRET not in output
    result = json.loads(output)
    assert result['healthy'] is True, result
    assert result['invocation']['module_args']['checks'][0]['url_password'] == 'VALUE_SPECIFIED_IN_NO_LOG_PARAMETER'


def test_restart_gate_settings_are_bounded_by_the_deadline() -> None:
    """The restart gate's own settings (30 retries, 1 s apart) against a server that trickles headers: the deadline holds."""
    stopped = threading.Event()
    listener = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    listener.bind(('127.0.0.1', 0))
    listener.listen(8)
    listener.settimeout(0.1)
    threads: list[threading.Thread] = []

    def serve(connection: socket.socket) -> None:
        with connection:
            try:
                connection.recv(4096)
                connection.sendall(b'HTTP/1.1 200 OK\r\n')
                for index in range(99):
                    if stopped.wait(0.5):
                        return
                    connection.sendall(f'X-Pad-{index}: 1\r\n'.encode())
            except OSError:
                return

    def accept() -> None:
        while not stopped.is_set():
            try:
                connection, _address = listener.accept()
            except OSError:
                continue
            thread = threading.Thread(target=serve, args=(connection,), daemon=True)
            threads.append(thread)
            thread.start()

    acceptor = threading.Thread(target=accept, daemon=True)
    acceptor.start()
    try:
        started = time.monotonic()
        result = run({'checks': [{'name': 'http_health', 'type': 'http', 'url': f'http://127.0.0.1:{listener.getsockname()[1]}/healthz',
                                  'timeout': 2}], 'retries': 30, 'delay': 1, 'deadline': 4})
        assert time.monotonic() - started < 4 + 1.5
        assert result['healthy'] is False
        assert result['checks'][0]['message'].startswith('deadline exceeded while reading the status line and headers')
    finally:
        stopped.set()
        listener.close()
        acceptor.join(5)
        for thread in threads:
            thread.join(5)


PLAYBOOK = """
- name: URL credentials at -vvv
  hosts: localhost
  gather_facts: false
  vars_files:
    - secret.yml
  vars:
    dihya_backend_health_url: "http://127.0.0.1:{{ port }}/echo"
  tasks:
    - name: A URL with a password is refused
      dihya.ops.health_check:
        checks:
          - name: api
            type: http
            url: "http://user:{{ secret }}@127.0.0.1:{{ port }}/echo"
      register: refused

    - name: The refusal says what to use instead
      ansible.builtin.assert:
        that:
          - refused.checks[0].status == 'error'
          - "'url_username' in refused.checks[0].message"

    - name: Basic authentication through the hidden options
      dihya.ops.health_check:
        checks:
          - name: api
            type: http
            url: "http://127.0.0.1:{{ port }}/echo"
            url_username: user
            url_password: "{{ secret }}"
            json_field: headers.authorization
            json_value: "Basic {{ ('user:' ~ secret) | b64encode }}"
        fail_on_unhealthy: true

    - name: The check_health role with credentials in its URL
      block:
        - name: Run the role
          ansible.builtin.include_role:
            name: dihya.ops.check_health
          vars:
            check_health_url: "http://user:{{ secret }}@127.0.0.1:{{ port }}/echo"
            check_health_json_field: ""
            check_health_services: []
            check_health_disk_paths: []
            check_health_db_url: ""
            check_health_metrics_path: ""
            check_health_tenant: t
      rescue:
        - name: Note the refusal
          ansible.builtin.set_fact:
            role_refused: true

    - name: The role refused the URL
      ansible.builtin.assert:
        that: role_refused | default(false)

    - name: The check_health role with basic authentication
      ansible.builtin.include_role:
        name: dihya.ops.check_health
      vars:
        check_health_url: "http://127.0.0.1:{{ port }}/echo"
        check_health_url_username: user
        check_health_url_password: "{{ secret }}"
        check_health_json_field: headers.authorization
        check_health_json_value: "Basic {{ ('user:' ~ secret) | b64encode }}"
        check_health_services: []
        check_health_disk_paths: []
        check_health_db_url: ""
        check_health_metrics_path: ""
        check_health_tenant: t
"""


def run_playbook(tmp_path: pathlib.Path, playbook: str, *args: str) -> subprocess.CompletedProcess[str]:
    """A real ansible-playbook run of ``playbook`` on localhost, with the collection from this checkout."""
    (tmp_path / 'play.yml').write_text(playbook)
    (tmp_path / 'ansible.cfg').write_text('[defaults]\nstdout_callback = ansible.builtin.default\nretry_files_enabled = false\n')
    (tmp_path / 'hosts').write_text(f'localhost ansible_connection=local ansible_python_interpreter={sys.executable}\n')
    collections = pathlib.Path(__file__).resolve().parents[4] / '.cache' / 'collections'
    if not collections.is_dir():
        collections = pathlib.Path(health_check.__file__).resolve().parents[5]
    env = {
        'PATH': os.path.dirname(sys.executable) + os.pathsep + os.environ.get('PATH', '/usr/bin:/bin'),
        'HOME': str(tmp_path), 'ANSIBLE_CONFIG': str(tmp_path / 'ansible.cfg'),
        'ANSIBLE_COLLECTIONS_PATH': str(collections), 'ANSIBLE_LOCAL_TEMP': str(tmp_path / 'tmp'),
        'ANSIBLE_REMOTE_TEMP': str(tmp_path / 'remote-tmp'), 'ANSIBLE_NOCOLOR': '1', 'LANG': 'C.UTF-8',
    }
    playbook_command = shutil.which('ansible-playbook', path=env['PATH'])
    assert playbook_command, 'ansible-playbook is missing from the virtual environment'
    return subprocess.run([playbook_command, *args, '-i', str(tmp_path / 'hosts'), str(tmp_path / 'play.yml')],
                          cwd=tmp_path, capture_output=True, text=True, timeout=300, check=False, env=env)


@pytest.mark.services('ansible')
@pytest.mark.parametrize('verbosity', ['-vvv', '-vvvvv'])
def test_ansible_playbook_never_prints_the_url_password(http_server: Server, tmp_path: pathlib.Path, verbosity: str) -> None:
    """A real ansible-playbook run on localhost at high verbosity: stdout and stderr never hold the password."""
    # The secret comes from a vars file, as from Vault (-e values are printed back at -vvvvv by ansible-playbook itself).
    (tmp_path / 'secret.yml').write_text(f'secret: {SECRET}\n')
    completed = run_playbook(tmp_path, PLAYBOOK, verbosity, '-e', f'port={http_server.port}')
    output = completed.stdout + completed.stderr
    assert completed.returncode == 0, output[-4000:]
    assert 'ok=' in completed.stdout and 'failed=0' in completed.stdout
    assert SECRET not in output


TENANT_PLAYBOOK = """
- name: The tenant label of the check_health role
  hosts: localhost
  gather_facts: false
  vars:
    dihya_backend_health_url: "http://127.0.0.1:{{ port }}/ok"
    dihya_backend_metrics_dir: "{{ metrics_dir }}"
    dihya_backend_db_url: "{{ metrics_dir }}/app.db"
  tasks:
    - name: A database in the backend model's plain-path form
      ansible.builtin.command: "{{ ansible_python_interpreter }} -c 'import sqlite3, sys; sqlite3.connect(sys.argv[1]).close()' {{ dihya_backend_db_url }}"
      changed_when: true

    - name: Run the role
      ansible.builtin.include_role:
        name: dihya.ops.check_health
      vars:
        check_health_services: []
        check_health_disk_paths: []

    - name: The database was checked through db_url
      ansible.builtin.assert:
        that:
          - check_health_result.checks | selectattr('name', 'equalto', 'database') | map(attribute='healthy') | list == [true]
"""


@pytest.mark.parametrize('extra, label', [
    ({'dihya_backend_tenants': ['acme']}, 'acme'),
    ({'dihya_backend_tenants': ['acme', 'globex']}, 'all'),
    ({}, 'all'),
    ({'dihya_backend_tenants': ['acme', 'globex'], 'check_health_tenant': 'globex'}, 'globex'),
], ids=['one-tenant', 'several-tenants', 'no-tenants', 'explicit'])
@pytest.mark.services('ansible')
def test_check_health_role_labels_the_metrics_with_the_tenant(http_server: Server, tmp_path: pathlib.Path, extra: dict[str, t.Any], label: str) -> None:
    """The role reads the backend model's dihya_backend_tenants: one tenant labels the metrics, several (or none) give 'all'."""
    metrics_dir = tmp_path / 'metrics'
    metrics_dir.mkdir()
    variables = dict(extra, port=http_server.port, metrics_dir=str(metrics_dir))
    completed = run_playbook(tmp_path, TENANT_PLAYBOOK, '-e', json.dumps(variables))
    assert completed.returncode == 0, (completed.stdout + completed.stderr)[-4000:]
    text = (metrics_dir / 'dihya_health.prom').read_text()
    assert f'dihya_health_check_healthy{{tenant="{label}"}} 1.0' in text, text
    assert f'dihya_health_check_up{{check="http_health",tenant="{label}",type="http"}} 1.0' in text, text
    assert f'dihya_health_check_up{{check="database",tenant="{label}",type="sql"}} 1.0' in text, text
