# Copyright (c) Dihya ops maintainers
# GNU General Public License v3.0+ (see LICENSES/GPL-3.0-or-later.txt or https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later

"""Tests of the health check runner: concurrency, retries, deadlines, validation and results."""

from __future__ import annotations

import re
import time
import typing as t
import uuid

import pytest

from ansible_collections.dihya.ops.plugins.module_utils import _health
from ansible_collections.dihya.ops.plugins.module_utils._health import (
    CheckResult,
    CheckSpec,
    duplicate_names,
    run_checks,
    summarize,
    validate_run_options,
    validate_spec,
)
from ansible_collections.dihya.ops.plugins.module_utils._probe_common import CheckConfigError, Outcome
from ansible_collections.dihya.ops.plugins.module_utils._probe_disk import DISK_OPTIONS, parse_disk
from ansible_collections.dihya.ops.plugins.module_utils._probe_tcp import TCP_OPTIONS, parse_tcp

if t.TYPE_CHECKING:
    from ansible_collections.dihya.ops.tests.unit.conftest import Server


# ---------------------------------------------------------------------------
# Runner
# ---------------------------------------------------------------------------

class TestRunner:
    def test_checks_run_concurrently(self, http_server: Server) -> None:
        specs = [CheckSpec(f'slow-{index}', 'http', {'url': http_server.url('/slow')}) for index in range(10)]
        started = time.monotonic()
        results = run_checks(specs, concurrency=10)
        elapsed = time.monotonic() - started
        assert all(result.healthy for result in results)
        assert elapsed < 1.5, f'10 checks of 0.3 s took {elapsed:.2f} s'

    def test_concurrency_limit(self, http_server: Server) -> None:
        specs = [CheckSpec(f'slow-{index}', 'http', {'url': http_server.url('/slow')}) for index in range(3)]
        started = time.monotonic()
        run_checks(specs, concurrency=1)
        assert time.monotonic() - started >= 0.9

    def test_results_keep_input_order(self, http_server: Server, closed_port: int) -> None:
        specs = [
            CheckSpec('slow', 'http', {'url': http_server.url('/slow')}),
            CheckSpec('refused', 'tcp', {'host': '127.0.0.1', 'port': closed_port}),
            CheckSpec('bad', 'http', {'url': 'nope'}),
            CheckSpec('fast', 'http', {'url': http_server.url('/ok')}),
        ]
        results = run_checks(specs)
        assert [result.name for result in results] == ['slow', 'refused', 'bad', 'fast']
        assert [result.status for result in results] == ['ok', 'failed', 'error', 'ok']

    def test_no_checks(self) -> None:
        assert run_checks([]) == []

    def test_retries_rerun_failing_checks(self, http_server: Server) -> None:
        url = http_server.url(f'/flaky/{uuid.uuid4().hex}')
        specs = [CheckSpec('flaky', 'http', {'url': url}), CheckSpec('steady', 'http', {'url': http_server.url('/ok')})]
        [flaky, steady] = run_checks(specs, retries=2, delay=0.05)
        assert flaky.healthy and flaky.attempts == 3
        assert steady.healthy and steady.attempts == 1

    def test_retries_exhausted(self, http_server: Server) -> None:
        url = http_server.url(f'/flaky/{uuid.uuid4().hex}')
        [result] = run_checks([CheckSpec('flaky', 'http', {'url': url})], retries=1, delay=0.05)
        assert not result.healthy and result.attempts == 2
        assert result.message == 'HTTP 503 not in [200]'

    def test_no_retry_without_retries(self, http_server: Server) -> None:
        url = http_server.url(f'/flaky/{uuid.uuid4().hex}')
        assert run_checks([CheckSpec('flaky', 'http', {'url': url})])[0].attempts == 1

    def test_errors_are_not_retried(self) -> None:
        [result] = run_checks([CheckSpec('bad', 'http', {'url': 'nope'})], retries=3, delay=0.05)
        assert result.status == 'error' and result.attempts == 0

    def test_delay_between_retries(self, closed_port: int) -> None:
        started = time.monotonic()
        [result] = run_checks([CheckSpec('refused', 'tcp', {'host': '127.0.0.1', 'port': closed_port})], retries=2, delay=0.2)
        assert result.attempts == 3
        assert time.monotonic() - started >= 0.4

    def test_deadline_bounds_the_run(self, http_server: Server, silent_listener: int) -> None:
        # One quick check, then two that never get an answer: the second is cut by the run's deadline, the third
        # never starts. The first has all of the deadline, so a loaded machine does not change the outcome.
        silent = f'http://127.0.0.1:{silent_listener}/'
        specs = [CheckSpec('quick', 'http', {'url': http_server.url('/ok')}),
                 CheckSpec('silent-1', 'http', {'url': silent}), CheckSpec('silent-2', 'http', {'url': silent})]
        started = time.monotonic()
        results = run_checks(specs, concurrency=1, deadline=2)
        elapsed = time.monotonic() - started
        assert elapsed < 2 + 1.5
        assert results[0].healthy
        assert results[1].message.startswith('deadline exceeded while reading the status line and headers (run deadline 2 s)'), results[1].message
        assert results[2].message == 'deadline exceeded before the check could start'
        assert results[2].attempts == 0 and results[2].status == 'failed'

    def test_no_retry_starts_after_the_deadline(self, closed_port: int) -> None:
        started = time.monotonic()
        [result] = run_checks([CheckSpec('refused', 'tcp', {'host': '127.0.0.1', 'port': closed_port})], retries=10, delay=0.2, deadline=0.5)
        assert time.monotonic() - started < 1.0
        assert 2 <= result.attempts <= 3
        assert result.message == 'connection refused'

    def test_deadline_stops_before_waiting_past_it(self, closed_port: int) -> None:
        [result] = run_checks([CheckSpec('refused', 'tcp', {'host': '127.0.0.1', 'port': closed_port})], retries=10, delay=1, deadline=0.5)
        assert result.attempts == 1

    def test_latency_budget_failure_is_retried(self, http_server: Server) -> None:
        [result] = run_checks([CheckSpec('slow', 'http', {'url': http_server.url('/slow')}, latency_budget=0.05)], retries=1, delay=0)
        assert result.attempts == 2 and result.status == 'failed'

    def test_probe_crash_is_a_failure(self, monkeypatch: pytest.MonkeyPatch) -> None:
        def crash(config: t.Any, timeout: float) -> Outcome:
            raise RuntimeError('boom')
        monkeypatch.setitem(_health._CHECKS, 'tcp', (parse_tcp, crash, TCP_OPTIONS))
        [result] = run_checks([CheckSpec('tcp', 'tcp', {'host': 'h', 'port': 1})])
        assert result.status == 'failed'
        assert result.message == 'RuntimeError: boom'
        assert result.details == {'host': 'h', 'port': 1}

    def test_probe_config_error(self, monkeypatch: pytest.MonkeyPatch) -> None:
        def refuse(config: t.Any, timeout: float) -> Outcome:
            raise CheckConfigError('not on this host')
        monkeypatch.setitem(_health._CHECKS, 'disk', (parse_disk, refuse, DISK_OPTIONS))
        [result] = run_checks([CheckSpec('disk', 'disk', {'path': '/', 'min_free_bytes': 1})], retries=2)
        assert (result.status, result.message, result.attempts) == ('error', 'not on this host', 1)

    @pytest.mark.parametrize('spec', [
        CheckSpec('x', 'http', {'url': 'http://h/', 'status_codes': 5}),
        CheckSpec('x', 'tcp', None),  # type: ignore[arg-type]  # the wrong shape on purpose
    ])
    def test_options_of_the_wrong_shape(self, spec: CheckSpec) -> None:
        [result] = run_checks([spec])
        assert result.status == 'error'
        assert result.message.startswith('invalid options: ')

    def test_invalid_run_options(self) -> None:
        with pytest.raises(ValueError, match='concurrency must be at least 1'):
            run_checks([], concurrency=0)

    def test_result_to_dict(self) -> None:
        result = CheckResult('a', 'tcp', True, 'ok', 'fine', 0.5, 1, {'port': 1})
        assert result.to_dict() == {
            'name': 'a', 'type': 'tcp', 'healthy': True, 'status': 'ok', 'message': 'fine', 'latency_seconds': 0.5, 'attempts': 1, 'details': {'port': 1},
        }


class TestValidation:
    def test_run_options(self) -> None:
        assert validate_run_options(timeout=5, concurrency=1, retries=0, delay=0, deadline=1) == []
        assert validate_run_options(timeout=0, concurrency=0, retries=-1, delay=-1, deadline=-2) == [
            'timeout must be greater than 0 (got 0)',
            'concurrency must be at least 1 (got 0)',
            'retries must be 0 or more (got -1)',
            'delay must be 0 or more (got -1)',
            'deadline must be greater than 0 (got -2)',
        ]
        assert validate_run_options(timeout=float('nan'), delay=float('inf'))[0].startswith('timeout must be greater than 0')
        assert len(validate_run_options(timeout=float('nan'), delay=float('inf'))) == 2

    def test_duplicate_names(self) -> None:
        specs = [CheckSpec(name, 'tcp') for name in ('a', 'b', 'a', 'c', 'b', 'a')]
        assert duplicate_names(specs) == ['a', 'b']
        assert duplicate_names(specs[:2]) == []

    @pytest.mark.parametrize('spec, message', [
        (CheckSpec('', 'tcp'), 'every check needs a non-empty name'),
        (CheckSpec('x', 'smtp'), "unknown check type 'smtp'"),
        (CheckSpec('x', 'tcp', timeout=0), 'timeout must be greater than 0 (got 0)'),
        (CheckSpec('x', 'tcp', timeout=-1), 'timeout must be greater than 0 (got -1)'),
        (CheckSpec('x', 'tcp', timeout=True), 'timeout must be greater than 0'),
        (CheckSpec('x', 'tcp', latency_budget=0), 'latency_budget must be greater than 0'),
    ])
    def test_spec(self, spec: CheckSpec, message: str) -> None:
        with pytest.raises(CheckConfigError, match=re.escape(message)):
            validate_spec(spec)
        [result] = run_checks([spec])
        assert result.status == 'error' and message in result.message


def test_summarize() -> None:
    results = [
        CheckResult('a', 'tcp', True, 'ok', 'connected'),
        CheckResult('healthz', 'http', False, 'failed', 'HTTP 503 not in [200]'),
        CheckResult('db', 'sql', False, 'error', 'dsn is required for a sql check'),
    ]
    assert summarize(results) == '1/3 checks healthy; failed: healthz (HTTP 503 not in [200]), db (dsn is required for a sql check)'
    assert summarize(results[:1]) == '1/1 checks healthy'
    assert summarize([]) == '0/0 checks healthy'
