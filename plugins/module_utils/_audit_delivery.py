# Copyright (c) Dihya ops maintainers
# GNU General Public License v3.0+ (see LICENSES/GPL-3.0-or-later.txt or https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later

# This module utility is PRIVATE to the collection. It can change at any time.

"""Deliver audit records to the network sinks through the spool: queue, send with retries until a deadline, report.

The audit file written by ``_audit.AuditLog`` is the source of truth. :func:`forward` queues a record for every
sink in the spool (``_audit_spool``), even for a sink whose configuration is wrong, so that nothing is lost, then
delivers what the spool holds, oldest first, through each sink's sender (``_audit_sink_senders``). A record
leaves the spool only once its sink acknowledged it, so delivery is at least once: a receiver may see a
duplicate when an acknowledgement is lost, and recognises it by the record's id. A record the sink refused for
good moves to ``<sink>/rejected/`` and is reported, never deleted. Each sink gets a fair share of the time
left, so one silent sink cannot starve the others. The engine knows nothing about Ansible.
"""

from __future__ import annotations

import dataclasses
import time
import typing as t

from ansible_collections.dihya.ops.plugins.module_utils._audit_sink_config import PlannedSink
from ansible_collections.dihya.ops.plugins.module_utils._audit_spool import Spool, SpoolError, SpoolItem

# The senders (http.client, ssl, the wire formats) and the delivery metrics (prometheus_client) are imported by the
# functions that use them, when a run has network sinks: a module's own operation events have none, and a module
# imports its module_utils from its AnsiballZ archive, compiled again on every run.
if t.TYPE_CHECKING:  # pragma: no cover
    from ansible_collections.dihya.ops.plugins.module_utils._audit_sink_senders import Sender

DEFAULT_DELIVERY_TIMEOUT = 10.0
DEFAULT_MAX_ATTEMPTS = 3
DEFAULT_MAX_ITEMS = 1000


@dataclasses.dataclass
class SinkReport:
    """What happened to one sink's records in one run."""

    name: str
    type: str
    endpoint: str
    queued: int = 0      # records put in the spool by this run
    sent: int = 0        # records the sink acknowledged in this run (new ones and older spooled ones)
    failed: int = 0      # records tried in this run and not acknowledged (still pending, or rejected)
    pending: int = 0     # records left in the spool after this run
    rejected: int = 0    # records the sink refused for good, kept in <spool>/<sink>/rejected/
    error: str | None = None

    def as_dict(self) -> dict[str, t.Any]:
        return dataclasses.asdict(self)


TOTAL_KEYS = ('queued', 'sent', 'failed', 'pending', 'rejected')


def totals(reports: t.Iterable[SinkReport]) -> dict[str, int]:
    reports = list(reports)
    return {key: sum(getattr(report, key) for report in reports) for key in TOTAL_KEYS}


def deliver(spool: Spool, sender: Sender, report: SinkReport, *, deadline: float, max_attempts: int = DEFAULT_MAX_ATTEMPTS,
            max_items: int = DEFAULT_MAX_ITEMS, sleep: t.Callable[[float], None] = time.sleep) -> SinkReport:
    """Send what the spool holds for one sink, oldest first, until ``deadline`` (a ``time.monotonic()`` value).

    Each record is tried at most ``max_attempts`` times in this run, and at most ``max_items`` records are
    taken. Whatever is not acknowledged stays in the spool for the next run. The caller holds the spool lock.
    """
    from ansible_collections.dihya.ops.plugins.module_utils._audit_sink_senders import OK  # pylint: disable=import-outside-toplevel
    items = spool.items(report.name, max_items)
    records: dict[str, dict[str, t.Any]] = {}
    waiting: list[SpoolItem] = []
    for item in items:
        try:
            records[item.path] = spool.read(item)
            waiting.append(item)
        except SpoolError as exc:
            spool.reject(item, str(exc))
            report.failed += 1
            report.error = str(exc)
    final: dict[str, str] = {}
    for attempt in range(max(1, max_attempts)):
        if not waiting or time.monotonic() >= deadline:
            break
        if attempt:
            pause = min(0.2 * 2 ** (attempt - 1), deadline - time.monotonic())
            if pause > 0:
                sleep(pause)
        waiting = _attempt(spool, sender, report, waiting, records, final, deadline)
    if waiting and time.monotonic() >= deadline and report.error is None:
        report.error = f'{sender.config.endpoint}: delivery time is up; the rest stays in the spool'
    report.failed += sum(1 for status in final.values() if status != OK)
    report.pending = spool.count(report.name)
    report.rejected = spool.rejected(report.name)
    if not report.failed and not report.pending:
        report.error = None
    return report


def _attempt(spool: Spool, sender: Sender, report: SinkReport, waiting: list[SpoolItem], records: dict[str, dict[str, t.Any]],
             final: dict[str, str], deadline: float) -> list[SpoolItem]:
    """One pass over ``waiting`` in batches; returns what is still to send."""
    from ansible_collections.dihya.ops.plugins.module_utils._audit_sink_senders import OK, REJECT, RETRY  # pylint: disable=import-outside-toplevel
    still: list[SpoolItem] = []
    position = 0
    while position < len(waiting):
        remaining = deadline - time.monotonic()
        if remaining <= 0:
            still.extend(waiting[position:])
            break
        batch = waiting[position:position + sender.batch_size]
        position += len(batch)
        outcomes = sender.send([records[item.path] for item in batch], remaining)
        # A sender gives one outcome per record; a record it gave none for stays in the spool for the next run.
        for item, outcome in zip(batch, outcomes, strict=False):
            final[item.path] = outcome.status
            if outcome.status == OK:
                spool.ack(item)
                report.sent += 1
            elif outcome.status == REJECT:
                spool.reject(item, outcome.message)
                report.error = outcome.message
            else:
                still.append(item)
                report.error = outcome.message
        if all(outcome.status == RETRY for outcome in outcomes):
            # The sink is not answering: keep the order and try the rest on the next attempt.
            still.extend(waiting[position:])
            break
    return still


@dataclasses.dataclass
class DeliveryResult:
    reports: list[SinkReport]
    orphaned: list[dict[str, t.Any]] = dataclasses.field(default_factory=list)
    metrics_written: bool = False
    warnings: list[str] = dataclasses.field(default_factory=list)

    def total(self) -> dict[str, int]:
        result = totals(self.reports)
        result['pending'] += sum(item['pending'] for item in self.orphaned)
        result['rejected'] += sum(item['rejected'] for item in self.orphaned)
        return result

    def as_dict(self) -> dict[str, t.Any]:
        return {'total': self.total(), 'sinks': [report.as_dict() for report in self.reports], 'orphaned': list(self.orphaned)}


def _orphans(spool: Spool, planned: t.Sequence[PlannedSink]) -> list[dict[str, t.Any]]:
    """Spool directories of sinks no longer configured, when they still hold records."""
    names = {entry.name for entry in planned}
    found = []
    for name in spool.sinks():
        if name in names:
            continue
        pending, rejected = spool.count(name), spool.rejected(name)
        if pending or rejected:
            found.append({'name': name, 'directory': spool.sink_dir(name), 'pending': pending, 'rejected': rejected})
    return found


def preview(spool: Spool, planned: t.Sequence[PlannedSink]) -> DeliveryResult:
    """What a run would queue, without writing or sending anything (check mode)."""
    spool.check()
    reports = []
    for entry in planned:
        report = SinkReport(entry.name, entry.type, entry.endpoint, queued=1, error=entry.error)
        report.pending = spool.count(entry.name) + 1
        report.rejected = spool.rejected(entry.name)
        reports.append(report)
    return DeliveryResult(reports, _orphans(spool, planned))


def forward(spool: Spool, record: t.Mapping[str, t.Any], planned: t.Sequence[PlannedSink], *,
            delivery_timeout: float = DEFAULT_DELIVERY_TIMEOUT, max_attempts: int = DEFAULT_MAX_ATTEMPTS, max_items: int = DEFAULT_MAX_ITEMS,
            metrics_path: str | None = None, hostname: str | None = None) -> DeliveryResult:
    """Queue ``record`` for every sink (invalid ones included, so it is kept), then deliver what the spool holds.

    Raises :class:`SpoolError` when the record cannot be queued; delivery problems only show in the reports.
    """
    deadline = time.monotonic() + delivery_timeout
    reports = [SinkReport(entry.name, entry.type, entry.endpoint, error=entry.error) for entry in planned]
    for entry, report in zip(planned, reports, strict=True):
        spool.put(entry.name, record)
        report.queued = 1
    result = DeliveryResult(reports)
    if not planned:
        # No network sink: nothing to send and no metrics to write; only report what an older configuration left.
        result.orphaned = _orphans(spool, planned)
        return result
    from ansible_collections.dihya.ops.plugins.module_utils._audit_sink_senders import make_sender  # pylint: disable=import-outside-toplevel
    from ansible_collections.dihya.ops.plugins.module_utils._metrics_delivery import write_delivery_metrics  # pylint: disable=import-outside-toplevel
    with spool.lock(delivery_timeout) as locked:
        for position, (entry, report) in enumerate(zip(planned, reports, strict=True)):
            if not locked:
                report.error = report.error or 'another run holds the spool lock; the records stay in the spool for the next run'
            elif entry.config is None:
                report.failed = 1
            else:
                # Each sink gets a fair share of the time left, so one silent sink cannot starve the others.
                share = (deadline - time.monotonic()) / (len(planned) - position)
                deliver(spool, make_sender(entry.config, hostname), report, deadline=time.monotonic() + share,
                        max_attempts=max_attempts, max_items=max_items)
            report.pending = spool.count(entry.name)
            report.rejected = spool.rejected(entry.name)
        result.orphaned = _orphans(spool, planned)
        if metrics_path and locked:
            result.warnings.extend(write_delivery_metrics(metrics_path, reports))
            result.metrics_written = True
        elif metrics_path:
            result.warnings.append(f'metrics not written: another run holds the spool lock of {spool.directory}')
    return result
