"""Benchmark: the purge_files engine against find(1) on the same tree, in one run.

Builds a tree of N files (default 200,000) in nested folders, half of them
older than the threshold, then times, each in a child process:

- check mode (count what would go)   vs  find DIR -type f -mmin +N -print
- removal                             vs  find DIR -type f -mmin +N -delete

Removal runs on two identical trees, one per tool.  The engine runs exactly
as the module runs it (Purger over one path), without Ansible's start-up.
It also runs check mode on a tree ten times smaller, to show that the engine's
peak memory (its own VmHWM) does not grow with the number of files.  Not a test: it prints figures.

    .venv/bin/python benchmarks/purge_files.py [--files 200000] [--dir /tmp]
"""

from __future__ import annotations

import argparse
import json
import os
import pathlib
import shutil
import subprocess
import sys
import tempfile
import time

ROOT = pathlib.Path(__file__).resolve().parents[1]
OLD_AGE = 2 * 86400
THRESHOLD_MINUTES = 24 * 60

ENGINE = """
import sys, json
from ansible_collections.dihya.ops.plugins.module_utils._purge import Purger, PurgeSpec
purger = Purger(PurgeSpec(age={age}, check_mode={check}))
purger.purge(sys.argv[1])
result = purger.result()
hwm = [line.split()[1] for line in open('/proc/self/status') if line.startswith('VmHWM:')][0]
print(json.dumps({{'files': result['files_removed'], 'bytes': result['bytes_freed'], 'errors': result['error_count'], 'peak_kib': int(hwm)}}))
"""


def build_tree(top: pathlib.Path, files: int) -> None:
    """files / 100 leaf folders of 100 files each, two levels deep; every other file old."""
    old = time.time() - OLD_AGE
    per_dir = 100
    leaves = max(1, files // per_dir)
    for leaf in range(leaves):
        directory = top / f"d{leaf // 50:03d}" / f"e{leaf % 50:02d}"
        directory.mkdir(parents=True, exist_ok=True)
        for index in range(per_dir):
            path = directory / f"f{index:03d}.tmp"
            with open(path, "wb") as handle:
                handle.write(b"x" * 64)
            if index % 2 == 0:
                os.utime(path, (old, old))


def timed(argv: list[str]) -> tuple[float, str]:
    """Run argv; return wall seconds and stdout."""
    env = dict(os.environ, PYTHONPATH=str(ROOT / ".cache" / "collections"))
    started = time.monotonic()
    completed = subprocess.run(argv, stdout=subprocess.PIPE, env=env, check=False)
    elapsed = time.monotonic() - started
    if completed.returncode != 0:
        raise SystemExit(f"{argv[0]} failed with exit code {completed.returncode}")
    return elapsed, completed.stdout.decode()


def engine(path: pathlib.Path, check: bool) -> tuple[float, dict[str, int]]:
    """The engine's time and result, with its own peak RSS (VmHWM, which starts afresh at exec)."""
    elapsed, output = timed([sys.executable, "-c", ENGINE.format(age=OLD_AGE // 2, check=check), str(path)])
    return elapsed, json.loads(output)


def find(path: pathlib.Path, action: str) -> tuple[float, str]:
    return timed(["find", str(path), "-type", "f", "-mmin", f"+{THRESHOLD_MINUTES}", action])


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n", 1)[0])
    parser.add_argument("--files", type=int, default=200_000)
    parser.add_argument("--dir", default=tempfile.gettempdir())
    args = parser.parse_args()
    work = pathlib.Path(tempfile.mkdtemp(prefix="dihya-bench-purge-", dir=args.dir))
    try:
        started = time.monotonic()
        small, tree_a, tree_b = work / "small", work / "a", work / "b"
        build_tree(small, args.files // 10)
        build_tree(tree_a, args.files)
        build_tree(tree_b, args.files)
        print(f"built 2 trees of {args.files} files (+1 of {args.files // 10}) in {time.monotonic() - started:.1f} s under {work}")
        subprocess.run(["sync"], check=False)

        check_small = engine(small, check=True)
        find_print = find(tree_a, "-print")
        check_a = engine(tree_a, check=True)
        delete_find = find(tree_b, "-delete")
        delete_engine = engine(tree_a, check=False)
        listed = find_print[1].count("\n")

        print(f"\npurge_files engine vs find on {args.files} files, half older than {THRESHOLD_MINUTES} min; "
              f"find -print listed {listed}, the engine counted {check_a[1]['files']} and removed {delete_engine[1]['files']}")
        print(f"{'':30}{'purge_files':>13}{'find':>10}{'ratio':>8}{'goal':>8}{'engine peak RSS':>18}")
        for label, ours, theirs in (("check mode vs find -print", check_a, find_print), ("removal vs find -delete", delete_engine, delete_find)):
            print(f"{label:30}{ours[0]:>11.2f} s{theirs[0]:>8.2f} s{ours[0] / theirs[0]:>7.2f}x{'<=1.2x':>8}{ours[1]['peak_kib'] / 1024:>14.1f} MiB")
        print(f"check mode on {args.files // 10} files: {check_small[0]:.2f} s, engine peak RSS {check_small[1]['peak_kib'] / 1024:.1f} MiB "
              f"(vs {check_a[1]['peak_kib'] / 1024:.1f} MiB on {args.files}: memory does not grow with the tree)")
        remaining = sum(1 for dummy in tree_a.rglob("*.tmp"))
        print(f"after removal: {remaining} files left in the purged tree (expected {args.files - args.files // 2})")
    finally:
        shutil.rmtree(work, ignore_errors=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
