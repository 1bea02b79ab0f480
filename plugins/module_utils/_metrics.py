# Copyright (c) Dihya ops maintainers
# GNU General Public License v3.0+ (see LICENSES/GPL-3.0-or-later.txt or https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later

# This module utility is PRIVATE to the collection. It can change at any time.

"""Write health check results as a Prometheus node_exporter textfile collector file.

The file is replaced atomically (written next to the target, then renamed), so the collector
never reads a half-written file. A failing check keeps the last-success timestamp found in the
previous version of the file.
"""

from __future__ import annotations

import os
import time
import traceback
import typing as t

try:
    from prometheus_client import CollectorRegistry, Gauge, write_to_textfile
    from prometheus_client.parser import text_string_to_metric_families
except ImportError:  # pragma: no cover - exercised by patching HAS_PROMETHEUS_CLIENT
    HAS_PROMETHEUS_CLIENT = False
    PROMETHEUS_CLIENT_IMPORT_ERROR: str | None = traceback.format_exc()
else:
    HAS_PROMETHEUS_CLIENT = True
    PROMETHEUS_CLIENT_IMPORT_ERROR = None

if t.TYPE_CHECKING:  # pragma: no cover
    from ansible_collections.dihya.ops.plugins.module_utils._health import CheckResult


PREFIX = 'dihya_health_check'
UP = f'{PREFIX}_up'
DURATION = f'{PREFIX}_duration_seconds'
LAST_SUCCESS = f'{PREFIX}_last_success_timestamp_seconds'
HEALTHY = f'{PREFIX}_healthy'
CHECK_LABELS = ('check', 'type', 'tenant')
FILE_MODE = 0o644


class MetricsError(Exception):
    """The metrics file cannot be read or written."""


def check_metrics_path(path: str) -> None:
    """Raise :class:`MetricsError` unless ``path`` can be written: its directory must already exist."""
    directory = os.path.dirname(os.path.abspath(path))
    if not os.path.isdir(directory):
        raise MetricsError(f'the directory of metrics_path does not exist: {directory}')
    if os.path.isdir(path):
        raise MetricsError(f'metrics_path is a directory: {path}')


def read_last_success(path: str, tenant: str) -> dict[tuple[str, str], float]:
    """Last-success timestamps by (check, type) for ``tenant`` from an existing metrics file.

    A missing file gives an empty mapping; an unreadable or unparsable one raises :class:`MetricsError`.
    """
    _require_library()
    try:
        with open(path, encoding='utf-8') as handle:
            text = handle.read()
    except FileNotFoundError:
        return {}
    except (OSError, UnicodeDecodeError) as exc:
        raise MetricsError(f'cannot read {path}: {exc}') from exc
    found: dict[tuple[str, str], float] = {}
    try:
        for family in text_string_to_metric_families(text):
            if family.name != LAST_SUCCESS:
                continue
            for sample in family.samples:
                labels = sample.labels
                if labels.get('tenant') == tenant and 'check' in labels and 'type' in labels:
                    found[(labels['check'], labels['type'])] = float(sample.value)
    except (ValueError, TypeError, KeyError, IndexError) as exc:
        raise MetricsError(f'cannot parse the existing metrics file {path}: {exc}') from exc
    return found


def write_health_metrics(path: str, results: t.Sequence[CheckResult], tenant: str, now: float | None = None) -> list[str]:
    """Replace the file at ``path`` with gauges for ``results``; return warnings (empty when none).

    Gauges, labelled ``check``, ``type`` and ``tenant``:

    - ``dihya_health_check_up``: 1 when the check is healthy, else 0.
    - ``dihya_health_check_duration_seconds``: how long the last attempt took.
    - ``dihya_health_check_last_success_timestamp_seconds``: when the check last passed (0 if never).

    and ``dihya_health_check_healthy`` (label ``tenant``): 1 when every check is healthy.
    """
    _require_library()
    check_metrics_path(path)
    now = time.time() if now is None else now
    warnings = []
    try:
        previous = read_last_success(path, tenant)
    except MetricsError as exc:
        previous = {}
        warnings.append(f'{exc}; last-success timestamps start again from this run')

    registry = CollectorRegistry(auto_describe=True)
    up = Gauge(UP, 'Whether the health check passed (1) or not (0).', CHECK_LABELS, registry=registry)
    duration = Gauge(DURATION, 'Duration of the last attempt of the health check.', CHECK_LABELS, registry=registry)
    last_success = Gauge(LAST_SUCCESS, 'Unix time of the last passing run of the health check, 0 if never.', CHECK_LABELS, registry=registry)
    healthy = Gauge(HEALTHY, 'Whether every health check of the tenant passed (1) or not (0).', ('tenant',), registry=registry)

    for result in results:
        labels = (result.name, result.type, tenant)
        up.labels(*labels).set(1 if result.healthy else 0)
        duration.labels(*labels).set(result.latency_seconds)
        last_success.labels(*labels).set(now if result.healthy else previous.get((result.name, result.type), 0))
    healthy.labels(tenant).set(1 if all(result.healthy for result in results) else 0)

    # write_to_textfile creates its temporary file with the process umask; pin the mode to 0644.
    old_umask = os.umask(0o022)
    try:
        write_to_textfile(path, registry)
    except OSError as exc:
        raise MetricsError(f'cannot write {path}: {exc}') from exc
    finally:
        os.umask(old_umask)
    os.chmod(path, FILE_MODE)
    return warnings


def _require_library() -> None:
    if not HAS_PROMETHEUS_CLIENT:
        raise MetricsError('writing metrics needs the prometheus_client Python library')
