"""Benchmark: packing files into a CAR with the IPFS export engine against ``ipfs-car pack``, in one run.

Builds a folder of ``--gib`` GiB (default 1) of random files of 64 MiB each, and a folder of a quarter of it
(hard links to the first files), cached between runs under ``--data-dir``. Then, for each folder:

* the engine packs it (``ExportRequest(..., wrap=False, force=True)``, profile ``ipfs-car`` then ``kubo``) in a
  child Python process, without Ansible's start-up, into a CAR under ``--out-dir`` (a tmpfs by default, so that
  the disk does not decide; the engine fsyncs, ipfs-car does not);
* ``ipfs-car pack FOLDER --output X.car`` (``.cache/npm-ipfs``, installed by ``scripts/bootstrap.sh test``) packs
  the same folder; its root CID must be the engine's ``ipfs-car`` root, so a wrong CAR is never reported as a
  timing;
* the wall time, CPU time and peak RSS of each child are read from ``wait4``.

It prints the throughput of each, the ratio engine / ipfs-car, and the engine's peak memory for both sizes (goal:
under 100 MiB, and the same for both).

    .venv/bin/python benchmarks/ipfs_export.py [--gib 1] [--data-dir DIR] [--out-dir DIR] [--repeat 1]

Not a test: it exits 0 whatever the figures are, and 1 only when a run fails or the roots differ.
"""

from __future__ import annotations

import argparse
import json
import os
import pathlib
import shutil
import subprocess
import sys
import time
import typing as t

ROOT = pathlib.Path(__file__).resolve().parents[1]
COLLECTIONS = ROOT / '.cache' / 'collections'
IPFS_CAR = ROOT / '.cache' / 'npm-ipfs' / 'node_modules' / '.bin' / 'ipfs-car'
FILE_MIB = 64
MEMORY_GOAL_MIB = 100

MAKE = """
import random, sys
folder, count, size = sys.argv[1], int(sys.argv[2]), int(sys.argv[3])
for index in range(count):
    with open(f'{folder}/audit-{index:03d}.log', 'wb') as handle:
        handle.write(random.Random(index).randbytes(size))
"""

ENGINE = """
import json, sys
from ansible_collections.dihya.ops.plugins.module_utils._ipfs_export import ExportRequest, export
source, dest, profile = sys.argv[1:4]
result = export(ExportRequest(paths=[source], dest=dest, allowed_roots=[source], wrap=False, force=True, profile=profile))
# VmHWM: this process's own peak RSS (the image before exec is not counted, unlike ru_maxrss).
hwm = next(int(line.split()[1]) for line in open('/proc/self/status') if line.startswith('VmHWM:'))
print(json.dumps({'root': result['root_cid'], 'size': result['car']['size'], 'hwm_mib': hwm / 1024}))
"""


def build(data_dir: pathlib.Path, gib: float) -> tuple[pathlib.Path, pathlib.Path]:
    """The full folder and the quarter folder, made once (random content, FILE_MIB MiB per file)."""
    count = max(4, round(gib * 1024 / FILE_MIB))
    full = data_dir / f'full-{count}x{FILE_MIB}'
    quarter = data_dir / f'quarter-{count // 4}x{FILE_MIB}'
    # The markers sit next to the folders: ipfs-car leaves hidden files out, the engine packs them.
    if not full.with_suffix('.complete').exists():
        shutil.rmtree(full, ignore_errors=True)
        full.mkdir(parents=True)
        # In a child process: this one stays small, so that the children it starts do not inherit a large peak RSS
        # (Linux counts the pre-exec image of a forked child in its ru_maxrss).
        subprocess.run([sys.executable, '-c', MAKE, str(full), str(count), str(FILE_MIB << 20)], check=True)
        full.with_suffix('.complete').touch()
    if not quarter.with_suffix('.complete').exists():
        shutil.rmtree(quarter, ignore_errors=True)
        quarter.mkdir(parents=True)
        for index in range(count // 4):
            os.link(full / f'audit-{index:03d}.log', quarter / f'audit-{index:03d}.log')
        quarter.with_suffix('.complete').touch()
    return full, quarter


def run_child(argv: list[str], env: dict[str, str] | None = None) -> dict[str, t.Any]:
    """Run ``argv`` and read its own wall time, CPU time and peak RSS with ``wait4``."""
    start = time.monotonic()
    process = subprocess.Popen(argv, stdout=subprocess.PIPE, stderr=subprocess.PIPE, env=env)
    assert process.stdout is not None and process.stderr is not None
    # The outputs are small (a line): read them after the child ends, then reap it with wait4 for its rusage.
    _pid, status, usage = os.wait4(process.pid, 0)
    wall = time.monotonic() - start
    out, err = process.stdout.read(), process.stderr.read()
    process.returncode = os.waitstatus_to_exitcode(status)
    if process.returncode != 0:
        raise SystemExit(f'{argv[0]} failed ({process.returncode}): {err.decode(errors="replace")[-2000:]}')
    return {'out': out.decode().strip(), 'wall': wall, 'cpu': usage.ru_utime + usage.ru_stime, 'rss_mib': usage.ru_maxrss / 1024}


def folder_bytes(path: pathlib.Path) -> int:
    return sum(item.stat().st_size for item in path.iterdir())


def engine(source: pathlib.Path, dest: pathlib.Path, profile: str) -> dict[str, t.Any]:
    dest.unlink(missing_ok=True)
    env = dict(os.environ, PYTHONPATH=str(COLLECTIONS))
    result = run_child([sys.executable, '-c', ENGINE, str(source), str(dest), profile], env)
    result.update(json.loads(result.pop('out')))
    result['rss_mib'] = result.pop('hwm_mib')
    dest.unlink()
    return result


def ipfs_car(source: pathlib.Path, dest: pathlib.Path) -> dict[str, t.Any]:
    dest.unlink(missing_ok=True)
    result = run_child([str(IPFS_CAR), 'pack', str(source), '--output', str(dest)])
    result['root'] = result.pop('out').split()[-1]
    result['size'] = dest.stat().st_size
    dest.unlink()
    return result


def run_tool(name: str, source: pathlib.Path, out_dir: pathlib.Path) -> dict[str, t.Any]:
    """One run of ``name`` (the engine with a profile, or ipfs-car) on ``source``."""
    if name == 'ipfs-car pack':
        return ipfs_car(source, out_dir / 'ipfs-car.car')
    return engine(source, out_dir / 'engine.car', name.split()[-1])


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split('\n', 1)[0])
    parser.add_argument('--gib', type=float, default=1.0, help='size of the full folder in GiB (default 1)')
    parser.add_argument('--data-dir', type=pathlib.Path, default=pathlib.Path('/tmp/dihya-bench-ipfs-data'))
    parser.add_argument('--out-dir', type=pathlib.Path,
                        default=pathlib.Path('/dev/shm/dihya-bench-ipfs') if os.path.isdir('/dev/shm') else pathlib.Path('/tmp/dihya-bench-ipfs'))
    parser.add_argument('--repeat', type=int, default=1, help='runs of each tool; the best is kept')
    args = parser.parse_args()
    if not IPFS_CAR.exists():
        print(f'{IPFS_CAR} is missing: run scripts/bootstrap.sh test', file=sys.stderr)
        return 1
    full, quarter = build(args.data_dir, args.gib)
    args.out_dir.mkdir(parents=True, exist_ok=True)
    rows = []
    try:
        for source in (quarter, full):
            size = folder_bytes(source)
            runs: dict[str, dict[str, t.Any]] = {}
            for name in ('engine ipfs-car', 'engine kubo', 'ipfs-car pack'):
                results = [run_tool(name, source, args.out_dir) for _run in range(args.repeat)]
                runs[name] = min(results, key=lambda item: item['wall'])
            if runs['engine ipfs-car']['root'] != runs['ipfs-car pack']['root']:
                print(f'roots differ for {source}: {runs["engine ipfs-car"]["root"]} != {runs["ipfs-car pack"]["root"]}', file=sys.stderr)
                return 1
            for name, result in runs.items():
                rows.append((size, name, result))
    finally:
        shutil.rmtree(args.out_dir, ignore_errors=True)
    print(f'{"input":>9}  {"tool":<16} {"wall s":>7} {"MiB/s":>7} {"CPU s":>7} {"peak RSS MiB":>12}  root')
    for size, name, result in rows:
        print(f'{size / (1 << 20):>5.0f} MiB  {name:<16} {result["wall"]:>7.2f} {size / (1 << 20) / result["wall"]:>7.1f} '
              f'{result["cpu"]:>7.2f} {result["rss_mib"]:>12.1f}  {result["root"]}')
    for size in sorted({row[0] for row in rows}):
        by = {name: result for row_size, name, result in rows if row_size == size}
        ours, theirs = by['engine ipfs-car'], by['ipfs-car pack']
        print(f'{size / (1 << 20):.0f} MiB: engine / ipfs-car throughput {theirs["wall"] / ours["wall"]:.2f}x (wall), '
              f'{theirs["cpu"] / ours["cpu"]:.2f}x (CPU); engine peak RSS {ours["rss_mib"]:.1f} MiB (kubo profile {by["engine kubo"]["rss_mib"]:.1f} MiB), '
              f'goal under {MEMORY_GOAL_MIB} MiB')
    print(f'load average: {" ".join(f"{value:.1f}" for value in os.getloadavg())} on {os.cpu_count()} CPUs')
    return 0


if __name__ == '__main__':
    sys.exit(main())
