# Copyright (c) Dihya ops maintainers
# GNU General Public License v3.0+ (see LICENSES/GPL-3.0-or-later.txt or https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later

"""The pseudonym filter gives the same pseudonym as the RGPD engine, and refuses weak keys."""

from __future__ import annotations

import pytest
from ansible.errors import AnsibleFilterError

from ansible_collections.dihya.ops.plugins.filter.pseudonym import FilterModule, pseudonym
from ansible_collections.dihya.ops.plugins.module_utils import _rgpd

KEY = 'pseudonym-key-for-the-filter-tests'


@pytest.mark.parametrize('value', ['987654321', 'u1', 'dpo@example.com', "'; DROP TABLE users; --", 'é漢字', ''])
def test_same_pseudonym_as_the_engine(value):
    assert pseudonym(value, KEY) == _rgpd.pseudonym(value, KEY.encode())
    assert value not in pseudonym(value, KEY)[5:] or value == ''


def test_integers_as_the_engine_writes_them():
    assert pseudonym(42, KEY) == _rgpd.pseudonym(42, KEY.encode()) == pseudonym('42', KEY)


@pytest.mark.parametrize('key', ['', 'short', None, 12345678901234567890])
def test_weak_or_missing_keys_are_refused(key):
    with pytest.raises(AnsibleFilterError, match='at least 16 characters'):
        pseudonym('42', key)


def test_registered_name():
    assert FilterModule().filters()['pseudonym'] is pseudonym
