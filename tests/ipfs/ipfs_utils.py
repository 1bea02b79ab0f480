# Copyright (c) Dihya ops maintainers
# GNU General Public License v3.0+ (see LICENSES/GPL-3.0-or-later.txt or https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later

"""Helpers of the IPFS export tests: the test inputs, the reference tools, and a Kubo-like receiver on loopback.

* :func:`make_inputs` writes the files the CIDs are compared on (sizes around the chunk sizes of both profiles, a
  file of two DAG levels for ``kubo``, a folder of nested folders with unicode names and an empty folder). The
  content is ``random.Random(name).randbytes(size)``: the same bytes on every run, no two chunks alike.
* :func:`reference_cids` and :func:`ipfs_car` run the independent implementations installed by
  ``scripts/bootstrap.sh test`` into ``.cache/npm-ipfs`` (``tests/ipfs/package-lock.json``).
* :class:`KuboReceiver` answers ``POST /api/v0/dag/import`` as Kubo does, keeping what it was sent.
"""

from __future__ import annotations

import dataclasses
import http.server
import io
import json
import os
import pathlib
import random
import shutil
import socket
import subprocess
import threading
import typing as t
import urllib.parse

from ansible_collections.dihya.ops.plugins.module_utils._ipfs_car import read_root


ROOT = pathlib.Path(__file__).resolve().parents[2]
NPM_DIR = ROOT / '.cache' / 'npm-ipfs'
KUBO_REFERENCE = ROOT / 'tests' / 'ipfs' / 'kubo_reference.mjs'
IPFS_CAR = NPM_DIR / 'node_modules' / '.bin' / 'ipfs-car'
KUBO_CHUNK = 262144
CAR_CHUNK = 1048576

# name -> size
FILES = {
    'empty': 0,
    'one-byte': 1,
    'kubo-one-chunk': KUBO_CHUNK,
    'kubo-chunk-plus-one': KUBO_CHUNK + 1,
    'kubo-several-chunks': KUBO_CHUNK * 5 + 17,
    'kubo-two-levels': KUBO_CHUNK * 175 + 1,
    'car-one-chunk': CAR_CHUNK,
    'car-chunk-plus-one': CAR_CHUNK + 1,
    'car-several-chunks': CAR_CHUNK * 3 + 17,
}
# A folder: relative path -> size; 'logs/année 2026/vide' is an empty folder.
TREE = {
    'logs/audit.log': 300000,
    'logs/année 2026/journal-été.log': 5,
    'logs/année 2026/Zèbre.txt': 0,
    'reports/rapport ☃.json': CAR_CHUNK + 1,
    'reports/B.txt': 3,
    'reports/a.txt': 4,
    'README': 10,
}
EMPTY_FOLDER = 'logs/année 2026/vide'


def content(name: str, size: int) -> bytes:
    """The test content of ``name``."""
    return random.Random(name).randbytes(size)


def make_inputs(base: pathlib.Path, names: t.Iterable[str] | None = None, tree: bool = True) -> pathlib.Path:
    """Write the files of :data:`FILES` (or only ``names``) and, with ``tree``, the folder ``tree/`` into ``base``."""
    base.mkdir(parents=True, exist_ok=True)
    for name in names if names is not None else FILES:
        (base / name).write_bytes(content(name, FILES[name]))
    if tree:
        (base / 'tree' / EMPTY_FOLDER).mkdir(parents=True)
        for rel, size in TREE.items():
            path = base / 'tree' / rel
            path.parent.mkdir(parents=True, exist_ok=True)
            path.write_bytes(content(rel, size))
    return base


def missing_tools() -> str | None:
    """Why the reference tools cannot run here, or None."""
    if shutil.which('node') is None:
        return 'node is not installed (bindep.txt: nodejs)'
    if not IPFS_CAR.exists() or not (NPM_DIR / 'node_modules' / 'ipfs-unixfs-importer').is_dir():
        return f'the npm packages are not installed in {NPM_DIR}: run scripts/bootstrap.sh test'
    return None


def _run(argv: list[str], cwd: pathlib.Path | None = None, timeout: float = 300) -> str:
    done = subprocess.run(argv, cwd=cwd, capture_output=True, text=True, timeout=timeout, check=False)
    if done.returncode != 0:
        raise AssertionError(f'{argv[0]} failed ({done.returncode}): {done.stderr.strip()[-2000:]}')
    return done.stdout


def reference_cids(paths: t.Sequence[pathlib.Path], wrap: bool) -> dict[str, t.Any]:
    """What the npm ipfs-unixfs-importer with Kubo's parameters gives: ``{"root": CID, "entries": {path: CID}}``."""
    # The script imports its packages from the folder they are installed in.
    script = NPM_DIR / KUBO_REFERENCE.name
    shutil.copyfile(KUBO_REFERENCE, script)
    output = _run(['node', str(script), 'wrap' if wrap else 'nowrap', *map(str, paths)], cwd=NPM_DIR)
    result: dict[str, t.Any] = json.loads(output)
    return result


def ipfs_car(*args: str) -> str:
    """Run ``ipfs-car`` with ``args``; its standard output, stripped."""
    return _run([str(IPFS_CAR), *args]).strip()


@dataclasses.dataclass
class Received:
    """One request the receiver got."""

    path: str
    query: dict[str, list[str]]
    headers: dict[str, str]
    body: bytes


class KuboReceiver:
    """A loopback HTTP server answering ``/api/v0/dag/import`` like Kubo; stop it with :meth:`close`.

    It keeps every request (:attr:`received`) and extracts the CAR from the multipart body (:meth:`car`). ``status``,
    ``answer`` (the JSON lines it sends; by default Kubo's answer for the root it finds in the CAR), ``token`` (a
    bearer token it requires) and ``stall`` (it reads the request and then never answers) shape its behaviour.
    """

    def __init__(self) -> None:
        self.received: list[Received] = []
        self.status = 200
        self.answer: list[dict[str, t.Any]] | None = None
        self.token: str | None = None
        self.basic: str | None = None
        self.stall = threading.Event()
        self.release = threading.Event()
        receiver = self

        class Handler(http.server.BaseHTTPRequestHandler):
            def log_message(self, format: str, *args: t.Any) -> None:
                return

            def do_POST(self) -> None:
                length = int(self.headers.get('Content-Length', '0'))
                body = self.rfile.read(length)
                url = urllib.parse.urlsplit(self.path)
                receiver.received.append(Received(url.path, urllib.parse.parse_qs(url.query), dict(self.headers.items()), body))
                if receiver.stall.is_set():
                    receiver.release.wait(30)
                    return
                auth = self.headers.get('Authorization')
                if receiver.token is not None and auth != f'Bearer {receiver.token}':
                    self._send(401, [{'Message': 'unauthorized', 'Code': 0, 'Type': 'error'}])
                    return
                if receiver.basic is not None and auth != f'Basic {receiver.basic}':
                    self._send(401, [{'Message': 'unauthorized', 'Code': 0, 'Type': 'error'}])
                    return
                if url.path != '/api/v0/dag/import':
                    self._send(404, [{'Message': '404 page not found', 'Code': 0, 'Type': 'error'}])
                    return
                if receiver.answer is not None:
                    self._send(receiver.status, receiver.answer)
                    return
                pin = urllib.parse.parse_qs(url.query).get('pin-roots', ['true'])[0] == 'true'
                lines = []
                if pin:
                    lines.append({'Root': {'Cid': {'/': receiver.car_root(-1)}, 'PinErrorMsg': ''}})
                self._send(receiver.status, lines)

            def _send(self, status: int, lines: list[dict[str, t.Any]]) -> None:
                data = b''.join(json.dumps(line).encode() + b'\n' for line in lines)
                self.send_response(status)
                self.send_header('Content-Type', 'application/json')
                self.send_header('Content-Length', str(len(data)))
                self.end_headers()
                self.wfile.write(data)

        self.server = http.server.ThreadingHTTPServer(('127.0.0.1', 0), Handler)
        self.server.daemon_threads = True
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)
        self.thread.start()

    @property
    def url(self) -> str:
        """The base URL of the receiver's API."""
        return f'http://127.0.0.1:{self.server.server_address[1]}'

    def car(self, index: int = -1) -> bytes:
        """The CAR file of request ``index``, taken out of its multipart body."""
        request = self.received[index]
        boundary = request.headers['Content-Type'].split('boundary=', 1)[1].encode()
        part = request.body.split(b'--' + boundary)[1]
        return part.split(b'\r\n\r\n', 1)[1][:-2]

    def car_root(self, index: int = -1) -> str:
        """The root CID named by the header of the CAR of request ``index``."""
        return str(read_root(io.BytesIO(self.car(index))))

    def close(self) -> None:
        """Stop the server and its thread."""
        self.release.set()
        self.server.shutdown()
        self.server.server_close()
        self.thread.join(10)


def unused_port() -> int:
    """A loopback TCP port nothing listens on (bound then closed)."""
    with socket.socket() as sock:
        sock.bind(('127.0.0.1', 0))
        port: int = sock.getsockname()[1]
    return port


def tree_size(path: pathlib.Path) -> int:
    """Bytes of the regular files below ``path``."""
    return sum(os.path.getsize(os.path.join(folder, name)) for folder, _dirs, names in os.walk(path) for name in names)
