# Copyright (c) Dihya ops maintainers
# GNU General Public License v3.0+ (see LICENSES/GPL-3.0-or-later.txt or https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later

"""Tests of the RGPD data map model and its validation, and of the value strategies."""

from __future__ import annotations

import copy
import ipaddress

import pytest

from ansible_collections.dihya.ops.plugins.module_utils import _rgpd, _rgpd_values
from ansible_collections.dihya.ops.plugins.module_utils._rgpd_map import (
    DataMapError,
    load_data_map,
    load_data_map_file,
    parse_data_map_text,
)
from ansible_collections.dihya.ops.tests.unit.plugins.rgpd_fixtures import DEMO_DATA_MAP

KEY = b'pseudonym-key-for-the-rgpd-tests'
MINIMAL = {
    'version': 1,
    'subject': {'table': 'users', 'id_column': 'id', 'tenant_column': 'tenant_id'},
    'tables': {'users': {'subject_columns': ['id'], 'columns': {'email': 'hmac'}}},
}
HOSTILE_IDENTIFIERS = ("users; DROP TABLE users; --", 'a"b', 'x/*', "o'brien", 'with space', '1abc', 'x' * 64, '', 'tab\tle', 'é')


def with_changes(**tables):
    data = copy.deepcopy(MINIMAL)
    data['tables'].update(tables)
    return data


def test_demo_data_map_loads():
    data_map = load_data_map_file(DEMO_DATA_MAP)
    assert data_map.version == 'demo-3.1' and data_map.subject_table == 'users' and data_map.tenant_lookup.key_column == 'slug'
    messages = data_map.tables['messages']
    assert messages.strategies('sender_id') == {'body': 'redact'} and messages.strategies('recipient_id') == {}
    assert messages.strategies() == {'body': 'redact'}
    assert data_map.tables['users'].personal_columns() == ['name', 'email', 'phone', 'address', 'last_login_ip', 'last_login_at']
    assert data_map.tables['order_items'].parent.table == 'orders'
    order = data_map.erase_order()
    assert order[-1] == 'users' and order.index('order_items') < order.index('orders')
    notes = data_map.retention_notes()
    assert notes['data_map'].startswith('Personal data') and 'orders' in notes['tables']
    assert data_map.consent.purposes[0] == 'marketing_email'


def test_minimal_map_defaults():
    data_map = load_data_map(MINIMAL)
    assert data_map.version == '1' and data_map.tables['users'].tenant_column == 'tenant_id' and data_map.tables['users'].erasure == 'delete'
    assert data_map.consent is None and data_map.tenant_lookup is None and data_map.subject.name == 'users'
    assert data_map.erase_order() == ['users']


@pytest.mark.parametrize('identifier', HOSTILE_IDENTIFIERS)
def test_hostile_identifiers_are_refused_everywhere(identifier):
    places = [
        {'subject': {'table': identifier, 'tenant_column': 'tenant_id'}},
        {'subject': {'table': 'users', 'id_column': identifier, 'tenant_column': 'tenant_id'}},
        {'tables': {'users': {'subject_columns': ['id']}, identifier: {'subject_columns': ['user_id']}}},
        {'tables': {'users': {'subject_columns': ['id'], 'columns': {identifier: 'redact'}}}},
        {'tables': {'users': {'subject_columns': ['id']}, 'posts': {'subject_columns': [identifier]}}},
        {'tables': {'users': {'subject_columns': ['id']}, 'posts': {'subject_columns': ['author_id'], 'tenant_column': identifier}}},
        {'tables': {'users': {'subject_columns': ['id']}, 'items': {'parent': {'table': 'users', 'column': identifier, 'references': 'id'}}}},
        {'tables': {'users': {'subject_columns': ['id']}, 'posts': {'subject_columns': ['a'], 'key': [identifier]}}},
        {'consent': {'table': 'consents', 'subject_column': identifier}},
        {'tenant_lookup': {'table': 'tenants', 'key_column': identifier}},
    ]
    for place in places:
        data = {**copy.deepcopy(MINIMAL), **place}
        with pytest.raises(DataMapError, match='not a valid SQL identifier'):
            load_data_map(data)


@pytest.mark.parametrize('data, message', [
    (None, 'must be a mapping'),
    ({}, 'is empty'),
    ({**MINIMAL, 'version': None}, 'version: is required'),
    ({**MINIMAL, 'version': True}, 'version: is required'),
    ({**MINIMAL, 'format': 2}, 'unsupported data map format'),
    ({**MINIMAL, 'colour': 'blue'}, "unknown key 'colour'"),
    ({**MINIMAL, 'tables': {}}, 'must map at least the subject table'),
    ({**MINIMAL, 'tables': {'posts': {'subject_columns': ['author_id']}}}, "the subject table 'users' must be mapped too"),
    (with_changes(users={'subject_columns': ['id'], 'erasure': 'shred'}), "unknown erasure 'shred'"),
    (with_changes(users={'subject_columns': ['id'], 'columns': {'email': 'scramble'}}), "unknown strategy 'scramble'"),
    (with_changes(users={'subject_columns': ['email']}), 'relates to the subject through its id column only'),
    (with_changes(users={'subject_columns': ['id'], 'tenant_column': 'other'}), 'must be the subject tenant column'),
    (with_changes(posts={'columns': {'body': 'redact'}}), 'needs subject_columns'),
    (with_changes(posts={'subject_columns': ['a'], 'parent': {'table': 'users', 'column': 'a', 'references': 'id'}}), 'not both'),
    (with_changes(posts={'subject_columns': []}), 'must name at least one column'),
    (with_changes(posts={'subject_columns': 'author_id'}), 'must be a list of column names or a mapping'),
    (with_changes(posts={'subject_columns': {'a': {'colour': 1}}}), "unknown key 'colour'"),
    (with_changes(posts={'subject_columns': ['a', 'a']}), "column 'a' is listed twice"),
    (with_changes(items={'parent': {'table': 'orders', 'column': 'order_id'}}), "missing key 'references'"),
    (with_changes(items={'parent': {'table': 'orders', 'column': 'order_id', 'references': 'id'}}), "'orders' is not a mapped table"),
    (with_changes(a={'parent': {'table': 'b', 'column': 'x', 'references': 'id'}}, b={'parent': {'table': 'a', 'column': 'x', 'references': 'id'}}),
     'loops back on itself'),
    (with_changes(posts={'subject_columns': ['a'], 'key': []}), 'must name at least one column'),
    (with_changes(posts={'subject_columns': ['a'], 'retention': 5}), 'must be a string'),
    ({**MINIMAL, 'consent': {'table': 'consents'}}, "missing key 'subject_column'"),
    ({**MINIMAL, 'consent': {'table': 'consents', 'subject_column': 'user_id', 'purposes': 'all'}}, 'must be a list of non-empty strings'),
    ({**MINIMAL, 'tables': {'users': 'yes'}}, 'must be a mapping'),
    ({**MINIMAL, 'tables': {'users': {'subject_columns': ['id'], 5: 'x'}}}, 'must be a string'),
])
def test_invalid_maps_are_explained(data, message):
    with pytest.raises(DataMapError, match=message):
        load_data_map(data)


def test_every_problem_is_listed_at_once():
    data = with_changes(users={'subject_columns': ['id'], 'erasure': 'shred', 'columns': {'email': 'scramble', 'x/*': 'keep'}})
    with pytest.raises(DataMapError) as caught:
        load_data_map(data)
    text = str(caught.value)
    assert text.count('\n  - ') == 3 and 'shred' in text and 'scramble' in text and "'x/*'" in text


def test_side_columns_key_and_bare_null_strategy():
    data = with_changes(messages={
        'subject_columns': {'sender_id': {'columns': {'body': 'redact'}}, 'recipient_id': None},
        'columns': {'read_at': None}, 'erasure': 'anonymise', 'key': 'id',
    })
    table = load_data_map(data).tables['messages']
    assert table.key == ('id',) and table.strategies('recipient_id') == {'read_at': 'null'}
    assert table.strategies('sender_id') == {'read_at': 'null', 'body': 'redact'}


def test_erase_order_uses_foreign_keys_and_detects_cycles():
    data = with_changes(
        a={'subject_columns': ['user_id']}, b={'subject_columns': ['user_id']},
        c={'parent': {'table': 'b', 'column': 'b_id', 'references': 'id'}},
    )
    data_map = load_data_map(data)
    order = data_map.erase_order([('a', 'b'), ('a', 'a'), ('zzz', 'a')])
    assert order.index('a') < order.index('b') and order.index('c') < order.index('b') and order[-1] == 'users'
    with pytest.raises(DataMapError, match='cycle'):
        data_map.erase_order([('a', 'b'), ('b', 'a')])


def test_parse_text_and_files(tmp_path):
    assert parse_data_map_text('{"version": "j", "subject": {"table": "users", "tenant_column": "t"}, '
                               '"tables": {"users": {"subject_columns": ["id"]}}}').version == 'j'
    with pytest.raises(DataMapError, match='cannot parse'):
        parse_data_map_text('version: [unclosed')
    with pytest.raises(DataMapError, match='cannot read'):
        load_data_map_file(str(tmp_path / 'missing.yml'))


# ---------------------------------------------------------------------------
# strategies
# ---------------------------------------------------------------------------

def test_strategies():
    assert _rgpd.anonymise_value('keep', 'x', KEY) == 'x'
    assert _rgpd.anonymise_value('null', 'x', KEY) is None
    assert _rgpd.anonymise_value('redact', 'x', KEY) == '[redacted]'
    assert _rgpd.anonymise_value('hmac', None, KEY) is None
    pseudonym = _rgpd.anonymise_value('hmac', 'dihya@example.com', KEY)
    assert pseudonym == _rgpd.pseudonym('dihya@example.com', KEY) and pseudonym.startswith('hmac:') and len(pseudonym) == 69
    assert _rgpd.anonymise_value('hmac', pseudonym, KEY) == pseudonym
    assert _rgpd.pseudonym('x', KEY) != _rgpd.pseudonym('x', KEY[::-1])
    assert _rgpd.anonymise_value('mask', 'dihya.amrani@example.com', KEY) == 'd***@example.com'
    assert _rgpd_values.mask('198.51.100.23') == '198.51.100.0'
    assert ipaddress.ip_address(_rgpd_values.mask('2001:db8:1:2::5')) == ipaddress.ip_address('2001:db8:1::')
    assert _rgpd_values.mask('+33 6 39 98 12 34') == '+** * ** ** ** **'
    for value in ('dihya.amrani@example.com', '198.51.100.23', '+33 6 39 98 12 34'):
        assert _rgpd_values.mask(_rgpd_values.mask(value)) == _rgpd_values.mask(value)
    fake = _rgpd.anonymise_value('fake', 'Dihya Amrani', KEY)
    assert fake.startswith('anon-') and len(fake) == 17 and _rgpd_values.fake(fake, KEY) == fake and _rgpd_values.fake('Dihya Amrani', KEY) == fake
    assert _rgpd_values.fake('a@b.c', KEY).endswith('@example.invalid')
    with pytest.raises(_rgpd.RgpdError, match='unknown strategy'):
        _rgpd.anonymise_value('shred', 'x', KEY)


def test_encryption_keys():
    assert _rgpd.parse_encryption_key('00' * 32) == bytes(32)
    assert _rgpd.parse_encryption_key(b'AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA=') == bytes(32)
    for bad in ('', 'short', '00' * 31, 'é' * 44):
        with pytest.raises(_rgpd.RgpdError, match='32 bytes'):
            _rgpd.parse_encryption_key(bad)


def test_trace_ids_and_decrypting_non_archives(tmp_path):
    assert len(_rgpd.new_trace_id()) == 32 and _rgpd.new_trace_id() != _rgpd.new_trace_id()
    short = tmp_path / 'short'
    short.write_bytes(b'abc')
    with pytest.raises(_rgpd.RgpdError, match='too short'):
        _rgpd.decrypt_archive(str(short), str(tmp_path / 'out'), '00' * 32)
    plain = tmp_path / 'plain'
    plain.write_bytes(b'PK' + b'\0' * 100)
    with pytest.raises(_rgpd.RgpdError, match='bad header'):
        _rgpd.decrypt_archive(str(plain), str(tmp_path / 'out'), '00' * 32)


def test_stale_temp_files(tmp_path):
    dest = str(tmp_path / 'x.zip')
    dead = tmp_path / f'.x.zip{_rgpd.TEMP_MARKER}999999999-abcd'
    alive = tmp_path / f'.x.zip{_rgpd.TEMP_MARKER}1-abcd'
    odd = tmp_path / f'.x.zip{_rgpd.TEMP_MARKER}junk'
    other = tmp_path / f'.y.zip{_rgpd.TEMP_MARKER}999999999-abcd'
    for path in (dead, alive, odd, other):
        path.write_bytes(b'partial')
    removed = _rgpd.clean_stale_temp_files(dest)
    assert sorted(removed) == sorted([str(dead), str(odd)])
    assert alive.exists() and other.exists()


@pytest.mark.parametrize('foreign_keys, cycle', [
    ([('a', 'b'), ('b', 'a')], 'a -> b -> a'),
    ([('a', 'b'), ('b', 'c'), ('c', 'a')], 'b -> c -> a -> b'),
    ([('users', 'a')], 'users -> a -> users'),
    ([('c', 'a'), ('a', 'b'), ('b', 'c')], 'b -> c -> a -> b'),
])
def test_erase_order_names_the_cycle(foreign_keys, cycle):
    data_map = load_data_map(with_changes(a={'subject_columns': ['user_id']}, b={'subject_columns': ['user_id']},
                                          c={'subject_columns': ['user_id']}))
    with pytest.raises(DataMapError) as caught:
        data_map.erase_order(foreign_keys)
    message = str(caught.value)
    assert 'no erasure order exists' in message
    # Either way round the loop names the same cycle: each table references the next.
    tables = cycle.split(' -> ')[:-1]
    rotations = [' -> '.join(tables[i:] + tables[:i] + [tables[i]]) for i in range(len(tables))]
    assert any(rotation in message for rotation in rotations), message


@pytest.mark.parametrize('kept', ['a', 'b'])
def test_erase_order_ignores_foreign_keys_to_kept_tables(kept):
    """A foreign key to rows erasure keeps (anonymise) does not order anything: a cycle through it has an order."""
    tables = {name: {'subject_columns': ['user_id'], 'erasure': 'anonymise' if name == kept else 'delete'} for name in ('a', 'b')}
    data_map = load_data_map(with_changes(**tables))
    order = data_map.erase_order([('a', 'b'), ('b', 'a')])
    other = 'b' if kept == 'a' else 'a'
    # The kept table's rows point at the deleted table's: they are repointed first.
    assert order.index(kept) < order.index(other) and order[-1] == 'users'
    # The subject table is deleted even with erasure anonymise (its row is replaced by a tombstone): always ordered.
    data = with_changes(a={'subject_columns': ['user_id']})
    data['tables']['users']['erasure'] = 'anonymise'
    with pytest.raises(DataMapError, match='cycle'):
        load_data_map(data).erase_order([('users', 'a')])


def test_erase_order_always_follows_join_paths():
    """A table is found through its parent's rows, so it comes first even when the parent's rows are kept."""
    data = with_changes(orders={'subject_columns': ['user_id'], 'erasure': 'anonymise'},
                        items={'parent': {'table': 'orders', 'column': 'order_id', 'references': 'id'}})
    data_map = load_data_map(data)
    for foreign_keys in ([], [('items', 'orders')]):
        order = data_map.erase_order(foreign_keys)
        assert order.index('items') < order.index('orders') < order.index('users')
    with pytest.raises(DataMapError, match='orders -> items -> orders'):
        data_map.erase_order([('orders', 'items')])
