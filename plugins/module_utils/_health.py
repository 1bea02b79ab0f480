# Copyright (c) Dihya ops maintainers
# GNU General Public License v3.0+ (see LICENSES/GPL-3.0-or-later.txt or https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later

# This module utility is PRIVATE to the collection. It can change at any time.

"""Health check runner: run checks concurrently, with retries, a run deadline and per-check timeouts, and report the results.

The runner knows nothing about Ansible. A caller builds :class:`CheckSpec` objects, hands them to
:func:`run_checks` (or :func:`run_report`) and gets one :class:`CheckResult` per spec back, in the same order.

Each check type is a probe family of its own module (``_probe_http``, ``_probe_tcp``, ``_probe_process``,
``_probe_disk``, ``_probe_tls``, ``_probe_sql``), registered in :data:`_CHECKS` with its parser, its probe
and the options it accepts. Bad input never raises out of :func:`run_checks`: it becomes a result with
status ``error``. Network and system failures become results with status ``failed``.
"""

from __future__ import annotations

import dataclasses
import math
import time
import typing as t
from concurrent.futures import ThreadPoolExecutor

from ansible_collections.dihya.ops.plugins.module_utils._probe_common import (
    CheckConfigError,
    DeadlineExceeded,
    Options,
    Outcome,
    as_text,
    describe_error,
    positive,
)
from ansible_collections.dihya.ops.plugins.module_utils._probe_disk import DISK_OPTIONS, parse_disk, probe_disk
from ansible_collections.dihya.ops.plugins.module_utils._probe_http import HTTP_OPTIONS, mask_url_credentials, parse_http, probe_http, url_secrets
from ansible_collections.dihya.ops.plugins.module_utils._probe_process import PROCESS_OPTIONS, parse_process, probe_process
from ansible_collections.dihya.ops.plugins.module_utils._probe_sql import SQL_OPTIONS, parse_sql, probe_sql
from ansible_collections.dihya.ops.plugins.module_utils._probe_tcp import TCP_OPTIONS, parse_tcp, probe_tcp
from ansible_collections.dihya.ops.plugins.module_utils._probe_tls import TLS_CERT_OPTIONS, parse_tls_cert, probe_tls_cert

CHECK_TYPES = ('http', 'https', 'tcp', 'process', 'disk', 'tls_cert', 'sql')

STATUS_OK = 'ok'
STATUS_FAILED = 'failed'
STATUS_ERROR = 'error'

DEFAULT_TIMEOUT = 5.0
DEFAULT_CONCURRENCY = 32

# Options every check accepts, whatever its type.
COMMON_OPTIONS = frozenset(('name', 'type', 'timeout', 'latency_budget'))

Parser = t.Callable[[Options], t.Any]
Probe = t.Callable[[t.Any, float], Outcome]

# ---------------------------------------------------------------------------
# Registry: type -> (parser, probe, options it accepts)
# ---------------------------------------------------------------------------

_CHECKS: dict[str, tuple[Parser, Probe, frozenset[str]]] = {
    'http': (parse_http, probe_http, HTTP_OPTIONS),
    'https': (lambda options: parse_http(options, 'https'), probe_http, HTTP_OPTIONS),
    'tcp': (parse_tcp, probe_tcp, TCP_OPTIONS),
    'process': (parse_process, probe_process, PROCESS_OPTIONS),
    'disk': (parse_disk, probe_disk, DISK_OPTIONS),
    'tls_cert': (parse_tls_cert, probe_tls_cert, TLS_CERT_OPTIONS),
    'sql': (parse_sql, probe_sql, SQL_OPTIONS),
}

OPTIONS_BY_TYPE: dict[str, frozenset[str]] = {name: entry[2] for name, entry in _CHECKS.items()}


@dataclasses.dataclass(frozen=True)
class CheckSpec:
    """What to check: the common settings plus the type-specific ``options``."""

    name: str
    type: str
    options: t.Mapping[str, t.Any] = dataclasses.field(default_factory=dict)
    timeout: float = DEFAULT_TIMEOUT
    latency_budget: float | None = None


@dataclasses.dataclass
class CheckResult:
    """The final result of one check, after any retries."""

    name: str
    type: str
    healthy: bool
    status: str
    message: str
    latency_seconds: float = 0.0
    attempts: int = 0
    details: dict[str, t.Any] = dataclasses.field(default_factory=dict)

    def to_dict(self) -> dict[str, t.Any]:
        """Plain data, ready to be serialised."""
        return dataclasses.asdict(self)


# ---------------------------------------------------------------------------
# Validation helpers
# ---------------------------------------------------------------------------

def validate_run_options(
    timeout: float | None = None,
    concurrency: int = DEFAULT_CONCURRENCY,
    retries: int = 0,
    delay: float = 0.0,
    deadline: float | None = None,
) -> list[str]:
    """Return one message per invalid run-wide setting (empty when all are valid)."""
    errors = []
    if timeout is not None and not positive(timeout):
        errors.append(f'timeout must be greater than 0 (got {timeout})')
    if concurrency < 1:
        errors.append(f'concurrency must be at least 1 (got {concurrency})')
    if retries < 0:
        errors.append(f'retries must be 0 or more (got {retries})')
    if not (delay >= 0 and math.isfinite(delay)):
        errors.append(f'delay must be 0 or more (got {delay})')
    if deadline is not None and not positive(deadline):
        errors.append(f'deadline must be greater than 0 (got {deadline})')
    return errors


def duplicate_names(specs: t.Iterable[CheckSpec]) -> list[str]:
    """Names used by more than one check, in order of first repetition."""
    seen: set[str] = set()
    duplicates: list[str] = []
    for spec in specs:
        if spec.name in seen and spec.name not in duplicates:
            duplicates.append(spec.name)
        seen.add(spec.name)
    return duplicates


def validate_spec(spec: CheckSpec) -> t.Any:
    """Validate one check and return its typed configuration; raise :class:`CheckConfigError` if it is unusable."""
    if not isinstance(spec.name, str) or not spec.name:
        raise CheckConfigError('every check needs a non-empty name')
    if spec.type not in _CHECKS:
        raise CheckConfigError(f"unknown check type {spec.type!r} (expected one of: {', '.join(CHECK_TYPES)})")
    if not positive(spec.timeout):
        raise CheckConfigError(f'timeout must be greater than 0 (got {spec.timeout})')
    if spec.latency_budget is not None and not positive(spec.latency_budget):
        raise CheckConfigError(f'latency_budget must be greater than 0 (got {spec.latency_budget})')
    parser, _probe, allowed = _CHECKS[spec.type]
    unknown = sorted(key for key, value in spec.options.items() if value is not None and key not in allowed and key not in COMMON_OPTIONS)
    if unknown:
        raise CheckConfigError(f"option(s) not valid for a {spec.type} check: {', '.join(unknown)}")
    return parser(spec.options)


# ---------------------------------------------------------------------------
# Runner
# ---------------------------------------------------------------------------

def run_checks(
    specs: t.Sequence[CheckSpec],
    concurrency: int = DEFAULT_CONCURRENCY,
    retries: int = 0,
    delay: float = 1.0,
    deadline: float | None = None,
) -> list[CheckResult]:
    """Run all checks concurrently and return their results in input order.

    A check whose attempt fails is attempted again, up to ``retries`` more times, ``delay`` seconds
    apart. ``deadline`` (seconds from now) bounds the whole run: every attempt's timeout is cut to
    the time left, no retry starts after it and a check still queued when it passes is reported as
    failed without being attempted.
    """
    errors = validate_run_options(concurrency=concurrency, retries=retries, delay=delay, deadline=deadline)
    if errors:
        raise ValueError('; '.join(errors))
    if not specs:
        return []
    deadline_at = time.monotonic() + deadline if deadline is not None else None
    workers = min(concurrency, len(specs))
    with ThreadPoolExecutor(max_workers=workers, thread_name_prefix='health-check') as pool:
        futures = [pool.submit(_run_one, spec, retries, delay, deadline_at, deadline) for spec in specs]
        return [future.result() for future in futures]


def _run_one(spec: CheckSpec, retries: int, delay: float, deadline_at: float | None, deadline: float | None = None) -> CheckResult:
    secrets = url_secrets(spec.options.get('url')) if isinstance(spec.options, t.Mapping) else ()
    result = _run_one_unmasked(spec, retries, delay, deadline_at, deadline)
    # A URL's user information never leaves the engine: not in names (metrics labels), not in messages.
    result.name = mask_url_credentials(result.name, secrets)
    result.message = mask_url_credentials(result.message, secrets)
    return result


def _run_one_unmasked(spec: CheckSpec, retries: int, delay: float, deadline_at: float | None, deadline: float | None) -> CheckResult:
    try:
        config = validate_spec(spec)
    except CheckConfigError as exc:
        return CheckResult(name=str(spec.name), type=str(spec.type), healthy=False, status=STATUS_ERROR, message=str(exc))
    except Exception as exc:  # pylint: disable=broad-exception-caught
        # Options of an unexpected shape, such as a number where a list belongs.
        return CheckResult(name=str(spec.name), type=str(spec.type), healthy=False, status=STATUS_ERROR, message=f'invalid options: {describe_error(exc)}')

    _parser, probe, _allowed = _CHECKS[spec.type]
    attempts = 0
    latency = 0.0
    status = STATUS_FAILED
    outcome = Outcome(False, 'deadline exceeded before the check could start')
    while True:
        timeout = spec.timeout
        limit = f'timeout {spec.timeout:g} s'
        if deadline_at is not None:
            remaining = deadline_at - time.monotonic()
            if remaining <= 0:
                break
            if remaining < timeout:
                timeout = remaining
                limit = f'run deadline {deadline:g} s' if deadline is not None else 'run deadline'
        attempts += 1
        started = time.monotonic()
        status, outcome = _attempt(probe, config, timeout, limit)
        latency = time.monotonic() - started
        if status == STATUS_OK and spec.latency_budget is not None and latency > spec.latency_budget:
            status = STATUS_FAILED
            outcome = Outcome(False, f'latency {latency:.3f}s over budget {spec.latency_budget:g}s', outcome.details)
        if status != STATUS_FAILED or attempts > retries:
            break
        if deadline_at is not None and time.monotonic() + delay >= deadline_at:
            break
        time.sleep(delay)
    return CheckResult(
        name=spec.name,
        type=spec.type,
        healthy=status == STATUS_OK,
        status=status,
        message=outcome.message,
        latency_seconds=round(latency, 6),
        attempts=attempts,
        details=dict(outcome.details),
    )


def _attempt(probe: Probe, config: t.Any, timeout: float, limit: str = '') -> tuple[str, Outcome]:
    try:
        outcome = probe(config, timeout)
    except CheckConfigError as exc:
        return STATUS_ERROR, Outcome(False, str(exc))
    except DeadlineExceeded as exc:
        context = getattr(config, 'context', None)
        return STATUS_FAILED, Outcome(False, f'{exc} ({limit})' if limit else str(exc), context() if context else {})
    except Exception as exc:  # pylint: disable=broad-exception-caught
        # A probe must never take the whole run down: anything it raises is this check's failure.
        context = getattr(config, 'context', None)
        return STATUS_FAILED, Outcome(False, describe_error(exc), context() if context else {})
    return (STATUS_OK if outcome.healthy else STATUS_FAILED), outcome


def summarize(results: t.Sequence[CheckResult]) -> str:
    """One line for humans, e.g. ``2/3 checks healthy; failed: healthz (HTTP 503 not in [200])``."""
    healthy = sum(1 for result in results if result.healthy)
    text = f'{healthy}/{len(results)} checks healthy'
    failed = [f'{result.name} ({result.message})' for result in results if not result.healthy]
    if failed:
        text += '; failed: ' + ', '.join(failed)
    return text


# ---------------------------------------------------------------------------
# One run, as the health_check module asks for it
# ---------------------------------------------------------------------------

def build_specs(checks: t.Iterable[t.Mapping[str, t.Any]], default_timeout: float) -> list[CheckSpec]:
    """Turn the validated ``checks`` option of the module into specs; options that are None are left out."""
    specs = []
    for check in checks:
        options = {key: value for key, value in check.items() if key not in COMMON_OPTIONS and value is not None}
        timeout = check.get('timeout')
        specs.append(CheckSpec(name=check['name'], type=check['type'], options=options,
                               timeout=timeout if timeout is not None else default_timeout, latency_budget=check.get('latency_budget')))
    return specs


def settings_errors(specs: t.Sequence[CheckSpec], tenant: str | None, **run_options: t.Any) -> list[str]:
    """One message per invalid run-wide setting (see :func:`validate_run_options`), an empty tenant or repeated check names."""
    errors = validate_run_options(**run_options)
    if not tenant:
        errors.append('tenant must not be empty')
    duplicates = duplicate_names(specs)
    if duplicates:
        errors.append(f"check names must be unique; repeated: {', '.join(mask_url_credentials(name) for name in duplicates)}")
    return errors


@dataclasses.dataclass
class Report:
    """The results of one run and how long it took."""

    results: list[CheckResult]
    duration_seconds: float

    @property
    def healthy(self) -> bool:
        """Whether every check is healthy."""
        return all(result.healthy for result in self.results)

    @property
    def summary(self) -> str:
        """One line for humans (see :func:`summarize`)."""
        return summarize(self.results)

    def outcome(self, metrics_path: str | None) -> dict[str, t.Any]:
        """The module's result (the metrics file not written yet)."""
        return {
            'changed': False,
            'healthy': self.healthy,
            'summary': self.summary,
            'failed_checks': [result.name for result in self.results if not result.healthy],
            'checks': [result.to_dict() for result in self.results],
            'duration_seconds': self.duration_seconds,
            'metrics_path': metrics_path,
            'metrics_written': False,
        }


def run_report(specs: t.Sequence[CheckSpec], **run_options: t.Any) -> Report:
    """:func:`run_checks`, timed."""
    started = time.monotonic()
    results = run_checks(specs, **run_options)
    return Report(results, round(time.monotonic() - started, 6))


# ---------------------------------------------------------------------------
# The backend model's definition of "healthy", as one http(s) check
# ---------------------------------------------------------------------------

MODEL_CHECK_NAME = 'http_health'


def _status_codes(value: t.Any) -> list[int]:
    """The expected status codes as integers; digit strings (from ``-e`` on the command line) are read as numbers."""
    if isinstance(value, (str, bytes)) or not isinstance(value, t.Iterable):
        value = [value]
    codes = []
    for item in value:
        code = int(item.strip()) if isinstance(item, str) and item.strip().isdigit() else item
        if isinstance(code, bool) or not isinstance(code, int) or not 100 <= code <= 599:
            raise CheckConfigError(f'the expected status codes must be HTTP status codes between 100 and 599 (got {code!r})')
        codes.append(code)
    if not codes:
        raise CheckConfigError('the expected status codes must not be empty')
    return codes


def model_http_check(
    url: t.Any,
    *,
    name: str = MODEL_CHECK_NAME,
    expected_status: t.Any = (200,),
    body_regex: t.Any = '',
    json_field: t.Any = '',
    json_value: t.Any = 'ok',
    validate_certs: bool = True,
    username: t.Any = '',
    password: t.Any = '',
    latency_budget: float | None = None,
) -> dict[str, t.Any]:
    """The backend model's health definition as one check of the ``health_check`` format.

    The check is ``https`` for an ``https://`` URL, else ``http``. It passes when the status is one of
    ``expected_status`` and, when given, the body matches ``body_regex`` and the JSON field ``json_field``
    has the value ``json_value``. Empty ``body_regex`` and ``json_field`` check no body at all, so a page of
    any content type (an HTML login page) is healthy on its status alone. Options left empty are left out.
    Bad values raise :class:`CheckConfigError`, with the check's own validation (the URL's rules included).
    """
    if not isinstance(url, str) or not url:
        raise CheckConfigError(f'the health URL must be a non-empty string (got {type(url).__name__})')
    check: dict[str, t.Any] = {
        'name': name,
        'type': 'https' if url.lower().startswith('https://') else 'http',
        'url': url,
        'status_codes': _status_codes(expected_status),
        'validate_certs': validate_certs,
    }
    if not isinstance(validate_certs, bool):
        raise CheckConfigError(f'validate_certs must be a boolean (got {validate_certs!r})')
    for key, value in (('body_regex', body_regex), ('json_field', json_field)):
        if value is None or value == '':
            continue
        if not isinstance(value, str):
            raise CheckConfigError(f'{key} must be a string (got {type(value).__name__})')
        check[key] = value
    if 'json_field' in check:
        check['json_value'] = as_text(json_value)
    if username:
        check['url_username'] = username
        check['url_password'] = password or ''
    elif password:
        raise CheckConfigError('a health password needs a health user name')
    if latency_budget is not None:
        check['latency_budget'] = float(latency_budget)
    options = {key: value for key, value in check.items() if key not in COMMON_OPTIONS}
    validate_spec(CheckSpec(name=name, type=check['type'], options=options, latency_budget=check.get('latency_budget')))
    return check
