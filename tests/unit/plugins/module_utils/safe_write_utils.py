# Copyright (c) Dihya ops maintainers
# GNU General Public License v3.0+ (see LICENSES/GPL-3.0-or-later.txt or https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later

"""Things a writer may find at its destination, and a way to prove they were left exactly as they were."""

from __future__ import annotations

import dataclasses
import os
import pathlib
import socket
import stat
import tempfile
import typing as t

# Every kind of thing that can be at a destination; 'missing' is the only one a writer may take without force.
KINDS = ('missing', 'file', 'device', 'fifo', 'socket', 'symlink-file', 'symlink-dir', 'symlink-dangling', 'directory')
NOT_REGULAR = tuple(kind for kind in KINDS if kind not in ('missing', 'file'))
EXISTING = tuple(kind for kind in KINDS if kind != 'missing')
# What the refusal message says for each kind.
FOUND = {
    'file': 'is an existing file',
    'device': 'is a character device',
    'fifo': 'is a FIFO',
    'socket': 'is a socket',
    'symlink-file': 'is a symbolic link',
    'symlink-dir': 'is a symbolic link',
    'symlink-dangling': 'is a symbolic link',
    'directory': 'is a directory',
}
PRECIOUS = b'precious content\n'


@dataclasses.dataclass
class Thing:
    """What was put at ``path`` (and, for symbolic links, the target in ``victims``)."""

    kind: str
    path: pathlib.Path
    victims: pathlib.Path
    sockets: list[socket.socket]

    def state(self) -> tuple[t.Any, ...]:
        """Type, inode, mode and content of the thing and of what a link points to."""
        return (_state(self.path), _tree(self.victims))

    def close(self) -> None:
        for sock in self.sockets:
            sock.close()


def _state(path: pathlib.Path) -> tuple[t.Any, ...]:
    try:
        info = os.lstat(path)
    except FileNotFoundError:
        return ('missing',)
    kind = stat.S_IFMT(info.st_mode)
    if stat.S_ISREG(info.st_mode):
        extra: t.Any = path.read_bytes()
    elif stat.S_ISLNK(info.st_mode):
        extra = os.readlink(path)
    elif stat.S_ISDIR(info.st_mode):
        extra = sorted(os.listdir(path))
    elif stat.S_ISCHR(info.st_mode) or stat.S_ISBLK(info.st_mode):
        extra = info.st_rdev
    else:
        extra = None
    return (kind, info.st_ino, stat.S_IMODE(info.st_mode), extra)


def _tree(root: pathlib.Path) -> list[tuple[str, tuple[t.Any, ...]]]:
    if not root.exists():
        return []
    return [(str(path.relative_to(root)), _state(path)) for path in sorted(root.rglob('*'))]


def make(kind: str, path: pathlib.Path, victims: pathlib.Path) -> Thing:
    """Put a ``kind`` at ``path``; targets of symbolic links go in ``victims`` (a folder outside the writer's)."""
    victims.mkdir(parents=True, exist_ok=True)
    (victims / 'target.txt').write_bytes(PRECIOUS)
    (victims / 'target-dir').mkdir(exist_ok=True)
    (victims / 'target-dir' / 'inside.txt').write_bytes(PRECIOUS)
    sockets: list[socket.socket] = []
    if kind == 'file':
        path.write_bytes(PRECIOUS)
    elif kind == 'device':
        # The same device as /dev/null, made here: the test never goes near the system's own node.
        os.mknod(path, stat.S_IFCHR | 0o666, os.makedev(1, 3))
    elif kind == 'fifo':
        os.mkfifo(path, 0o600)
    elif kind == 'socket':
        # Bound under a short name (AF_UNIX paths are limited to 108 bytes), then moved into place.
        short = tempfile.mkdtemp(prefix='sw-', dir='/tmp')
        sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        sock.bind(os.path.join(short, 's'))
        os.rename(os.path.join(short, 's'), path)
        os.rmdir(short)
        sockets.append(sock)
    elif kind == 'symlink-file':
        path.symlink_to(victims / 'target.txt')
    elif kind == 'symlink-dir':
        path.symlink_to(victims / 'target-dir')
    elif kind == 'symlink-dangling':
        path.symlink_to(victims / 'nowhere')
    elif kind == 'directory':
        path.mkdir()
        (path / 'inside.txt').write_bytes(PRECIOUS)
    elif kind != 'missing':
        raise ValueError(kind)
    return Thing(kind, path, victims, sockets)


def leftovers(directory: pathlib.Path, *keep: str) -> list[str]:
    """Names in ``directory`` other than ``keep``: temporary files a writer left behind."""
    return sorted(name for name in os.listdir(directory) if name not in keep)
