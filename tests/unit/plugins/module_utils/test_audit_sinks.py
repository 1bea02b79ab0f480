# Copyright (c) Dihya ops maintainers
# GNU General Public License v3.0+ (see LICENSES/GPL-3.0-or-later.txt or https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later

"""Tests of audit delivery (sink options, wire formats, senders, spool, delivery, metrics) against real loopback receivers."""

from __future__ import annotations

import json
import os
import stat
import threading
import time

import pytest

from ansible_collections.dihya.ops.plugins.module_utils import _audit_delivery as delivery
from ansible_collections.dihya.ops.plugins.module_utils import _audit_sink_config as sink_config
from ansible_collections.dihya.ops.plugins.module_utils import _audit_sink_senders as senders
from ansible_collections.dihya.ops.plugins.module_utils import _audit_spool as spooling
from ansible_collections.dihya.ops.plugins.module_utils import _audit_wire as wire
from ansible_collections.dihya.ops.plugins.module_utils import _metrics, _metrics_delivery as metrics_delivery
from ansible_collections.dihya.ops.plugins.module_utils._audit import AuditLog, AuditSettings, build_event
from ansible_collections.dihya.ops.plugins.module_utils._metrics import MetricsError
from ansible_collections.dihya.ops.tests.unit.plugins.audit_receivers import FlakyHTTPReceiver, ReceiverUnavailable, Rsyslog
from ansible_collections.dihya.ops.tests.unit.plugins.modules.utils import promtool_check

CANARY_TOKEN = 'tok-CANARY-7f3a9e'
KEY = b'chain-key-CANARY-0123456789'
HOSTILE = 'a"b]c\\d\n; rm -rf / $(id) ../../etc é 日本'


def records(count, tmp_path, action='test.action', **extra):
    """``count`` real chained records, written to an audit log as the module does."""
    settings = AuditSettings(key=KEY)
    log = AuditLog(str(tmp_path / 'audit.jsonl'), settings)
    events = [build_event(action=action, category='security', outcome='success', settings=settings, user='alice', tenant='acme',
                          details={'n': number}, **extra) for number in range(count)]
    return log.append(events)


def spool_with(tmp_path, name, written):
    spool = spooling.Spool(str(tmp_path / 'spool'))
    for record in written:
        spool.put(name, record)
    return spool


def config(raw):
    return sink_config.parse_sink(raw)


def run(spool, raw, **kwargs):
    cfg = config(raw)
    report = delivery.SinkReport(cfg.name, cfg.type, cfg.endpoint)
    kwargs.setdefault('deadline', time.monotonic() + 10)
    return delivery.deliver(spool, senders.make_sender(cfg), report, **kwargs)


# ---------------------------------------------------------------------------
# Sink specifications
# ---------------------------------------------------------------------------

def test_parse_valid_sinks(tls_material):
    syslog = config({'type': 'syslog', 'host': '127.0.0.1', 'port': '1514', 'protocol': 'udp', 'facility': 'authpriv', 'app_name': 'x'})
    assert (syslog.host, syslog.port, syslog.protocol, syslog.facility) == ('127.0.0.1', 1514, 'udp', 'authpriv')
    assert syslog.endpoint == 'udp://127.0.0.1:1514'
    assert config({'type': 'syslog', 'host': 'log.example.org'}).endpoint == 'tcp://log.example.org:514'
    assert config({'type': 'syslog', 'url': 'tls://[::1]:7000', 'ca_path': tls_material.ca_path}).endpoint == 'tls://[::1]:7000'
    assert config({'type': 'syslog', 'url': 'tls://h'}).port == 6514
    es = config({'type': 'elasticsearch', 'url': 'https://es:9200/?pipeline=p', 'token': CANARY_TOKEN, 'timeout': '2.5'})
    assert es.index == 'dihya-audit' and es.timeout == 2.5 and es.endpoint == 'https://es:9200/'
    assert CANARY_TOKEN not in repr(es)
    assert senders.make_sender(es).config.url == 'https://es:9200/_bulk?pipeline=p'
    hec = config({'type': 'splunk_hec', 'url': 'https://splunk:8088', 'token': CANARY_TOKEN, 'index': 'main'})
    assert hec.url == 'https://splunk:8088/services/collector/event'
    hook = config({'type': 'webhook', 'url': 'http://127.0.0.1:9/hook', 'name': 'chat-ops.1', 'validate_certs': False})
    assert hook.name == 'chat-ops.1' and hook.validate_certs is False
    # Names are stable and never depend on the token.
    assert config({'type': 'webhook', 'url': 'http://h/x', 'token': 'a'}).name == config({'type': 'webhook', 'url': 'http://h/x', 'token': 'b'}).name


@pytest.mark.parametrize(('raw', 'message'), [
    ({'type': 'kafka', 'url': 'http://h'}, "unknown type 'kafka'"),
    ({'url': 'http://h'}, 'unknown type None'),
    ('syslog', 'must be a dictionary'),
    ({'type': 'webhook', 'url': 'http://h', 'colour': 'red'}, 'unknown option(s) colour'),
    ({'type': 'syslog', 'host': 'h', 'port': 0}, 'port must be a number from 1 to 65535'),
    ({'type': 'syslog', 'host': 'h', 'port': 70000}, 'port must be a number from 1 to 65535'),
    ({'type': 'syslog', 'host': 'h', 'port': 'http'}, 'port must be a number'),
    ({'type': 'syslog', 'host': 'h', 'port': True}, 'port must be a number'),
    ({'type': 'syslog', 'url': 'tcp://h:99999'}, 'bad port'),
    ({'type': 'syslog', 'url': 'http://h:514'}, 'url must look like'),
    ({'type': 'syslog', 'url': 'tcp://h:514', 'port': 1}, 'not both'),
    ({'type': 'syslog', 'url': 5}, 'url must be a string'),
    ({'type': 'syslog'}, 'host (a host name or IP address) is required'),
    ({'type': 'syslog', 'host': 'a b'}, 'host (a host name'),
    ({'type': 'syslog', 'host': 'h', 'protocol': 'relp'}, "unknown protocol 'relp'"),
    ({'type': 'syslog', 'host': 'h', 'facility': 'local9'}, "unknown facility 'local9'"),
    ({'type': 'syslog', 'host': 'h', 'app_name': 'has space'}, 'app_name must be'),
    ({'type': 'syslog', 'host': 'h', 'token': CANARY_TOKEN}, 'token and index are not used'),
    ({'type': 'webhook'}, 'url is required'),
    ({'type': 'webhook', 'url': 'ftp://h/x'}, 'http:// or https://'),
    ({'type': 'webhook', 'url': f'https://user:{CANARY_TOKEN}@h/x'}, 'must not hold credentials'),
    ({'type': 'webhook', 'url': 'http://h:0/x'}, 'bad port'),
    ({'type': 'webhook', 'url': 'http://h:abc/x'}, 'bad port'),
    ({'type': 'webhook', 'url': 'http://h/a b'}, 'spaces or control characters'),
    ({'type': 'webhook', 'url': 'http://h', 'host': 'h'}, 'host is only for syslog'),
    ({'type': 'webhook', 'url': 'http://h', 'index': 'i'}, 'index is only for'),
    ({'type': 'webhook', 'url': 'http://h', 'token': 'a\nb'}, 'token must be a non-empty string without control characters'),
    ({'type': 'webhook', 'url': 'http://h', 'token': 5}, 'token must be a string'),
    ({'type': 'webhook', 'url': 'http://h', 'ca_path': '/nonexistent/ca.pem'}, 'is not a readable file'),
    ({'type': 'webhook', 'url': 'http://h', 'timeout': 'soon'}, 'timeout must be a number'),
    ({'type': 'webhook', 'url': 'http://h', 'timeout': 0}, 'more than 0'),
    ({'type': 'webhook', 'url': 'http://h', 'validate_certs': 'yes'}, 'validate_certs must be true or false'),
    ({'type': 'webhook', 'url': 'http://h', 'name': '../x'}, 'name must be'),
    ({'type': 'webhook', 'url': 'http://h', 'name': 'rejected'}, 'name must be'),
    ({'type': 'elasticsearch', 'url': 'http://h', 'index': 'Bad Index'}, 'not a valid Elasticsearch index'),
    ({'type': 'splunk_hec', 'url': 'http://h'}, 'token (the HEC token) is required'),
    ({'type': 'splunk_hec', 'url': 'http://h', 'token': CANARY_TOKEN, 'index': 'a/b'}, 'not a valid Splunk index'),
])
def test_parse_rejects_bad_sinks(raw, message):
    with pytest.raises(sink_config.SinkConfigError) as info:
        sink_config.parse_sink(raw, 3)
    assert message in str(info.value)
    assert str(info.value).startswith('sink #3')
    assert CANARY_TOKEN not in str(info.value)


def test_plan_keeps_invalid_sinks_and_refuses_shared_names():
    planned = sink_config.plan_sinks([
        {'type': 'webhook', 'url': 'http://127.0.0.1:9/a', 'name': 'one'},
        {'type': 'kafka', 'name': 'two'},
        {'type': 'webhook', 'url': 'http://127.0.0.1:9/b', 'name': 'one'},
        {'type': 'syslog', 'host': 'h', 'port': 'x'},
        'not a dict',
    ])
    assert [entry.error is None for entry in planned] == [True, False, False, False, False]
    assert planned[1].name == 'two' and planned[1].type == 'unknown'
    assert 'same name as an earlier sink' in planned[2].error
    assert planned[3].name.startswith('syslog-') and planned[4].name.startswith('sink-')
    assert sink_config.plan_sinks(None) == []


# ---------------------------------------------------------------------------
# Wire formats
# ---------------------------------------------------------------------------

def test_syslog_message_format(tmp_path):
    record = records(1, tmp_path, action=HOSTILE, host='web 1\n', trace_id='0af7651916cd43dd8448eb211c80319c')[0]
    message = wire.format_syslog(record, app_name='dihya', facility='authpriv', procid=42)
    header, body = message.split(b'\xef\xbb\xbf', 1)
    assert json.loads(body) == record
    text = header.decode()
    assert text.startswith(f'<85>1 {record["@timestamp"]} web1 dihya 42 security [dihya@32473 id="{record["dihya"]["audit"]["hmac"]}" ')
    assert 'action="a\\"b\\]c\\\\d ; rm -rf / $(id) ../../etc é 日本"' in text
    assert 'tenant="acme"' in text and 'seq="1"' in text and text.endswith('] ')
    failure = dict(record, event=dict(record['event'], outcome='denied'), **{'@timestamp': 'yesterday'})
    assert wire.format_syslog(failure, facility='local7').startswith(b'<188>1 - ')
    assert wire.frame_octet_counting(b'abc') == b'3 abc'
    assert wire.event_id({'x': 1}) == wire.event_id({'x': 1}) != wire.event_id({'x': 2})


def test_bulk_and_hec_bodies(tmp_path):
    written = records(2, tmp_path)
    lines = wire.bulk_body(written, 'audit-idx').decode().split('\n')
    assert lines[-1] == '' and len(lines) == 5
    assert json.loads(lines[0]) == {'create': {'_index': 'audit-idx', '_id': written[0]['dihya']['audit']['hmac']}}
    assert json.loads(lines[1]) == written[0]
    hec = [json.loads(line) for line in wire.hec_body(written, 'main').decode().split('\n')]
    assert hec[1]['event'] == written[1] and hec[1]['index'] == 'main' and hec[1]['sourcetype'] == '_json'
    assert abs(hec[0]['time'] - time.time()) < 60


# ---------------------------------------------------------------------------
# rsyslog
# ---------------------------------------------------------------------------

@pytest.fixture(scope='module')
def rsyslog(tmp_path_factory, tls_material):
    try:
        daemon = Rsyslog.start(tmp_path_factory.mktemp('rsyslog'), tls=tls_material)
    except ReceiverUnavailable as exc:
        pytest.fail(f'{exc}; install the Debian packages rsyslog and rsyslog-gnutls (see bindep.txt)')
    yield daemon
    daemon.stop()


@pytest.mark.parametrize('protocol', ['udp', 'tcp', 'tls'])
def test_rsyslog_receives_rfc5424(rsyslog, tmp_path, tls_material, protocol):
    port = {'udp': rsyslog.udp_port, 'tcp': rsyslog.tcp_port, 'tls': rsyslog.tls_port}[protocol]
    written = records(3, tmp_path, action=f'{protocol}.{HOSTILE}')
    name = f'rs-{protocol}'
    spool = spool_with(tmp_path, name, written)
    before = len(rsyslog.messages())
    report = run(spool, {'type': 'syslog', 'name': name, 'host': '127.0.0.1', 'port': port, 'protocol': protocol,
                         'ca_path': tls_material.ca_path, 'facility': 'authpriv', 'app_name': 'dihya-test'})
    assert (report.sent, report.failed, report.pending, report.error) == (3, 0, 0, None)
    mine = [message for message in rsyslog.wait_for(before + 3) if message['msg'].lstrip('\ufeff').startswith('{')
            and json.loads(message['msg'].lstrip('\ufeff'))['event']['action'].startswith(f'{protocol}.')]
    assert len(mine) == 3, rsyslog.log()
    assert [json.loads(message['msg'].lstrip('\ufeff')) for message in mine] == written
    first = mine[0]
    assert first['input'] == ('imudp' if protocol == 'udp' else 'imtcp')
    assert (first['version'], first['facility'], first['severity'], first['app_name'], first['msgid']) == ('1', 'authpriv', 'notice', 'dihya-test', 'security')
    assert first['pri'] == str(10 * 8 + 5) and first['procid'] == str(os.getpid())
    assert first['timestamp'] == written[0]['@timestamp']
    assert first['structured_data'].startswith(f'[dihya@32473 id="{written[0]["dihya"]["audit"]["hmac"]}" action="{protocol}.a\\"b\\]c')
    assert 'trace="' in first['structured_data'] and 'seq="1"' in first['structured_data']


def test_syslog_tls_with_wrong_ca_is_refused(rsyslog, tmp_path):
    spool = spool_with(tmp_path, 'tls-bad', records(1, tmp_path))
    report = run(spool, {'type': 'syslog', 'name': 'tls-bad', 'url': f'tls://127.0.0.1:{rsyslog.tls_port}'}, max_attempts=1)
    assert report.sent == 0 and report.pending == 1 and report.failed == 1
    assert 'TLS certificate verification failed' in report.error
    insecure = run(spool, {'type': 'syslog', 'name': 'tls-bad', 'url': f'tls://127.0.0.1:{rsyslog.tls_port}', 'validate_certs': False})
    assert insecure.sent == 1 and insecure.pending == 0


def test_syslog_unreachable_tcp_keeps_records(tmp_path, closed_port):
    spool = spool_with(tmp_path, 'down', records(2, tmp_path))
    started = time.monotonic()
    report = run(spool, {'type': 'syslog', 'name': 'down', 'host': '127.0.0.1', 'port': closed_port}, max_attempts=2)
    assert time.monotonic() - started < 3
    assert (report.sent, report.failed, report.pending) == (0, 2, 2)
    assert report.error == f'tcp://127.0.0.1:{closed_port}: connection refused'


def test_syslog_udp_too_large_is_rejected(tmp_path, closed_port):
    written = records(1, tmp_path)
    big = dict(written[0], labels={'pad': 'x' * 70000})
    spool = spool_with(tmp_path, 'udp', [big])
    report = run(spool, {'type': 'syslog', 'name': 'udp', 'host': '127.0.0.1', 'port': closed_port, 'protocol': 'udp'})
    assert (report.sent, report.failed, report.pending, report.rejected) == (0, 1, 0, 1)
    assert 'too large for UDP' in report.error
    rejected = tmp_path / 'spool' / 'udp' / 'rejected'
    names = sorted(os.listdir(rejected))
    assert len(names) == 2 and names[1] == names[0] + '.reason'
    assert json.loads((rejected / names[0]).read_text()) == big


# ---------------------------------------------------------------------------
# HTTP sinks
# ---------------------------------------------------------------------------

@pytest.mark.parametrize(('kind', 'failure'), [('elasticsearch', '500'), ('splunk_hec', 'reset'), ('webhook', 'reset'), ('webhook', '500')])
def test_flaky_http_sink_gets_every_record_once(tmp_path, kind, failure):
    written = records(12, tmp_path)
    name = f'{kind}-{failure}'
    spool = spool_with(tmp_path, name, written)
    with FlakyHTTPReceiver(kind, fail_first=3, failure=failure, token=CANARY_TOKEN) as receiver:
        raw = {'type': kind, 'name': name, 'url': receiver.url('/'), 'token': CANARY_TOKEN, 'timeout': 2}
        runs = []
        for dummy in range(6):
            report = run(spool, raw, max_attempts=2, sleep=lambda seconds: None)
            runs.append(report)
            if not report.pending:
                break
        assert runs[0].sent < 12 and runs[0].error and CANARY_TOKEN not in runs[0].error
        assert runs[-1].pending == 0 and runs[-1].error is None
        assert sum(report.sent for report in runs) == 12
        assert [event_id for event_id, dummy in receiver.events] == [record['dihya']['audit']['hmac'] for record in written]
        assert receiver.duplicates() == {}
        assert not receiver.bad_bodies
        authorization = {'elasticsearch': 'ApiKey', 'splunk_hec': 'Splunk', 'webhook': 'Bearer'}[kind]
        assert receiver.headers[-1]['authorization'] == f'{authorization} {CANARY_TOKEN}'
    for path in (tmp_path / 'spool').rglob('*'):
        assert path.is_dir() or path.name == '.lock', path


def test_elasticsearch_item_errors(tmp_path):
    written = records(4, tmp_path)
    ids = [record['dihya']['audit']['hmac'] for record in written]
    spool = spool_with(tmp_path, 'es', written)
    with FlakyHTTPReceiver('elasticsearch') as receiver:
        receiver.item_status.update({ids[0]: 409, ids[1]: 400, ids[2]: 429})
        raw = {'type': 'elasticsearch', 'name': 'es', 'url': receiver.url('/base'), 'index': 'audit'}
        report = run(spool, raw, max_attempts=1)
        assert (report.sent, report.failed, report.pending, report.rejected) == (2, 2, 1, 1)
        assert 'item status' in report.error
        reason = next((tmp_path / 'spool' / 'es' / 'rejected').glob('*.reason')).read_text()
        assert 'mapper_parsing_exception' in reason
        receiver.item_status.clear()
        again = run(spool, raw)
        assert (again.sent, again.pending, again.rejected) == (1, 0, 1)


def test_http_error_pages_never_show_the_token(tmp_path):
    spool = spool_with(tmp_path, 'hook', records(1, tmp_path))
    with FlakyHTTPReceiver('webhook', fail_first=10, failure_status=502, echo_on_failure=True) as receiver:
        report = run(spool, {'type': 'webhook', 'name': 'hook', 'url': receiver.url('/x'), 'token': CANARY_TOKEN}, max_attempts=1)
    assert report.error.startswith(f'http://127.0.0.1:{receiver.port}/x: HTTP 502: ')
    assert 'Bearer ********' in report.error and CANARY_TOKEN not in report.error


def test_https_sink_checks_the_certificate(tmp_path, tls_material):
    spool = spool_with(tmp_path, 'es', records(2, tmp_path))
    with FlakyHTTPReceiver('elasticsearch', tls_context=tls_material.server_context()) as receiver:
        raw = {'type': 'elasticsearch', 'name': 'es', 'url': receiver.url('/')}
        refused = run(spool, raw, max_attempts=1)
        assert refused.sent == 0 and 'TLS certificate verification failed' in refused.error
        trusted = run(spool, dict(raw, ca_path=tls_material.ca_path))
        assert trusted.sent == 2 and trusted.pending == 0
        assert len(receiver.events) == 2


@pytest.mark.parametrize('answer', [{'errors': False}, {'items': []}, 'not json', [1]])
def test_bad_bulk_answers_are_retried(tmp_path, answer):
    spool = spool_with(tmp_path, 'es', records(1, tmp_path))
    with FlakyHTTPReceiver('elasticsearch') as receiver:
        receiver.answer = answer
        report = run(spool, {'type': 'elasticsearch', 'name': 'es', 'url': receiver.url('/'), 'index': 'i'}, max_attempts=1)
    assert report.pending == 1 and report.error.endswith('the _bulk answer is not the expected JSON')


def test_silent_sink_times_out(tmp_path, silent_listener):
    spool = spool_with(tmp_path, 'es', records(1, tmp_path))
    started = time.monotonic()
    report = run(spool, {'type': 'elasticsearch', 'name': 'es', 'url': f'http://127.0.0.1:{silent_listener}', 'timeout': 0.3},
                 max_attempts=5, deadline=time.monotonic() + 1)
    assert time.monotonic() - started < 2.5
    assert report.pending == 1 and report.sent == 0 and 'timed out' in report.error


# ---------------------------------------------------------------------------
# Spool
# ---------------------------------------------------------------------------

def test_spool_files_are_private_and_ordered(tmp_path):
    written = records(3, tmp_path)
    spool = spool_with(tmp_path, 'a', written)
    (tmp_path / 'spool' / 'a' / '.tmp-00000000000000000001-1-deadbeef.json').write_text('{half')
    (tmp_path / 'spool' / 'a' / 'notes.txt').write_text('not a record')
    items = spool.items('a')
    assert [spool.read(item) for item in items] == written
    assert stat.S_IMODE(os.stat(tmp_path / 'spool').st_mode) == 0o700
    assert stat.S_IMODE(os.stat(tmp_path / 'spool' / 'a').st_mode) == 0o700
    assert all(stat.S_IMODE(os.stat(item.path).st_mode) == 0o600 for item in items)
    assert spool.count('a') == 3 and spool.count('never') == 0 and spool.rejected('a') == 0
    assert spool.sinks() == ['a']
    with pytest.raises(spooling.SpoolError):
        spool.sink_dir('../escape')


def test_spool_refuses_symlinks_and_files(tmp_path):
    target = tmp_path / 'elsewhere'
    target.mkdir()
    (tmp_path / 'link').symlink_to(target)
    with pytest.raises(spooling.SpoolError, match='symbolic links are refused'):
        spooling.Spool(str(tmp_path / 'link')).put('a', {'x': 1})
    (tmp_path / 'file').write_text('')
    with pytest.raises(spooling.SpoolError, match='not a directory'):
        spooling.Spool(str(tmp_path / 'file')).put('a', {'x': 1})
    assert not os.listdir(target)


def test_unreadable_spool_file_is_moved_aside(tmp_path, closed_port):
    spool = spool_with(tmp_path, 'a', records(1, tmp_path))
    (tmp_path / 'spool' / 'a' / '00000000000000000001-1-deadbeef.json').write_text('{broken')
    report = run(spool, {'type': 'syslog', 'name': 'a', 'host': '127.0.0.1', 'port': closed_port}, max_attempts=1)
    assert report.rejected == 1 and report.pending == 1
    assert (tmp_path / 'spool' / 'a' / 'rejected' / '00000000000000000001-1-deadbeef.json').exists()


def test_spool_refuses_what_is_not_json(tmp_path, closed_port):
    """NaN and infinities are not JSON: the spool never writes one, and a spooled one (from an older version) is moved aside."""
    spool = spooling.Spool(str(tmp_path / 'spool'))
    for value in (float('nan'), float('inf'), '\udcff'):
        with pytest.raises(spooling.SpoolError, match='no canonical JSON form'):
            spool.put('a', {'x': value})
    assert not (tmp_path / 'spool').exists()
    spool = spool_with(tmp_path, 'a', records(1, tmp_path))
    (tmp_path / 'spool' / 'a' / '00000000000000000001-1-deadbeef.json').write_text('{"x": NaN}\n')
    report = run(spool, {'type': 'syslog', 'name': 'a', 'host': '127.0.0.1', 'port': closed_port}, max_attempts=1)
    assert report.rejected == 1 and report.pending == 1
    assert 'NaN is not JSON' in (tmp_path / 'spool' / 'a' / 'rejected' / '00000000000000000001-1-deadbeef.json.reason').read_text()


def test_new_spool_directories_are_flushed_to_disk(tmp_path, monkeypatch):
    flushed = []
    monkeypatch.setattr(spooling, 'fsync_directory', flushed.append)
    spool = spooling.Spool(str(tmp_path / 'spool'))
    item = spool.put('a', {'x': 1})
    assert flushed == [str(tmp_path), str(tmp_path / 'spool')]
    spool.put('a', {'x': 2})
    assert len(flushed) == 2, 'directories that exist are not flushed again'
    spool.reject(item, 'refused')
    assert flushed[2:] == [str(tmp_path / 'spool' / 'a')]
    flushed.clear()
    spooling.Spool(str(tmp_path / 'new' / 'parents' / 'spool')).put('a', {'x': 1})
    assert flushed == [str(tmp_path), str(tmp_path / 'new'), str(tmp_path / 'new' / 'parents'), str(tmp_path / 'new' / 'parents' / 'spool')]


def test_spool_directory_that_cannot_be_flushed_is_an_error(tmp_path, monkeypatch):
    def fail(directory):
        raise OSError(5, 'Input/output error')

    monkeypatch.setattr(spooling, 'fsync_directory', fail)
    with pytest.raises(spooling.SpoolError, match=r'cannot create the spool directory .*: Input/output error'):
        spooling.Spool(str(tmp_path / 'spool')).put('a', {'x': 1})
    assert not (tmp_path / 'spool' / 'a').exists()


def test_delivery_stops_when_time_is_up(tmp_path):
    spool = spool_with(tmp_path, 'hook', records(3, tmp_path))
    with FlakyHTTPReceiver('webhook') as receiver:
        report = run(spool, {'type': 'webhook', 'name': 'hook', 'url': receiver.url('/')}, deadline=time.monotonic() - 1)
    assert (report.sent, report.pending) == (0, 3) and 'delivery time is up' in report.error
    assert receiver.requests == 0


def test_forward_with_busy_lock_keeps_the_record(tmp_path):
    record = records(1, tmp_path)[0]
    spool = spooling.Spool(str(tmp_path / 'spool'))
    planned = sink_config.plan_sinks([{'type': 'webhook', 'url': 'http://127.0.0.1:9/x', 'name': 'hook'}])
    holding, release = threading.Event(), threading.Event()

    def hold():
        with spool.lock(1) as locked:
            assert locked
            holding.set()
            release.wait(10)

    holder = threading.Thread(target=hold)
    holder.start()
    try:
        assert holding.wait(5)
        result = delivery.forward(spool, record, planned, delivery_timeout=0.2, metrics_path=str(tmp_path / 'm.prom'))
    finally:
        release.set()
        holder.join(5)
    report = result.reports[0]
    assert (report.queued, report.sent, report.pending) == (1, 0, 1)
    assert 'holds the spool lock' in report.error
    assert not result.metrics_written and 'metrics not written' in result.warnings[0]


def test_forward_reports_orphans_and_previews(tmp_path):
    record = records(1, tmp_path)[0]
    spool = spool_with(tmp_path, 'old-sink', [record])
    planned = sink_config.plan_sinks([{'type': 'kafka', 'name': 'new-sink'}])
    preview = delivery.preview(spool, planned).as_dict()
    assert preview['sinks'][0]['queued'] == 1 and preview['sinks'][0]['pending'] == 1
    assert preview['orphaned'][0]['name'] == 'old-sink' and preview['total']['pending'] == 2
    assert spool.count('new-sink') == 0
    result = delivery.forward(spool, record, planned).as_dict()
    assert result['sinks'][0] | {'error': None} == {
        'name': 'new-sink', 'type': 'unknown', 'endpoint': '', 'queued': 1, 'sent': 0, 'failed': 1, 'pending': 1, 'rejected': 0, 'error': None,
    }
    assert result['orphaned'] == [{'name': 'old-sink', 'directory': str(tmp_path / 'spool' / 'old-sink'), 'pending': 1, 'rejected': 0}]
    assert result['total'] == {'queued': 1, 'sent': 0, 'failed': 1, 'pending': 2, 'rejected': 0}
    empty = delivery.forward(spooling.Spool(str(tmp_path / 'none')), record, [])
    assert empty.as_dict()['total']['queued'] == 0 and not (tmp_path / 'none').exists()


# ---------------------------------------------------------------------------
# Metrics
# ---------------------------------------------------------------------------

def test_metrics_accumulate(tmp_path):
    path = str(tmp_path / 'audit.prom')
    report = delivery.SinkReport('siem', 'syslog', 'tcp://h:514', queued=2, sent=1, failed=1, pending=1)
    assert metrics_delivery.write_delivery_metrics(path, [report], now=1000.0) == []
    promtool_check(path)
    report2 = delivery.SinkReport('siem', 'syslog', 'tcp://h:514', queued=1, sent=2, failed=0, pending=0)
    metrics_delivery.write_delivery_metrics(path, [report2], now=2000.0)
    promtool_check(path)
    text = (tmp_path / 'audit.prom').read_text()
    assert 'dihya_audit_delivery_events_total{sink="siem",state="queued",type="syslog"} 3.0' in text
    assert 'dihya_audit_delivery_events_total{sink="siem",state="sent",type="syslog"} 3.0' in text
    assert 'dihya_audit_delivery_events_total{sink="siem",state="failed",type="syslog"} 1.0' in text
    assert 'dihya_audit_delivery_pending{sink="siem",type="syslog"} 0.0' in text
    assert 'dihya_audit_delivery_last_success_timestamp_seconds{sink="siem",type="syslog"} 2000.0' in text
    assert stat.S_IMODE(os.stat(path).st_mode) == 0o644
    (tmp_path / 'audit.prom').write_text('garbage{{{\n')
    warnings = metrics_delivery.write_delivery_metrics(path, [report2])
    assert 'counters start again from zero' in warnings[0]
    with pytest.raises(MetricsError, match='does not exist'):
        metrics_delivery.write_delivery_metrics(str(tmp_path / 'missing' / 'x.prom'), [report2])


def test_metrics_of_sinks_sharing_a_name_stay_valid(tmp_path):
    """plan_sinks reports a second sink of the same name; its gauges are written once, not twice."""
    path = str(tmp_path / 'audit.prom')
    reports = [delivery.SinkReport('siem', 'webhook', 'http://h/', queued=1, sent=1), delivery.SinkReport('siem', 'webhook', '', queued=1, failed=1)]
    assert metrics_delivery.write_delivery_metrics(path, reports, now=1000.0) == []
    promtool_check(path)
    text = (tmp_path / 'audit.prom').read_text()
    assert text.count('dihya_audit_delivery_pending{') == 1 and text.count('dihya_audit_delivery_rejected{') == 1
    assert 'dihya_audit_delivery_events_total{sink="siem",state="queued",type="webhook"} 2.0' in text


def test_metrics_warn_about_an_unreadable_previous_file(tmp_path):
    path = tmp_path / 'audit.prom'
    report = delivery.SinkReport('siem', 'syslog', 'tcp://h:514', queued=1, sent=1)
    path.write_text('dihya_audit_delivery_events_total{sink="siem",type="syslog",state="sent"} abc\n')
    assert metrics_delivery.write_delivery_metrics(str(path), [report]) == [
        f"cannot read the previous metrics file {path} (could not convert string to float: 'abc'); counters start again from zero",
    ]
    path.write_bytes(b'\xff\xfe')
    warning = metrics_delivery.write_delivery_metrics(str(path), [report])[0]
    assert warning.startswith(f'cannot read the previous metrics file {path} (cannot read {path}: ') and 'codec' in warning
    assert 'dihya_audit_delivery_events_total{sink="siem",state="sent",type="syslog"} 1.0' in path.read_text()


def test_metrics_need_prometheus_client(tmp_path, monkeypatch):
    monkeypatch.setattr(_metrics, 'HAS_PROMETHEUS_CLIENT', False)
    with pytest.raises(MetricsError, match='prometheus_client'):
        metrics_delivery.write_delivery_metrics(str(tmp_path / 'x.prom'), [])


def test_describe_network_errors():
    assert senders._describe(ConnectionResetError()) == 'connection reset by peer'
    assert senders._describe(TimeoutError()) == 'timed out'  # socket.timeout is TimeoutError
    assert senders._describe(OSError(5, 'Input/output error')) == 'input/output error'
    assert senders._describe(ValueError()) == 'ValueError'


def test_concurrent_runs_deliver_each_record_once(tmp_path):
    written = records(8, tmp_path)
    spool = spooling.Spool(str(tmp_path / 'spool; $(id) "q"'))
    with FlakyHTTPReceiver('webhook', fail_first=2) as receiver:
        planned = sink_config.plan_sinks([{'type': 'webhook', 'name': 'hook', 'url': receiver.url('/')}])
        results = [None] * len(written)

        def one(number):
            results[number] = delivery.forward(spool, written[number], planned, delivery_timeout=10)

        threads = [threading.Thread(target=one, args=(number,)) for number in range(len(written))]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join(20)
        assert sum(result.reports[0].sent for result in results) == 8
        assert receiver.duplicates() == {} and len(receiver.events) == 8
    assert spool.count('hook') == 0
