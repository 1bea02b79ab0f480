"""Offline stand-in for get-pip.py, used by ``ansible-test sanity``.

ansible-test bootstraps pip in every virtual environment it creates by
downloading ``get-pip.py``.  Sites without internet access (and CI runners
that only reach a package mirror) cannot download it.  ansible-test first
looks for a cached copy under ``~/.ansible/test/cache/``; ``scripts/test.sh``
places this file there.  It installs pip from the interpreter's bundled wheel
(``ensurepip``) and then runs ``pip install`` with the arguments ansible-test
passed, minus the get-pip-only flags, so everything else comes from the
configured package index or mirror.
"""

from __future__ import annotations

import subprocess
import sys

GET_PIP_ONLY_FLAGS = {"--no-setuptools", "--no-wheel"}


def main() -> int:
    """Install pip, then the requested packages."""
    subprocess.run([sys.executable, "-m", "ensurepip", "--upgrade"], check=True)
    args = [arg for arg in sys.argv[1:] if arg not in GET_PIP_ONLY_FLAGS]
    if args:
        subprocess.run([sys.executable, "-m", "pip", "install", "--disable-pip-version-check", *args], check=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
