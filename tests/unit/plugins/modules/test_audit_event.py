# Copyright (c) Dihya ops maintainers
# GNU General Public License v3.0+ (see LICENSES/GPL-3.0-or-later.txt or https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later

"""Tests of the dihya.ops.audit_event module, run in-process, with real rsyslog and HTTP receivers on loopback."""

from __future__ import annotations

import json
import os
import stat
import time

import pytest

from ansible_collections.dihya.ops.plugins.module_utils import _metrics
from ansible_collections.dihya.ops.plugins.module_utils._audit import verify
from ansible_collections.dihya.ops.plugins.modules import audit_event
from ansible_collections.dihya.ops.tests.unit.plugins.audit_receivers import FlakyHTTPReceiver, ReceiverUnavailable, Rsyslog
from ansible_collections.dihya.ops.tests.unit.plugins.modules.utils import promtool_check, run_module

KEY = 'chain-key-CANARY-KEY-5d1e0b'
PSEUDONYM_KEY = 'pseudo-CANARY-PKEY-90aa'
TOKEN = 'CANARY-TOKEN-77c1f2'
CANARIES = (KEY, PSEUDONYM_KEY, TOKEN)
RESULT_KEYS = {'changed', 'record', 'trace_id', 'path', 'spool_dir', 'delivery', 'metrics_written'}


def run(args, check_mode=False):
    return run_module(audit_event.main, args, check_mode=check_mode)


def base(tmp_path, **extra):
    args = {'path': str(tmp_path / 'audit.jsonl'), 'key': KEY, 'action': 'invoice.export', 'user': 'alice@example.org',
            'email': 'alice@example.org', 'source_ip': '192.0.2.7', 'tenant': 'acme', 'route': '/api/invoices'}
    args.update(extra)
    return args


def log_records(tmp_path):
    path = tmp_path / 'audit.jsonl'
    return [json.loads(line) for line in path.read_text().splitlines()] if path.exists() else []


def assert_no_canary(*texts, directories=()):
    for text in texts:
        for canary in CANARIES:
            assert canary not in text
    for directory in directories:
        for root, dummy, files in os.walk(directory):
            for name in files:
                with open(os.path.join(root, name), 'rb') as handle:
                    data = handle.read()
                for canary in CANARIES:
                    assert canary.encode() not in data, os.path.join(root, name)


@pytest.fixture(scope='module')
def rsyslog(tmp_path_factory, tls_material):
    try:
        daemon = Rsyslog.start(tmp_path_factory.mktemp('rsyslog'), tls=tls_material)
    except ReceiverUnavailable as exc:
        pytest.fail(f'{exc}; install the Debian packages rsyslog and rsyslog-gnutls (see bindep.txt)')
    yield daemon
    daemon.stop()


def test_check_mode_writes_nothing(tmp_path):
    args = base(tmp_path, sinks=[{'type': 'webhook', 'url': 'http://127.0.0.1:9/x', 'name': 'hook', 'token': TOKEN}])
    result = run(args, check_mode=True)
    assert set(result) == RESULT_KEYS and result['changed'] is True
    assert os.listdir(tmp_path) == []
    record = result['record']
    assert 'audit' not in record.get('dihya', {})
    assert record['event'] == {'action': 'invoice.export', 'category': 'audit', 'outcome': 'success', 'kind': 'event'}
    assert record['user']['id'].startswith('hmac:') and record['source']['ip'].startswith('hmac:')
    assert result['trace_id'] == record['trace']['id'] and len(result['trace_id']) == 32
    assert result['delivery']['sinks'][0]['queued'] == 1 and result['delivery']['total']['sent'] == 0
    assert_no_canary(json.dumps(result))


def test_log_only(tmp_path):
    result = run(base(tmp_path, trace_id='4bf92f3577b34da6a3ce929d0e0e4736', labels={'env': 'prod', 'n': 3}, details={'rows': 12},
                      allow_clear_values=True, fsync='batch', host='web1'))
    assert result['changed'] is True and 'failed' not in result
    assert result['delivery'] == {'total': {'queued': 0, 'sent': 0, 'failed': 0, 'pending': 0, 'rejected': 0}, 'sinks': [], 'orphaned': []}
    assert log_records(tmp_path) == [result['record']]
    record = result['record']
    assert record['user']['id'] == 'alice@example.org' and record['host']['name'] == 'web1'
    assert record['labels'] == {'env': 'prod', 'n': '3'} and record['dihya']['details'] == {'rows': 12}
    assert result['trace_id'] == '4bf92f3577b34da6a3ce929d0e0e4736'
    assert stat.S_IMODE(os.stat(tmp_path / 'audit.jsonl').st_mode) == 0o600
    assert not (tmp_path / 'audit.jsonl.spool').exists()


def test_every_sink_receives_the_event_and_no_secret_leaks(tmp_path, rsyslog, tls_material):
    with FlakyHTTPReceiver('elasticsearch', token=TOKEN) as es, \
            FlakyHTTPReceiver('splunk_hec', token=TOKEN) as hec, \
            FlakyHTTPReceiver('webhook', token=TOKEN, tls_context=tls_material.server_context()) as hook:
        sinks = [
            {'type': 'syslog', 'name': 'rs-udp', 'host': '127.0.0.1', 'port': rsyslog.udp_port, 'protocol': 'udp'},
            {'type': 'syslog', 'name': 'rs-tcp', 'url': f'tcp://127.0.0.1:{rsyslog.tcp_port}', 'facility': 'authpriv'},
            {'type': 'syslog', 'name': 'rs-tls', 'url': f'tls://127.0.0.1:{rsyslog.tls_port}', 'ca_path': tls_material.ca_path},
            {'type': 'elasticsearch', 'name': 'es', 'url': es.url('/'), 'index': 'dihya-audit', 'token': TOKEN},
            {'type': 'splunk_hec', 'name': 'hec', 'url': hec.url(), 'token': TOKEN, 'index': 'main'},
            {'type': 'webhook', 'name': 'hook', 'url': hook.url('/audit'), 'token': TOKEN, 'ca_path': tls_material.ca_path},
        ]
        before = len(rsyslog.messages())
        args = base(tmp_path, pseudonym_key=PSEUDONYM_KEY, category='rgpd', outcome='denied', sinks=sinks,
                    details={'note': 'quote " bracket ] backslash \\ newline \n end'}, metrics_path=str(tmp_path / 'audit.prom'))
        result = run(args)
        assert 'failed' not in result, result
        record = result['record']
        assert result['delivery']['total'] == {'queued': 6, 'sent': 6, 'failed': 0, 'pending': 0, 'rejected': 0}
        assert [sink['name'] for sink in result['delivery']['sinks']] == ['rs-udp', 'rs-tcp', 'rs-tls', 'es', 'hec', 'hook']
        assert all(sink['error'] is None for sink in result['delivery']['sinks'])
        assert es.events == [(record['dihya']['audit']['hmac'], record)]
        assert hec.events[0][1]['event'] == record and hec.events[0][1]['index'] == 'main'
        assert hook.events == [(record['dihya']['audit']['hmac'], record)]
        bodies = [json.dumps(events) for events in (es.events, hec.events, hook.events)]
    messages = [message for message in rsyslog.wait_for(before + 3)[before:] if record['trace']['id'] in message['structured_data']]
    assert sorted(message['input'] for message in messages) == ['imtcp', 'imtcp', 'imudp']
    for message in messages:
        assert json.loads(message['msg'].lstrip('\ufeff')) == record
        assert message['severity'] == 'warning' and message['msgid'] == 'rgpd'
    assert record['user']['id'].startswith('hmac:') and 'alice' not in json.dumps(record)
    assert log_records(tmp_path) == [record]
    assert verify(str(tmp_path / 'audit.jsonl'), KEY.encode()).ok
    promtool_check(str(tmp_path / 'audit.prom'))
    assert result['metrics_written'] is True
    with open(rsyslog.output, encoding='utf-8') as handle:
        received = handle.read()
    assert_no_canary(json.dumps(result), json.dumps(messages), *bodies, received, directories=[tmp_path])


def test_flaky_webhook_gets_every_event_once_after_recovery(tmp_path):
    with FlakyHTTPReceiver('webhook', fail_first=4, failure='reset') as hook:
        args = base(tmp_path, sinks=[{'type': 'webhook', 'name': 'hook', 'url': hook.url('/audit'), 'timeout': 2}], max_attempts=1)
        results = [run(dict(args, action=f'step.{number}')) for number in range(6)]
        assert all('failed' not in result for result in results)
        # The first runs fail (the receiver resets), the records wait in the spool, later runs deliver them, oldest first.
        assert results[0]['delivery']['total']['pending'] == 1 and 'connection reset' in results[0]['delivery']['sinks'][0]['error']
        assert results[-1]['delivery']['total']['pending'] == 0
        assert sum(result['delivery']['total']['sent'] for result in results) == 6
        written = log_records(tmp_path)
        assert [record['event']['action'] for record in written] == [f'step.{number}' for number in range(6)]
        assert [event for dummy, event in hook.events] == written
        assert hook.duplicates() == {}


def test_bad_and_unreachable_sinks_keep_the_event(tmp_path, closed_port):
    sinks = [
        {'type': 'kafka', 'name': 'bus', 'url': 'http://127.0.0.1:9/', 'token': TOKEN},
        {'type': 'syslog', 'name': 'siem', 'host': '127.0.0.1', 'port': 99999},
        {'type': 'syslog', 'name': 'down', 'host': '127.0.0.1', 'port': closed_port, 'protocol': 'tcp'},
    ]
    result = run(base(tmp_path, sinks=sinks, delivery_timeout=3, max_attempts=2))
    assert result['failed'] is True and result['changed'] is True
    assert result['msg'].startswith(f'the audit record (seq 1) was written to {tmp_path / "audit.jsonl"} and kept in the spool')
    assert "sink #1: unknown type 'kafka'" in result['msg'] and 'sink #2 (syslog): port must be a number from 1 to 65535, not 99999' in result['msg']
    assert log_records(tmp_path) == [result['record']]
    reports = {sink['name']: sink for sink in result['delivery']['sinks']}
    assert {name: (report['queued'], report['sent'], report['failed'], report['pending']) for name, report in reports.items()} == {
        'bus': (1, 0, 1, 1), 'siem': (1, 0, 1, 1), 'down': (1, 0, 1, 1),
    }
    assert reports['down']['error'] == f'tcp://127.0.0.1:{closed_port}: connection refused'
    assert any('sink down: 1 record(s) kept in the spool' in warning for warning in result['warnings'])
    spool = tmp_path / 'audit.jsonl.spool'
    for name in ('bus', 'siem', 'down'):
        files = list((spool / name).glob('*.json'))
        assert len(files) == 1 and json.loads(files[0].read_text()) == result['record']
    assert_no_canary(json.dumps(result), directories=[tmp_path])

    # Once the sink is fixed (same name), the record kept while it was wrong is delivered with the new one.
    with FlakyHTTPReceiver('webhook') as hook:
        fixed = run(base(tmp_path, action='second', sinks=[{'type': 'webhook', 'name': 'bus', 'url': hook.url('/')}]))
        assert 'failed' not in fixed
        assert [event['event']['action'] for dummy, event in hook.events] == ['invoice.export', 'second']
    assert fixed['delivery']['sinks'][0]['sent'] == 2
    assert {item['name']: item['pending'] for item in fixed['delivery']['orphaned']} == {'siem': 1, 'down': 1}
    assert fixed['delivery']['total']['pending'] == 2
    assert any('no longer configured' in warning for warning in fixed['warnings'])


def test_a_silent_sink_does_not_starve_the_others(tmp_path, silent_listener):
    with FlakyHTTPReceiver('webhook') as hook:
        started = time.monotonic()
        result = run(base(tmp_path, delivery_timeout=1, sinks=[
            {'type': 'webhook', 'name': 'silent', 'url': f'http://127.0.0.1:{silent_listener}/', 'timeout': 5},
            {'type': 'webhook', 'name': 'hook', 'url': hook.url('/')},
        ]))
        assert time.monotonic() - started < 3
        assert len(hook.events) == 1
    silent, fine = result['delivery']['sinks']
    assert (silent['sent'], silent['pending'], silent['error']) == (0, 1, f'http://127.0.0.1:{silent_listener}/: timed out')
    assert (fine['sent'], fine['pending']) == (1, 0)


def test_check_mode_reports_bad_sinks(tmp_path):
    result = run(base(tmp_path, sinks=[{'type': 'syslog', 'host': '127.0.0.1', 'port': 'abc'}]), check_mode=True)
    assert result['failed'] is True and 'port must be a number' in result['msg']
    assert os.listdir(tmp_path) == []


def test_check_mode_refuses_what_the_real_run_refuses(tmp_path):
    """A symbolic link at the log or its lock file, or a spool that is a file: the real run fails, so does check mode."""
    (tmp_path / 'target').write_text('')
    (tmp_path / 'audit.jsonl').symlink_to(tmp_path / 'target')
    for check_mode in (True, False):
        result = run(base(tmp_path), check_mode=check_mode)
        assert result['failed'] is True and 'audit.jsonl: it is a symbolic link' in result['msg'], result
    (tmp_path / 'audit.jsonl').unlink()
    (tmp_path / 'audit.jsonl.lock').symlink_to(tmp_path / 'target')
    for check_mode in (True, False):
        result = run(base(tmp_path), check_mode=check_mode)
        assert result['failed'] is True and 'audit.jsonl.lock: it is a symbolic link' in result['msg'], result
    (tmp_path / 'audit.jsonl.lock').unlink()
    (tmp_path / 'spool').write_text('')
    args = base(tmp_path, spool_dir=str(tmp_path / 'spool'), sinks=[{'type': 'webhook', 'url': 'http://127.0.0.1:9/'}])
    result = run(args, check_mode=True)
    assert result['failed'] is True and 'not a directory' in result['msg']
    assert (tmp_path / 'target').read_text() == '' and sorted(os.listdir(tmp_path)) == ['spool', 'target']


def test_check_mode_warns_about_what_an_earlier_task_may_create(tmp_path):
    """The log's directory and the metrics file's directory may come from an earlier task of the real run: warnings in check mode."""
    args = base(tmp_path, path=str(tmp_path / 'later' / 'audit.jsonl'), metrics_path=str(tmp_path / 'later' / 'audit.prom'),
                sinks=[{'type': 'webhook', 'url': 'http://127.0.0.1:9/', 'name': 'hook'}])
    result = run(args, check_mode=True)
    assert 'failed' not in result and result['changed'] is True and result['metrics_written'] is False
    assert len(result['warnings']) == 2, result['warnings']
    assert result['warnings'][0] == f'the directory of metrics_path does not exist: {tmp_path / "later"} (it must exist when the task runs outside check mode)'
    log = tmp_path / 'later' / 'audit.jsonl'
    assert result['warnings'][1] == f'the directory of {log} does not exist (it must exist when the task runs outside check mode)'
    assert os.listdir(tmp_path) == []
    result = run(args)
    assert result['failed'] is True and 'does not exist' in result['msg'] and os.listdir(tmp_path) == []


def test_check_mode_gives_the_warnings_of_the_real_run(tmp_path):
    args = base(tmp_path, metrics_path=str(tmp_path / 'audit.prom'))
    checked = run(args, check_mode=True)
    assert checked['warnings'] == ['metrics_path is ignored: there is no network sink to report on'] and os.listdir(tmp_path) == []
    assert run(args)['warnings'] == checked['warnings']


@pytest.mark.parametrize(('extra', 'message'), [
    ({'key': 'short'}, 'at least 16 bytes'),
    ({'action': ' '}, 'action must be a non-empty string'),
    ({'details': {'blob': 'x' * 20000}}, 'more than the limit'),
    ({'delivery_timeout': 0}, 'delivery_timeout must be more than 0'),
    ({'max_attempts': 0}, 'max_attempts must be at least 1'),
    ({'metrics_path': '/nonexistent-dir/audit.prom'}, 'does not exist'),
])
def test_bad_input_writes_nothing(tmp_path, extra, message):
    result = run(base(tmp_path, **extra))
    assert result['failed'] is True and message in result['msg']
    assert not (tmp_path / 'audit.jsonl').exists()
    assert 'short' not in result['msg'] and KEY not in result['msg']


def test_unusable_spool_is_refused_before_writing(tmp_path):
    (tmp_path / 'spool').write_text('')
    result = run(base(tmp_path, spool_dir=str(tmp_path / 'spool'), sinks=[{'type': 'webhook', 'url': 'http://127.0.0.1:9/'}]))
    assert result['failed'] is True and 'not a directory' in result['msg']
    assert not (tmp_path / 'audit.jsonl').exists()


def test_symlinked_log_is_refused(tmp_path):
    (tmp_path / 'target').write_text('')
    (tmp_path / 'audit.jsonl').symlink_to(tmp_path / 'target')
    result = run(base(tmp_path))
    assert result['failed'] is True and 'symbolic link' in result['msg']
    assert (tmp_path / 'target').read_text() == ''


def test_metrics_path_warning_and_missing_library(tmp_path, monkeypatch):
    result = run(base(tmp_path, metrics_path=str(tmp_path / 'audit.txt')))
    assert 'failed' not in result and 'does not end in .prom' in result['warnings'][0]
    assert 'there is no network sink' in result['warnings'][1] and result['metrics_written'] is False
    monkeypatch.setattr(_metrics, 'HAS_PROMETHEUS_CLIENT', False)
    result = run(base(tmp_path, metrics_path=str(tmp_path / 'audit.prom')))
    assert result['failed'] is True and 'prometheus_client' in result['msg']


BAD_PATHS = [
    ('audit.jsonl', 'must be an absolute path (starting with /)'),
    ('./audit.jsonl', 'must be an absolute path (starting with /)'),
    ('~no-such-user-here/audit.jsonl', 'must be an absolute path (starting with /)'),
    ('', 'must be a non-empty absolute path'),
    ('{tmp}/sub/../audit.jsonl', 'must not contain a .. component'),
    ('{tmp}/..', 'must not contain a .. component'),
    ('{tmp}/audit\x00.jsonl', 'NUL'),
]


@pytest.mark.parametrize('option', ['path', 'spool_dir', 'metrics_path', 'ca_path'])
@pytest.mark.parametrize(('value', 'message'), BAD_PATHS,
                         ids=['relative', 'dot-slash', 'tilde-unknown-user', 'empty', 'dotdot-inside', 'dotdot-last', 'nul'])
@pytest.mark.parametrize('check_mode', [False, True])
def test_paths_must_be_absolute(tmp_path, monkeypatch, option, value, message, check_mode):
    """Every path option: refused with a message naming it, before anything is written, in the module's working directory too."""
    work = tmp_path / 'work'
    (work / 'sub').mkdir(parents=True)
    monkeypatch.chdir(work)
    value = value.format(tmp=work)
    args = base(tmp_path, sinks=[{'type': 'webhook', 'url': 'https://127.0.0.1:9/'}])
    if option == 'ca_path':
        args['sinks'][0]['ca_path'] = value
        name = 'sinks[0].ca_path'
    else:
        args[option] = value
        name = option
    result = run(args, check_mode=check_mode)
    assert result['failed'] is True, result
    assert result['msg'].startswith(name + ' ') and message in result['msg'], result['msg']
    assert sorted(os.listdir(work)) == ['sub'] and os.listdir(work / 'sub') == []
    assert sorted(os.listdir(tmp_path)) == ['work']


def test_home_is_expanded_to_an_absolute_path(tmp_path, monkeypatch):
    home = tmp_path / 'home'
    home.mkdir()
    monkeypatch.setenv('HOME', str(home))
    result = run(base(tmp_path, path='~/audit.jsonl', spool_dir='~/spool'))
    assert 'failed' not in result, result
    assert result['path'] == str(home / 'audit.jsonl') and result['spool_dir'] == str(home / 'spool')
    assert verify(str(home / 'audit.jsonl'), KEY.encode()).records == 1


def test_redundant_separators_are_normalised(tmp_path):
    result = run(base(tmp_path, path=f'{tmp_path}//./audit.jsonl'))
    assert 'failed' not in result and result['path'] == str(tmp_path / 'audit.jsonl') and result['spool_dir'] == str(tmp_path / 'audit.jsonl.spool')
    assert len(log_records(tmp_path)) == 1
