# Copyright (c) Dihya ops maintainers
# GNU General Public License v3.0+ (see LICENSES/GPL-3.0-or-later.txt or https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later

"""Tests of the Prometheus textfile writer; every file written is checked with promtool."""

from __future__ import annotations

import os
import stat

import pytest
from prometheus_client.parser import text_string_to_metric_families

from ansible_collections.dihya.ops.plugins.module_utils import _metrics
from ansible_collections.dihya.ops.plugins.module_utils._health import CheckResult
from ansible_collections.dihya.ops.plugins.module_utils._metrics import (
    Family,
    MetricsError,
    Sample,
    UnparsableMetrics,
    check_metrics_path,
    read_last_success,
    read_samples,
    write_families,
    write_health_metrics,
)
from ansible_collections.dihya.ops.tests.unit.plugins.modules.utils import promtool_check


def samples(path: str) -> dict[tuple[str, tuple[tuple[str, str], ...]], float]:
    with open(path, encoding='utf-8') as handle:
        text = handle.read()
    return {
        (sample.name, tuple(sorted(sample.labels.items()))): sample.value
        for family in text_string_to_metric_families(text)
        for sample in family.samples
    }


def labels(check: str, check_type: str, tenant: str = 'acme') -> tuple[tuple[str, str], ...]:
    return (('check', check), ('tenant', tenant), ('type', check_type))


RESULTS = [
    CheckResult('healthz', 'http', True, 'ok', 'HTTP 200', latency_seconds=0.012, attempts=1),
    CheckResult('db', 'tcp', False, 'failed', 'connection refused', latency_seconds=0.001, attempts=2),
    CheckResult('name with "quotes"\n', 'disk', True, 'ok', 'fine', latency_seconds=0.5, attempts=1),
]


def test_write_and_parse(tmp_path):
    path = str(tmp_path / 'health.prom')
    assert write_health_metrics(path, RESULTS, 'acme', now=1700000000.0) == []
    promtool_check(path)
    values = samples(path)
    assert values[('dihya_health_check_up', labels('healthz', 'http'))] == 1
    assert values[('dihya_health_check_up', labels('db', 'tcp'))] == 0
    assert values[('dihya_health_check_duration_seconds', labels('healthz', 'http'))] == 0.012
    assert values[('dihya_health_check_last_success_timestamp_seconds', labels('healthz', 'http'))] == 1700000000.0
    assert values[('dihya_health_check_last_success_timestamp_seconds', labels('db', 'tcp'))] == 0
    assert values[('dihya_health_check_up', labels('name with "quotes"\n', 'disk'))] == 1
    assert values[('dihya_health_check_healthy', (('tenant', 'acme'),))] == 0
    assert len(values) == 3 * 3 + 1


def test_help_and_type_lines(tmp_path):
    path = tmp_path / 'health.prom'
    write_health_metrics(str(path), RESULTS[:1], 'acme')
    text = path.read_text()
    for name in ('up', 'duration_seconds', 'last_success_timestamp_seconds', 'healthy'):
        assert f'# TYPE dihya_health_check_{name} gauge' in text
        assert f'# HELP dihya_health_check_{name} ' in text


def test_all_healthy(tmp_path):
    path = str(tmp_path / 'health.prom')
    write_health_metrics(path, [RESULTS[0]], 'acme')
    assert samples(path)[('dihya_health_check_healthy', (('tenant', 'acme'),))] == 1


def test_no_results(tmp_path):
    path = str(tmp_path / 'health.prom')
    write_health_metrics(path, [], 'acme')
    promtool_check(path)
    assert samples(path) == {('dihya_health_check_healthy', (('tenant', 'acme'),)): 1}


def test_failing_check_keeps_last_success(tmp_path):
    path = str(tmp_path / 'health.prom')
    write_health_metrics(path, [CheckResult('db', 'tcp', True, 'ok', 'connected')], 'acme', now=1000.0)
    write_health_metrics(path, [CheckResult('db', 'tcp', False, 'failed', 'refused'), RESULTS[0]], 'acme', now=2000.0)
    values = samples(path)
    assert values[('dihya_health_check_last_success_timestamp_seconds', labels('db', 'tcp'))] == 1000.0
    assert values[('dihya_health_check_last_success_timestamp_seconds', labels('healthz', 'http'))] == 2000.0
    write_health_metrics(path, [CheckResult('db', 'tcp', True, 'ok', 'connected')], 'acme', now=3000.0)
    assert samples(path)[('dihya_health_check_last_success_timestamp_seconds', labels('db', 'tcp'))] == 3000.0
    promtool_check(path)


def test_last_success_is_per_tenant_and_type(tmp_path):
    path = str(tmp_path / 'health.prom')
    write_health_metrics(path, [CheckResult('db', 'tcp', True, 'ok', 'connected')], 'other', now=1000.0)
    write_health_metrics(path, [CheckResult('db', 'tcp', False, 'failed', 'refused')], 'acme', now=2000.0)
    assert samples(path)[('dihya_health_check_last_success_timestamp_seconds', labels('db', 'tcp'))] == 0
    write_health_metrics(path, [CheckResult('db', 'tcp', True, 'ok', 'connected')], 'acme', now=3000.0)
    write_health_metrics(path, [CheckResult('db', 'sql', False, 'failed', 'refused')], 'acme', now=4000.0)
    assert samples(path)[('dihya_health_check_last_success_timestamp_seconds', labels('db', 'sql'))] == 0


def test_read_last_success(tmp_path):
    path = tmp_path / 'health.prom'
    assert read_last_success(str(path), 'acme') == {}
    path.write_text(
        '# TYPE dihya_health_check_last_success_timestamp_seconds gauge\n'
        'dihya_health_check_last_success_timestamp_seconds{check="a",type="http",tenant="acme"} 12.5\n'
        'dihya_health_check_last_success_timestamp_seconds{check="b",type="http",tenant="other"} 13\n'
        'dihya_health_check_last_success_timestamp_seconds{check="c",tenant="acme"} 14\n'
        'dihya_health_check_up{check="a",type="http",tenant="acme"} 1\n'
        'node_textfile_scrape_error 0\n',
    )
    assert read_last_success(str(path), 'acme') == {('a', 'http'): 12.5}


def test_unparsable_previous_file_is_replaced_with_a_warning(tmp_path):
    path = tmp_path / 'health.prom'
    path.write_text('this is { not the prometheus format\n')
    warnings = write_health_metrics(str(path), RESULTS, 'acme')
    assert len(warnings) == 1
    assert warnings[0].startswith(f'cannot parse the existing metrics file {path}')
    promtool_check(str(path))


def test_unreadable_previous_file(tmp_path):
    path = tmp_path / 'health.prom'
    path.write_bytes(b'\xff\xfe binary')
    with pytest.raises(MetricsError, match='cannot read'):
        read_last_success(str(path), 'acme')
    assert write_health_metrics(str(path), RESULTS, 'acme')[0].startswith('cannot read')


def test_file_mode_is_0644_whatever_the_umask(tmp_path):
    path = tmp_path / 'health.prom'
    old = os.umask(0o077)
    try:
        write_health_metrics(str(path), RESULTS, 'acme')
        assert os.umask(0o077) == 0o077, 'the umask must be restored'
    finally:
        os.umask(old)
    assert stat.S_IMODE(path.stat().st_mode) == 0o644


def test_replaced_atomically(tmp_path):
    path = tmp_path / 'health.prom'
    path.write_text('old\n')
    inode = path.stat().st_ino
    write_health_metrics(str(path), RESULTS, 'acme')
    assert path.stat().st_ino != inode
    assert sorted(os.listdir(tmp_path)) == ['health.prom']


def test_missing_directory(tmp_path):
    path = tmp_path / 'absent' / 'health.prom'
    with pytest.raises(MetricsError, match='the directory of metrics_path does not exist'):
        write_health_metrics(str(path), RESULTS, 'acme')
    assert not path.parent.exists()


def test_path_is_a_directory(tmp_path):
    with pytest.raises(MetricsError, match='metrics_path is a directory'):
        check_metrics_path(str(tmp_path))


def test_relative_path(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    check_metrics_path('health.prom')
    write_health_metrics('health.prom', RESULTS, 'acme')
    assert (tmp_path / 'health.prom').is_file()


def test_write_failure(tmp_path):
    # /proc exists but nothing can be created in it, not even by root.
    with pytest.raises(MetricsError, match=r'cannot write /proc/dihya-health\.prom'):
        write_health_metrics('/proc/dihya-health.prom', RESULTS, 'acme')


def test_library_missing(tmp_path, monkeypatch):
    monkeypatch.setattr(_metrics, 'HAS_PROMETHEUS_CLIENT', False)
    with pytest.raises(MetricsError, match='needs the prometheus_client Python library'):
        write_health_metrics(str(tmp_path / 'health.prom'), RESULTS, 'acme')
    assert not (tmp_path / 'health.prom').exists()


def test_write_families_and_read_them_back(tmp_path):
    path = str(tmp_path / 'any.prom')
    events = Family('dihya_test_events', 'Events.', ('sink', 'state'), kind='counter')
    events.set(('b', 'sent'), 2)
    events.set(('a', 'sent'), 1)
    events.set(('b', 'sent'), 3)  # replaces the first value, in place
    level = Family('dihya_test_level', 'Level "quoted" \\ help.', ('name',))
    level.set(('x\n"y"',), 0.5)
    empty = Family('dihya_test_empty', 'No samples.', ('name',))
    write_families(path, [events, level, empty])
    promtool_check(path)
    assert stat.S_IMODE(os.stat(path).st_mode) == 0o644
    assert read_samples(path) == [
        Sample('dihya_test_events_total', {'sink': 'b', 'state': 'sent'}, 3.0),
        Sample('dihya_test_events_total', {'sink': 'a', 'state': 'sent'}, 1.0),
        Sample('dihya_test_level', {'name': 'x\n"y"'}, 0.5),
    ]
    assert '# TYPE dihya_test_empty gauge' in (tmp_path / 'any.prom').read_text()
    assert read_samples(str(tmp_path / 'missing.prom')) == []


def test_read_samples_errors(tmp_path, monkeypatch):
    path = tmp_path / 'any.prom'
    path.write_text('metric{label="x"} not-a-number\n')
    with pytest.raises(UnparsableMetrics, match=f'cannot parse the existing metrics file {path}: ') as caught:
        read_samples(str(path))
    assert caught.value.detail == "could not convert string to float: 'not-a-number'"
    os.mkfifo(tmp_path / 'fifo.prom')
    with pytest.raises(MetricsError, match='not a regular file'):
        read_samples(str(tmp_path / 'fifo.prom'))
    monkeypatch.setattr(_metrics, 'HAS_PROMETHEUS_CLIENT', False)
    with pytest.raises(MetricsError, match='needs the prometheus_client Python library'):
        write_families(str(tmp_path / 'new.prom'), [])
    assert not (tmp_path / 'new.prom').exists()
