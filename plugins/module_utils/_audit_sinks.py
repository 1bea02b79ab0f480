# Copyright (c) Dihya ops maintainers
# GNU General Public License v3.0+ (see LICENSES/GPL-3.0-or-later.txt or https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later

# This module utility is PRIVATE to the collection. It can change at any time.

"""Former home of audit delivery, kept only so that older import lines keep working; import from the modules below.

- ``_audit_sink_config``: the sink options, their validation and names (:func:`parse_sink`, :func:`plan_sinks`);
- ``_audit_wire``: the bytes a record becomes for each sink type (RFC 5424 syslog, ``_bulk``, HEC);
- ``_audit_sink_senders``: sending batches to a sink and telling what it acknowledged;
- ``_audit_spool``: the durable local spool (:class:`Spool`);
- ``_audit_delivery``: queue, deliver with retries until a deadline, report (:func:`forward`, :func:`preview`);
- ``_metrics_delivery``: the delivery metric families, written by ``_metrics``.
"""

from __future__ import annotations

from ansible_collections.dihya.ops.plugins.module_utils._audit_delivery import (
    DEFAULT_DELIVERY_TIMEOUT,
    DEFAULT_MAX_ATTEMPTS,
    DEFAULT_MAX_ITEMS,
    DeliveryResult,
    SinkReport,
    deliver,
    forward,
    preview,
    totals,
)
from ansible_collections.dihya.ops.plugins.module_utils._audit_sink_config import PlannedSink, SinkConfig, SinkConfigError, parse_sink, plan_sinks
from ansible_collections.dihya.ops.plugins.module_utils._audit_sink_senders import make_sender
from ansible_collections.dihya.ops.plugins.module_utils._audit_spool import Spool, SpoolError
from ansible_collections.dihya.ops.plugins.module_utils._metrics import HAS_PROMETHEUS_CLIENT, PROMETHEUS_CLIENT_IMPORT_ERROR, MetricsError, check_metrics_path
from ansible_collections.dihya.ops.plugins.module_utils._metrics_delivery import write_delivery_metrics

__all__ = [
    'DEFAULT_DELIVERY_TIMEOUT',
    'DEFAULT_MAX_ATTEMPTS',
    'DEFAULT_MAX_ITEMS',
    'HAS_PROMETHEUS_CLIENT',
    'PROMETHEUS_CLIENT_IMPORT_ERROR',
    'DeliveryResult',
    'MetricsError',
    'PlannedSink',
    'SinkConfig',
    'SinkConfigError',
    'SinkReport',
    'Spool',
    'SpoolError',
    'check_metrics_path',
    'deliver',
    'forward',
    'make_sender',
    'parse_sink',
    'plan_sinks',
    'preview',
    'totals',
    'write_delivery_metrics',
]
