# Copyright (c) Dihya ops maintainers
# GNU General Public License v3.0+ (see LICENSES/GPL-3.0-or-later.txt or https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later

"""Shared helpers of the Python dependency tests: local wheels and cheap, real virtual environments.

A virtual environment made by ``python -m venv`` installs its own pip from the bundled wheel,
which takes seconds. The environments of these tests are made without pip instead, and get pip
through a ``.pth`` file naming a folder that holds pip and nothing else (the pip of the running
interpreter, linked, or else the site-packages of one base environment made once per process).
``<venv>/bin/python -m pip`` then runs a real pip against the real, otherwise empty environment,
and installs into its own site-packages.
"""

from __future__ import annotations

import importlib.metadata
import os
import pathlib
import subprocess
import sys
import venv as venv_lib

import pytest

from ansible_collections.dihya.ops.tests.support.wheelbuilder import build_all, build_wheel

# Built once per test process (each pytest-xdist worker has its own).
_CACHE: dict[str, pathlib.Path] = {}


def _linked_pip(folder: pathlib.Path) -> bool:
    """Link the pip package and its metadata of the running interpreter into ``folder``."""
    try:
        dist = importlib.metadata.distribution('pip')
    except importlib.metadata.PackageNotFoundError:
        return False
    package = pathlib.Path(str(dist.locate_file('pip')))
    info = pathlib.Path(str(dist.locate_file(f'pip-{dist.version}.dist-info')))
    if not (package / '__main__.py').is_file() or not (info / 'METADATA').is_file():
        return False
    (folder / 'pip').symlink_to(package, target_is_directory=True)
    (folder / info.name).symlink_to(info, target_is_directory=True)
    return True


def pip_home(tmp_path_factory: pytest.TempPathFactory) -> pathlib.Path:
    """A folder from which a virtual environment can import pip (and nothing else the tests look at)."""
    if 'pip' not in _CACHE:
        folder = tmp_path_factory.mktemp('pip-home')
        if not _linked_pip(folder):
            base = folder / 'base'
            subprocess.run([sys.executable, '-m', 'venv', str(base)], check=True, timeout=300)
            folder = next(base.glob('lib/python*/site-packages'))
        _CACHE['pip'] = folder
    return _CACHE['pip']


def wheelhouse(tmp_path_factory: pytest.TempPathFactory) -> pathlib.Path:
    """Every version of ``dihya-demo-ext``, ``dihya-demo-dep`` 1.0.0 and ``dihya-demo-app`` 3.0.0 (needs the dep)."""
    if 'wheels' not in _CACHE:
        folder = tmp_path_factory.mktemp('wheels')
        build_all(folder)
        build_wheel(folder, '1.0.0', name='dihya-demo-dep')
        build_wheel(folder, '3.0.0', name='dihya-demo-app', requires=('dihya-demo-dep>=1.0',))
        _CACHE['wheels'] = folder
    return _CACHE['wheels']


def make_venv(path: pathlib.Path, tmp_path_factory: pytest.TempPathFactory) -> pathlib.Path:
    """A real virtual environment at ``path`` whose ``bin/python -m pip`` works, in a fraction of a second."""
    venv_lib.EnvBuilder(with_pip=False, symlinks=os.name != 'nt', clear=False).create(str(path))
    site_packages = next(path.glob('lib/python*/site-packages'))
    (site_packages / '_dihya_test_pip.pth').write_text(f'{pip_home(tmp_path_factory)}\n', encoding='utf-8')
    return path


def install(venv: pathlib.Path, wheels: pathlib.Path, *specs: str) -> None:
    """Install ``specs`` into ``venv`` from ``wheels`` only, with the environment's own pip."""
    subprocess.run([str(venv / 'bin' / 'python'), '-m', 'pip', '--disable-pip-version-check', 'install', '--quiet', '--no-index',
                    '--no-compile', '--find-links', str(wheels), *specs], check=True, timeout=120, capture_output=True)
