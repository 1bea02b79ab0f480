# Copyright (c) Dihya ops maintainers
# GNU General Public License v3.0+ (see LICENSES/GPL-3.0-or-later.txt or https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later

"""Tests of the canonical JSON form every digest is computed over."""

from __future__ import annotations

import hashlib
import json
import math
import typing as t

import pytest

from ansible_collections.dihya.ops.plugins.module_utils._canonical import canonical, canonical_bytes


def test_sorted_keys_no_spaces_utf8_text() -> None:
    assert canonical({'b': 1, 'a': [1, 2, {'d': None, 'c': True}], 'é': 'ü'}) == '{"a":[1,2,{"c":true,"d":null}],"b":1,"é":"ü"}'
    assert canonical_bytes({'é': '🙂'}) == '{"é":"🙂"}'.encode()


def test_the_same_document_gives_the_same_text_whatever_the_key_order() -> None:
    first = {'x': 1, 'y': {'b': 2, 'a': 1}}
    second = {'y': {'a': 1, 'b': 2}, 'x': 1}
    assert canonical(first) == canonical(second)
    assert hashlib.sha256(canonical_bytes(first)).digest() == hashlib.sha256(canonical_bytes(second)).digest()


def test_the_text_is_json_that_reads_back_to_the_document() -> None:
    document = {'text': 'line\nbreak "quoted" \\ \x00 \u2028', 'n': -1.5e-7, 'big': 2**70, 'list': [], 'nested': {}}
    assert json.loads(canonical(document)) == document


def test_tuples_are_lists() -> None:
    assert canonical({'a': (1, 2)}) == canonical({'a': [1, 2]}) == '{"a":[1,2]}'


@pytest.mark.parametrize('value', [math.nan, math.inf, -math.inf, [1.0, math.nan], {'a': {'b': math.inf}}])
def test_nan_and_infinity_are_refused(value: t.Any) -> None:
    with pytest.raises(ValueError, match='not JSON compliant'):
        canonical(value)
    with pytest.raises(ValueError, match='not JSON compliant'):
        canonical_bytes(value)


def test_a_nan_key_is_refused() -> None:
    with pytest.raises(ValueError, match='not JSON compliant'):
        canonical({math.nan: 1})


@pytest.mark.parametrize('value', [b'bytes', {1, 2}, object(), {'a': b'x'}, {('a', 'b'): 1}, {'a': 1, 2: 'b'}])
def test_non_json_values_are_refused(value: t.Any) -> None:
    with pytest.raises(TypeError):
        canonical(value)


def test_a_circular_document_is_refused() -> None:
    document: dict[str, t.Any] = {}
    document['self'] = document
    with pytest.raises(ValueError, match=r'[Cc]ircular'):
        canonical(document)


def test_lone_surrogates_are_kept_in_the_bytes() -> None:
    text = canonical({'name': 'caf\udce9'})
    assert text == '{"name":"caf\udce9"}'
    data = canonical_bytes({'name': 'caf\udce9'})
    assert data == b'{"name":"caf\xed\xb3\xa9"}'
    assert data != canonical_bytes({'name': 'café'})
    assert data.decode('utf-8', 'surrogatepass') == text
