# Copyright (c) Dihya ops maintainers
# GNU General Public License v3.0+ (see LICENSES/GPL-3.0-or-later.txt or https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later

# This module utility is PRIVATE to the collection. It can change at any time.

"""Import an optional Python library the first time a feature needs it, not when a module starts.

cryptography and psycopg take most of a module's import time; a run that never reaches a PostgreSQL
database or a TLS certificate never loads them. A missing library is one clear error of the caller's
own type, naming the library and what needs it.
"""

from __future__ import annotations

import importlib
import types


def optional_library(name: str, purpose: str, error: type[Exception] = ImportError) -> types.ModuleType:
    """Import ``name`` (for example ``psycopg`` or ``cryptography.x509``); raise ``error`` when it cannot be imported.

    ``name`` is an absolute module name (a relative one would be resolved against no package): anything else
    is a ``ValueError``, whatever ``error`` is.
    """
    if not isinstance(name, str) or not name or not all(part.isidentifier() for part in name.split('.')):
        raise ValueError(f'not an absolute module name: {name!r}')
    try:
        return importlib.import_module(name)
    except ImportError as exc:
        library = name.split('.', maxsplit=1)[0]
        raise error(f'{purpose} needs the {library} Python library, which cannot be imported on this host ({exc})') from exc
