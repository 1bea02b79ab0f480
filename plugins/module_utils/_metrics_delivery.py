# Copyright (c) Dihya ops maintainers
# GNU General Public License v3.0+ (see LICENSES/GPL-3.0-or-later.txt or https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later

# This module utility is PRIVATE to the collection. It can change at any time.

"""The audit delivery metric families: what each run of ``audit_event`` queued, sent and left per network sink.

Written through the one metrics writer, ``_metrics``: the counters continue from the previous version of the
file, the gauges are this run's.
"""

from __future__ import annotations

import time
import typing as t

from ansible_collections.dihya.ops.plugins.module_utils._metrics import (
    Family,
    MetricsError,
    UnparsableMetrics,
    check_metrics_path,
    read_samples,
    require_library,
    write_families,
)

if t.TYPE_CHECKING:  # pragma: no cover
    from ansible_collections.dihya.ops.plugins.module_utils._audit_delivery import SinkReport

METRIC_PREFIX = 'dihya_audit_delivery'
EVENTS = f'{METRIC_PREFIX}_events'
PENDING = f'{METRIC_PREFIX}_pending'
REJECTED = f'{METRIC_PREFIX}_rejected'
LAST_SUCCESS = f'{METRIC_PREFIX}_last_success_timestamp_seconds'
STATES = ('queued', 'sent', 'failed')
FILE_MODE = 0o644


def write_delivery_metrics(path: str, reports: t.Sequence[SinkReport], now: float | None = None) -> list[str]:
    """Replace the textfile at ``path``; counters continue from the previous file. Returns warnings.

    - ``dihya_audit_delivery_events_total{sink,type,state}``: records queued, sent and failed (counters);
    - ``dihya_audit_delivery_pending{sink,type}`` and ``..._rejected{sink,type}``: records in the spool;
    - ``dihya_audit_delivery_last_success_timestamp_seconds{sink,type}``: last run that sent something.

    The caller holds the spool lock, so two runs never write the file at the same time.
    """
    require_library()
    check_metrics_path(path)
    now = time.time() if now is None else now
    warnings: list[str] = []
    counters: dict[tuple[str, str, str], float] = {}
    last_success: dict[tuple[str, str], float] = {}
    try:
        for name, labels, value in read_samples(path):
            if name == f'{EVENTS}_total' and {'sink', 'type', 'state'} <= set(labels):
                counters[(labels['sink'], labels['type'], labels['state'])] = value
            elif name == LAST_SUCCESS and {'sink', 'type'} <= set(labels):
                last_success[(labels['sink'], labels['type'])] = value
    except MetricsError as exc:
        reason = exc.detail if isinstance(exc, UnparsableMetrics) else str(exc)
        warnings.append(f'cannot read the previous metrics file {path} ({reason}); counters start again from zero')
        counters, last_success = {}, {}
    for report in reports:
        for state in STATES:
            key = (report.name, report.type, state)
            counters[key] = counters.get(key, 0.0) + getattr(report, state)
        if report.sent:
            last_success[(report.name, report.type)] = now

    events = Family(EVENTS, 'Audit records queued, sent and failed per network sink.', ('sink', 'type', 'state'), kind='counter')
    for event_labels, value in sorted(counters.items()):
        events.set(event_labels, value)
    pending = Family(PENDING, 'Audit records waiting in the spool for the sink.', ('sink', 'type'))
    rejected = Family(REJECTED, 'Audit records the sink refused for good, kept in the spool.', ('sink', 'type'))
    for report in reports:
        pending.set((report.name, report.type), report.pending)
        rejected.set((report.name, report.type), report.rejected)
    success = Family(LAST_SUCCESS, 'Unix time of the last run that delivered records to the sink.', ('sink', 'type'))
    for sink_labels, value in sorted(last_success.items()):
        success.set(sink_labels, value)
    write_families(path, [events, pending, rejected, success], FILE_MODE)
    return warnings
