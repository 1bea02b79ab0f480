# Copyright (c) Dihya ops maintainers
# GNU General Public License v3.0+ (see LICENSES/GPL-3.0-or-later.txt or https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later

"""Tests of the identifiers: W3C trace ids and pseudonyms."""

from __future__ import annotations

import hashlib
import hmac
import secrets
import typing as t

import pytest

from ansible_collections.dihya.ops.plugins.module_utils._ids import (
    PSEUDONYM,
    PSEUDONYM_PREFIX,
    TRACE_ID,
    is_pseudonym,
    is_trace_id,
    new_trace_id,
    pseudonym,
)

KEY = b'k' * 32


def test_new_trace_ids_are_w3c_trace_ids() -> None:
    ids = {new_trace_id() for dummy in range(200)}
    assert len(ids) == 200
    for value in ids:
        assert TRACE_ID.fullmatch(value)
        assert is_trace_id(value)


def test_a_new_trace_id_is_never_all_zeros(monkeypatch: pytest.MonkeyPatch) -> None:
    drawn = iter(['0' * 32, '0' * 32, 'ab' * 16])
    monkeypatch.setattr(secrets, 'token_hex', lambda size: next(drawn))
    assert new_trace_id() == 'ab' * 16


@pytest.mark.parametrize('value', [
    '0' * 32,  # the W3C invalid trace id
    'A' * 32,  # upper case
    'a' * 31,
    'a' * 33,
    'g' * 32,
    ' ' + 'a' * 31,
    'a' * 32 + '\n',
    'a' * 31 + '\x00',
    '',
    None,
    0,
    b'a' * 32,
    ['a' * 32],
])
def test_not_trace_ids(value: object) -> None:
    assert not is_trace_id(value)


def test_pseudonym_is_the_hmac_sha256_of_the_utf8_text() -> None:
    expected = hmac.new(KEY, b'alice@example.org', hashlib.sha256).hexdigest()
    assert pseudonym('alice@example.org', KEY) == PSEUDONYM_PREFIX + expected
    assert is_pseudonym(pseudonym('alice@example.org', KEY))
    assert PSEUDONYM.fullmatch(pseudonym('', KEY))


def test_pseudonym_is_stable_for_a_key_and_differs_between_keys() -> None:
    assert pseudonym('alice', KEY) == pseudonym('alice', KEY)
    assert pseudonym('alice', KEY) != pseudonym('alice', b'other key')
    assert pseudonym('alice', KEY) != pseudonym('Alice', KEY)
    assert pseudonym('alice', KEY) != pseudonym('alice ', KEY)


@pytest.mark.parametrize('value', ['\udcff', 'caf\udce9', '\ud800\udc00', '\x00', 'élève', '🙂', 'a' * 100_000])
def test_pseudonym_of_any_text(value: str) -> None:
    result = pseudonym(value, KEY)
    assert is_pseudonym(result)
    assert len(result) == len(PSEUDONYM_PREFIX) + 64


def test_lone_surrogates_stay_distinct() -> None:
    assert pseudonym('caf\udce9', KEY) != pseudonym('café', KEY)
    assert pseudonym('\udcff', KEY) != pseudonym('\udcfe', KEY)


@pytest.mark.parametrize('value', [None, 42, b'alice', ['alice'], {'user': 'alice'}])
def test_pseudonym_of_a_non_string_is_refused(value: t.Any) -> None:
    with pytest.raises(TypeError, match='must be a string'):
        pseudonym(value, KEY)


@pytest.mark.parametrize('key', [b'', '', 'text key', None, bytearray(b'key'), 42])
def test_pseudonym_keys_are_non_empty_bytes(key: t.Any) -> None:
    with pytest.raises(TypeError, match='non-empty byte string'):
        pseudonym('alice', key)


@pytest.mark.parametrize('value', [
    'hmac:' + 'a' * 63,
    'hmac:' + 'a' * 65,
    'HMAC:' + 'a' * 64,
    'hmac:' + 'A' * 64,
    'sha256:' + 'a' * 64,
    'hmac:' + 'a' * 64 + '\n',
    'a' * 64,
    None,
    b'hmac:' + b'a' * 64,
])
def test_not_pseudonyms(value: object) -> None:
    assert not is_pseudonym(value)
