"""Save or compare the state of a demo fleet sandbox.

``save SANDBOX`` records, for each instance root, the gunicorn master and
supervisord PIDs and the size and mtime of every file outside log/ (logs grow
with every health request), in SANDBOX/.fleet-state.json.  ``compare SANDBOX``
exits 1 and lists every difference; ``pids SANDBOX`` prints the current PIDs.
"""

from __future__ import annotations

import json
import os
import pathlib
import sys


def read_pid(path: pathlib.Path) -> int | None:
    try:
        return int(path.read_text().strip())
    except (OSError, ValueError):
        return None


def state(sandbox: pathlib.Path) -> dict:
    hosts = {}
    for root in sorted(p for p in sandbox.iterdir() if (p / "etc").is_dir()):
        files = {}
        for dirpath, dirnames, filenames in os.walk(root):
            rel = pathlib.Path(dirpath).relative_to(root)
            if rel.parts[:1] == ("log",):
                dirnames[:] = []
                continue
            for name in filenames:
                stat = os.lstat(os.path.join(dirpath, name))
                files[str(rel / name)] = [stat.st_size, stat.st_mtime_ns]
        hosts[root.name] = {
            "gunicorn": read_pid(root / "run" / "gunicorn.pid"),
            "supervisord": read_pid(root / "run" / "supervisord.pid"),
            "files": files,
        }
    return hosts


def main(action: str, sandbox: str) -> int:
    sandbox_path = pathlib.Path(sandbox)
    saved = sandbox_path / ".fleet-state.json"
    current = state(sandbox_path)
    if action == "save":
        saved.write_text(json.dumps(current))
        return 0
    if action == "pids":
        print(json.dumps({host: data["gunicorn"] for host, data in current.items()}))
        return 0
    before = json.loads(saved.read_text())
    problems = []
    for host, data in before.items():
        now = current.get(host, {"files": {}})
        for key in ("gunicorn", "supervisord"):
            if data[key] != now.get(key):
                problems.append(f"{host}: {key} pid {data[key]} -> {now.get(key)}")
        for path in sorted(set(data["files"]) | set(now["files"])):
            if data["files"].get(path) != now["files"].get(path):
                problems.append(f"{host}: {path} {data['files'].get(path)} -> {now['files'].get(path)}")
    for problem in problems:
        print(problem)
    print(f"{len(problems)} differences")
    return 1 if problems else 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1], sys.argv[2]))
