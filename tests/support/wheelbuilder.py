# Copyright (c) Dihya ops maintainers
# GNU General Public License v3.0+ (see LICENSES/GPL-3.0-or-later.txt or https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later

"""Build small, real wheels of a test package, offline, with zipfile only.

The local package mirrors hold a single version of every real package, so the
update tests publish their own package, ``dihya-demo-ext``, in several versions
into a folder used as ``--find-links``:

* ``1.0.0`` and ``1.1.0`` are harmless: a module with ``__version__``.
* ``2.0.0`` is a genuinely incompatible upgrade.  Like the start-up hooks of
  instrumentation agents, it ships ``dihya_demo_ext_hook.pth``, whose ``import``
  line runs at every interpreter start of the virtual environment and installs
  an import hook.  That hook refuses the import of ``flask``: pip (which never
  imports flask) keeps working, so the virtual environment can be repaired,
  but gunicorn's workers can no longer load the application, the master stops
  with "Worker failed to boot" and the program does not come back.  The demo
  application itself is not modified.
* ``build_wheel(..., unsafe=True)`` writes a wheel that pip refuses to install
  (a file outside the installation folder): an install error that the dry run
  cannot see.
"""

from __future__ import annotations

import base64
import hashlib
import pathlib
import zipfile

NAME = 'dihya-demo-ext'
MODULE = 'dihya_demo_ext'

_HOOK = '''"""Start-up hook of dihya-demo-ext 2.0.0: refuses Flask, with which this release is incompatible."""
import sys


class _RefuseFlask:
    def find_spec(self, name, path=None, target=None):
        if name == 'flask' or name.startswith('flask.'):
            raise ImportError('dihya-demo-ext 2.0.0 is incompatible with Flask')
        return None


if not any(type(finder).__name__ == '_RefuseFlask' for finder in sys.meta_path):
    sys.meta_path.insert(0, _RefuseFlask())
'''


def _record_line(path: str, data: bytes) -> str:
    digest = base64.urlsafe_b64encode(hashlib.sha256(data).digest()).rstrip(b'=').decode()
    return f'{path},sha256={digest},{len(data)}'


def build_wheel(folder: pathlib.Path, version: str, name: str = NAME, requires: tuple[str, ...] = (),
                breaking: bool | None = None, unsafe: bool = False) -> pathlib.Path:
    """Write ``<name>-<version>-py3-none-any.whl`` into ``folder`` and return its path.

    ``breaking`` (default: version 2.x) adds the start-up hook described above.
    """
    module = name.replace('-', '_')
    if breaking is None:
        breaking = version.startswith('2.')
    dist_info = f'{module}-{version}.dist-info'
    files: dict[str, bytes] = {
        f'{module}/__init__.py': f'"""Test package {name}."""\n__version__ = {version!r}\n'.encode(),
    }
    if breaking:
        files[f'{module}/_hook.py'] = _HOOK.encode()
        files[f'{module}_hook.pth'] = f'import {module}._hook\n'.encode()
    if unsafe:
        files['../escaped.txt'] = b'outside the installation folder\n'
    metadata = ['Metadata-Version: 2.1', f'Name: {name}', f'Version: {version}', 'Summary: Test package of dihya.ops']
    metadata += [f'Requires-Dist: {requirement}' for requirement in requires]
    files[f'{dist_info}/METADATA'] = ('\n'.join(metadata) + '\n').encode()
    files[f'{dist_info}/WHEEL'] = b'Wheel-Version: 1.0\nGenerator: dihya-wheelbuilder\nRoot-Is-Purelib: true\nTag: py3-none-any\n'
    files[f'{dist_info}/top_level.txt'] = f'{module}\n'.encode()
    record = [_record_line(path, data) for path, data in files.items()] + [f'{dist_info}/RECORD,,']
    files[f'{dist_info}/RECORD'] = ('\n'.join(record) + '\n').encode()
    folder.mkdir(parents=True, exist_ok=True)
    wheel = folder / f'{module}-{version}-py3-none-any.whl'
    with zipfile.ZipFile(wheel, 'w', compression=zipfile.ZIP_DEFLATED) as archive:
        for path, data in files.items():
            archive.writestr(path, data)
    return wheel


def build_all(folder: pathlib.Path, versions: tuple[str, ...] = ('1.0.0', '1.1.0', '2.0.0')) -> pathlib.Path:
    """Build every version of the test package into ``folder``; return the folder."""
    for version in versions:
        build_wheel(folder, version)
    return folder
