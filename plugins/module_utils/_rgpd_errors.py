# Copyright (c) Dihya ops maintainers
# GNU General Public License v3.0+ (see LICENSES/GPL-3.0-or-later.txt or https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later

# This module utility is PRIVATE to the collection. It can change at any time.

"""The one error the RGPD engine raises for a request it refuses or a data map that does not fit the database."""

from __future__ import annotations


class RgpdError(Exception):
    """A request the engine refuses, or a data map that does not fit the database; the message is safe to show."""
