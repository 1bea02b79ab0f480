# Copyright (c) Dihya ops maintainers
# GNU General Public License v3.0+ (see LICENSES/GPL-3.0-or-later.txt or https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later

# This module utility is PRIVATE to the collection. It can change at any time.

"""The canonical JSON form of a document, the one text every digest and signature of dihya.ops is computed over.

Sorted keys, no spaces, UTF-8 text (not ``\\u`` escapes), and no NaN or infinity (they are not JSON: a
reader in another language could not parse the record, nor recompute its digest).
"""

from __future__ import annotations

import json
import typing as t


def canonical(document: t.Any) -> str:
    """The canonical JSON text of ``document``; raises ``ValueError`` on NaN or infinity, ``TypeError`` on a non-JSON value."""
    return json.dumps(document, sort_keys=True, separators=(',', ':'), ensure_ascii=False, allow_nan=False)


def canonical_bytes(document: t.Any) -> bytes:
    """:func:`canonical` encoded as UTF-8 (lone surrogates kept, so any text that got in can be digested)."""
    return canonical(document).encode('utf-8', 'surrogatepass')
