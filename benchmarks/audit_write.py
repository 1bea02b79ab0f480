"""Benchmark: the audit log writer against a plain fsync'd append of lines of the same size, in one run.

Times, on the same disk and in the same run (the rounds alternate, so that both see the same disk):

- the limit: ``os.write`` + ``os.fsync`` of one line per event to a file opened once with ``O_APPEND``;
- ``AuditLog.append([event])`` with ``fsync='always'``: lock, tail, sequence, HMAC, write and fsync per event;
- ``AuditLog.append(events)`` with ``fsync='batch'``: one lock and one fsync per call of ``--batch`` events.

Events are built beforehand (``build_event`` costs the caller the same whatever the log does; its own rate
is printed too). The logs written are verified at the end, and the verification rate is printed. Not a
test: it exits 0 whatever the figures are, and 1 only when a written log does not verify.

    .venv/bin/python benchmarks/audit_write.py [--events 2000] [--rounds 3] [--batch 100] [--dir /tmp]
"""

from __future__ import annotations

import argparse
import os
import pathlib
import shutil
import statistics
import sys
import tempfile
import time
import typing as t

ROOT = pathlib.Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / ".cache" / "collections"))

from ansible_collections.dihya.ops.plugins.module_utils._audit import (  # noqa: E402  pylint: disable=wrong-import-position
    AuditLog,
    AuditSettings,
    build_event,
    verify,
)

KEY = b"benchmark-chain-key-0123456789ab"
RATIO_GOAL = 0.5


def events(settings: AuditSettings, count: int) -> list[dict[str, t.Any]]:
    """Typical events: a pseudonymised user, a tenant, a route, a few labels and details."""
    return [
        build_event(action="restart_services.finished", category="ops", outcome="success", settings=settings,
                    user=f"user{index % 50}@example.org", tenant="acme", route="/api/v1/ops/restart",
                    correlation_id=f"req-{index}", labels={"env": "prod", "operation": "restart_services"},
                    details={"hosts": ["web1", "web2"], "batch": index % 4, "duration_ms": 1234})
        for index in range(count)
    ]


def plain(path: pathlib.Path, lines: list[bytes]) -> float:
    """The limit: one write and one fsync per line, the file opened once."""
    fd = os.open(path, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o600)
    try:
        started = time.perf_counter()
        for line in lines:
            os.write(fd, line)
            os.fsync(fd)
        return time.perf_counter() - started
    finally:
        os.close(fd)


def audit(path: pathlib.Path, settings: AuditSettings, batch: list[dict[str, t.Any]], size: int) -> float:
    log = AuditLog(str(path), settings)
    started = time.perf_counter()
    for start in range(0, len(batch), size):
        log.append(batch[start:start + size])
    return time.perf_counter() - started


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n", 1)[0])
    parser.add_argument("--events", type=int, default=2000, help="events per round and per mode")
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--batch", type=int, default=100, help="events per append() call in batch mode")
    parser.add_argument("--dir", default=tempfile.gettempdir())
    args = parser.parse_args()
    always = AuditSettings(key=KEY, fsync="always")
    batched = AuditSettings(key=KEY, fsync="batch")
    work = pathlib.Path(tempfile.mkdtemp(prefix="dihya-bench-audit-", dir=args.dir))
    load_before = os.getloadavg()[0]
    try:
        started = time.perf_counter()
        batch = events(always, args.events)
        build_rate = args.events / (time.perf_counter() - started)
        # Lines of the same size as the records: measured on a first log, then padded plain lines.
        sample = work / "sample.log"
        audit(sample, batched, batch, args.batch)
        sizes = [len(line) for line in sample.read_bytes().splitlines(keepends=True)]
        lines = [b"x" * (size - 1) + b"\n" for size in sizes]
        mean_size = statistics.mean(sizes)

        times: dict[str, list[float]] = {"plain": [], "always": [], "batch": []}
        for round_number in range(args.rounds):
            times["plain"].append(plain(work / f"plain-{round_number}.log", lines))
            times["always"].append(audit(work / f"always-{round_number}.log", always, batch, 1))
            times["batch"].append(audit(work / f"batch-{round_number}.log", batched, batch, args.batch))
        rates = {mode: args.events / statistics.median(values) for mode, values in times.items()}

        verified = 0
        started = time.perf_counter()
        for round_number in range(args.rounds):
            for mode in ("always", "batch"):
                report = verify(str(work / f"{mode}-{round_number}.log"), KEY)
                if not report.ok or report.records != args.events:
                    print(f"{mode}-{round_number}.log does not verify: {report.error}")
                    return 1
                verified += report.records
        verify_rate = verified / (time.perf_counter() - started)
        load_after = os.getloadavg()[0]

        ratio = rates["always"] / rates["plain"]
        print(f"audit log writer vs plain fsync'd append, {args.events} events of {mean_size:.0f} bytes on average, "
              f"medians of {args.rounds} rounds, under {work}")
        print(f"load average (1 min): {load_before:.2f} at the start, {load_after:.2f} at the end")
        print(f"{'':44}{'events/s':>10}{'ratio':>9}{'goal':>8}")
        print(f"{'plain write + fsync per line (the limit)':44}{rates['plain']:>10.0f}")
        print(f"{'AuditLog.append, fsync=always':44}{rates['always']:>10.0f}{ratio:>8.2f}x{'>=0.5x':>8}"
              f"  {'met' if ratio >= RATIO_GOAL else 'NOT met'}")
        print(f"{f'AuditLog.append, fsync=batch ({args.batch}/call)':44}{rates['batch']:>10.0f}{rates['batch'] / rates['plain']:>8.2f}x")
        print(f"build_event alone: {build_rate:.0f} events/s; verify: {verify_rate:.0f} records/s")
    finally:
        shutil.rmtree(work, ignore_errors=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
