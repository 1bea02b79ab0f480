# Copyright (c) Dihya ops maintainers
# GNU General Public License v3.0+ (see LICENSES/GPL-3.0-or-later.txt or https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later

# This module utility is PRIVATE to the collection. It can change at any time.

"""Write Prometheus node_exporter textfile collector files: the one metrics writer of dihya.ops, and the health check families.

Every metrics file of the collection is written here (:func:`write_families`) and read back here
(:func:`read_samples`), and only this module imports ``prometheus_client``. The health check families are
written by :func:`write_health_metrics`; the audit delivery families by ``_metrics_delivery``.

The file is replaced atomically (written next to the target, fsynced, then renamed), so the collector
never reads a half-written file. A failing check keeps the last-success timestamp found in the
previous version of the file.

A metrics file is the collection's own output, rewritten on every run: a regular file at the path is
replaced (and only if it is still the same file when the new one is renamed over it); anything else
there (a symbolic link, a directory, a FIFO, a device, a socket), or a symbolic link in the directories
on the way, is refused (see ``_safe_write``).
"""

from __future__ import annotations

import dataclasses
import os
import stat
import time
import traceback
import typing as t

from ansible_collections.dihya.ops.plugins.module_utils._safe_write import UnsafeDestination, atomic_write, check_destination

try:
    from prometheus_client import CollectorRegistry, generate_latest
    from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily
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


class UnparsableMetrics(MetricsError):
    """The previous metrics file is not in the exposition format; ``detail`` says why."""

    def __init__(self, path: str, detail: str) -> None:
        super().__init__(f'cannot parse the existing metrics file {path}: {detail}')
        self.detail = detail


@dataclasses.dataclass
class Family:
    """One metric family to write: its samples by label values, in the order they were first set."""

    name: str
    documentation: str
    labels: tuple[str, ...]
    kind: t.Literal['gauge', 'counter'] = 'gauge'
    samples: dict[tuple[str, ...], float] = dataclasses.field(default_factory=dict)

    def set(self, labels: t.Sequence[str], value: float) -> None:
        """Set the sample of ``labels`` (a later value for the same labels replaces the earlier one, in place)."""
        self.samples[tuple(labels)] = float(value)


class Sample(t.NamedTuple):
    """One sample read from a metrics file."""

    name: str
    labels: dict[str, str]
    value: float


def check_metrics_path(path: str) -> None:
    """Raise :class:`MetricsError` unless ``path`` can be written.

    Its directory must already exist and be reached without symbolic links; the path itself must be missing or a
    regular file (a previous metrics file, replaced on every run).
    """
    if '\x00' in path:
        raise MetricsError(f'metrics_path must not contain a NUL character: {path!r}')
    target = os.path.abspath(path)
    directory = os.path.dirname(target)
    if os.path.isdir(path) and not os.path.islink(path):
        raise MetricsError(f'metrics_path is a directory: {path}')
    try:
        check_destination(target, force=True)
    except UnsafeDestination as exc:
        raise MetricsError(f'metrics_path: {exc}') from None
    except FileNotFoundError:
        raise MetricsError(f'the directory of metrics_path does not exist: {directory}') from None


class _Module(t.Protocol):
    """The part of ``AnsibleModule`` that :func:`preflight` uses."""

    check_mode: bool

    def warn(self, warning: str) -> None: ...

    def fail_json(self, msg: str, **kwargs: t.Any) -> t.NoReturn: ...


def preflight(module: _Module, path: str | None, /, **outcome: t.Any) -> None:
    """What every module writing a metrics file checks before it works; fails the module (with ``outcome``) if it cannot write.

    No ``path``: nothing to check. The library must be importable, even in check mode (the real run would need
    it). A name not ending in ``.prom`` gets a warning: the node_exporter textfile collector ignores it. A
    destination that cannot be written fails the module, except in check mode where it is a warning: the
    directory may be created by an earlier task of the real run.
    """
    if not path:
        return
    if not HAS_PROMETHEUS_CLIENT:
        # Imported here: module_utils that only write metrics files do not depend on Ansible.
        from ansible.module_utils.basic import missing_required_lib

        module.fail_json(msg=missing_required_lib('prometheus_client'), exception=PROMETHEUS_CLIENT_IMPORT_ERROR, **outcome)
    if not path.endswith('.prom'):
        module.warn(f'metrics_path {path} does not end in .prom; the node_exporter textfile collector ignores such files')
    try:
        check_metrics_path(path)
    except MetricsError as exc:
        if not module.check_mode:
            module.fail_json(msg=str(exc), **outcome)
        module.warn(f'{exc} (it must exist when the task runs outside check mode)')


def require_library() -> None:
    """Raise :class:`MetricsError` when ``prometheus_client`` cannot be imported."""
    if not HAS_PROMETHEUS_CLIENT:
        raise MetricsError('writing metrics needs the prometheus_client Python library')


def write_textfile(path: str, registry: t.Any, mode: int = FILE_MODE) -> None:
    """Write the exposition text of ``registry`` to ``path`` atomically, with permissions ``mode`` whatever the umask.

    The rule of :func:`check_metrics_path` applies, checked again when the new file is renamed into place.
    """
    require_library()
    data = generate_latest(registry)
    try:
        with atomic_write(os.path.abspath(path), mode=mode, force=True) as handle:
            handle.write(data)
    except UnsafeDestination as exc:
        raise MetricsError(f'metrics_path: {exc}') from None
    except OSError as exc:
        raise MetricsError(f'cannot write {path}: {exc}') from exc


class _Collector:
    """A ``prometheus_client`` collector of fixed :class:`Family` values."""

    def __init__(self, families: t.Sequence[Family]) -> None:
        self.families = families

    def collect(self) -> t.Iterator[t.Any]:
        for family in self.families:
            built = (CounterMetricFamily if family.kind == 'counter' else GaugeMetricFamily)(family.name, family.documentation, labels=family.labels)
            for labels, value in family.samples.items():
                built.add_metric(labels, value)
            yield built


def write_families(path: str, families: t.Sequence[Family], mode: int = FILE_MODE) -> None:
    """Replace the file at ``path`` with ``families``, in that order (see :func:`write_textfile`)."""
    require_library()
    registry = CollectorRegistry(auto_describe=False)
    registry.register(_Collector(families))
    write_textfile(path, registry, mode)


def read_textfile(path: str) -> str | None:
    """The text of an existing metrics file, or None when there is none; never follows a link nor blocks on a FIFO.

    Raises :class:`MetricsError` when ``path`` is not a regular file or cannot be read or decoded.
    """
    try:
        fd = os.open(path, os.O_RDONLY | os.O_NOFOLLOW | os.O_NONBLOCK | getattr(os, 'O_CLOEXEC', 0))
    except FileNotFoundError:
        return None
    except OSError as exc:
        raise MetricsError(f'cannot read {path}: {exc}') from exc
    try:
        if not stat.S_ISREG(os.fstat(fd).st_mode):
            raise MetricsError(f'cannot read {path}: not a regular file')
        os.set_blocking(fd, True)
        with os.fdopen(fd, 'rb') as handle:
            fd = -1
            return handle.read().decode('utf-8')
    except (OSError, UnicodeDecodeError) as exc:
        raise MetricsError(f'cannot read {path}: {exc}') from exc
    finally:
        if fd >= 0:
            os.close(fd)


def read_samples(path: str) -> list[Sample]:
    """Every sample of an existing metrics file (an empty list when there is none).

    Raises :class:`MetricsError` when the file cannot be read (see :func:`read_textfile`), :class:`UnparsableMetrics`
    when it is not in the exposition format.
    """
    require_library()
    text = read_textfile(path)
    if text is None:
        return []
    try:
        return [Sample(sample.name, dict(sample.labels), float(sample.value))
                for family in text_string_to_metric_families(text) for sample in family.samples]
    except (ValueError, TypeError, KeyError, IndexError) as exc:
        raise UnparsableMetrics(path, str(exc)) from exc


def read_last_success(path: str, tenant: str) -> dict[tuple[str, str], float]:
    """Last-success timestamps by (check, type) for ``tenant`` from an existing metrics file.

    A missing file gives an empty mapping; an unreadable or unparsable one raises :class:`MetricsError`.
    """
    return {(labels['check'], labels['type']): value for name, labels, value in read_samples(path)
            if name == LAST_SUCCESS and labels.get('tenant') == tenant and 'check' in labels and 'type' in labels}


def write_health_metrics(path: str, results: t.Sequence[CheckResult], tenant: str, now: float | None = None) -> list[str]:
    """Replace the file at ``path`` with gauges for ``results``; return warnings (empty when none).

    Gauges, labelled ``check``, ``type`` and ``tenant``:

    - ``dihya_health_check_up``: 1 when the check is healthy, else 0.
    - ``dihya_health_check_duration_seconds``: how long the last attempt took.
    - ``dihya_health_check_last_success_timestamp_seconds``: when the check last passed (0 if never).

    and ``dihya_health_check_healthy`` (label ``tenant``): 1 when every check is healthy.
    """
    require_library()
    check_metrics_path(path)
    now = time.time() if now is None else now
    warnings = []
    try:
        previous = read_last_success(path, tenant)
    except MetricsError as exc:
        previous = {}
        warnings.append(f'{exc}; last-success timestamps start again from this run')

    up = Family(UP, 'Whether the health check passed (1) or not (0).', CHECK_LABELS)
    duration = Family(DURATION, 'Duration of the last attempt of the health check.', CHECK_LABELS)
    last_success = Family(LAST_SUCCESS, 'Unix time of the last passing run of the health check, 0 if never.', CHECK_LABELS)
    healthy = Family(HEALTHY, 'Whether every health check of the tenant passed (1) or not (0).', ('tenant',))
    for result in results:
        labels = (result.name, result.type, tenant)
        up.set(labels, 1 if result.healthy else 0)
        duration.set(labels, result.latency_seconds)
        last_success.set(labels, now if result.healthy else previous.get((result.name, result.type), 0))
    healthy.set((tenant,), 1 if all(result.healthy for result in results) else 0)

    write_families(path, [up, duration, last_success, healthy], FILE_MODE)
    return warnings
