# Copyright (c) Dihya ops maintainers
# GNU General Public License v3.0+ (see LICENSES/GPL-3.0-or-later.txt or https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later

"""Validation of single-tenant data maps (``tenancy: single``): declared, never mixed with tenant columns, and the
multi-tenant rules unchanged. No database: the schema checks are in test_rgpd_single_tenant.py."""

from __future__ import annotations

import copy

import pytest

from ansible_collections.dihya.ops.plugins.module_utils._rgpd_errors import RgpdError
from ansible_collections.dihya.ops.plugins.module_utils._rgpd_map import (
    DEFAULT_SINGLE_TENANT,
    DataMapError,
    load_data_map,
    load_data_map_file,
    tenant_name_problem,
)
from ansible_collections.dihya.ops.plugins.module_utils._rgpd_query import single_tenant_name
from ansible_collections.dihya.ops.tests.unit.plugins.rgpd_fixtures import SINGLE_DATA_MAP, single_tenant_map

SINGLE = {
    'version': 1,
    'tenancy': 'single',
    'subject': {'table': 'user', 'id_column': 'id'},
    'tables': {
        'user': {'subject_columns': ['id'], 'columns': {'email': 'hmac', 'password_hash': 'secret'}},
        'message': {'subject_columns': {'sender_id': {'columns': {'body': 'redact'}}, 'recipient_id': {}}, 'erasure': 'anonymise'},
    },
}
MULTI = {
    'version': 1,
    'subject': {'table': 'users', 'id_column': 'id', 'tenant_column': 'tenant_id'},
    'tables': {'users': {'subject_columns': ['id']}},
}
HOSTILE_TENANTS = ('../etc', '..', 'a/b', "o'brien", 'a"b', 'with space', '-leading-dash', '.hidden', 'x' * 64, 'x' * 10000, '',
                   'tab\tname', 'é', 'a..b', 'new\nline')


def single(**changes):
    data = copy.deepcopy(SINGLE)
    data.update(changes)
    return data


def refused(data):
    with pytest.raises(DataMapError) as caught:
        load_data_map(data)
    return str(caught.value)


def test_the_example_single_tenant_map_loads():
    data_map = load_data_map_file(SINGLE_DATA_MAP)
    assert data_map.single_tenant and data_map.tenancy == 'single' and data_map.tenant == 'main'
    assert data_map.subject_tenant_column is None and data_map.tenant_lookup is None
    assert all(table.tenant_column is None for table in data_map.tables.values())
    # Secrets are never exported: the strategy the export leaves out.
    assert data_map.tables['user'].strategies()['password_hash'] == 'secret' == data_map.tables['user'].strategies()['api_token']
    # Two-sided relations: either column reaches the subject; each side has its own strategies.
    assert [side.column for side in data_map.tables['followers'].sides] == ['follower_id', 'followed_id']
    message = data_map.tables['message']
    assert message.strategies('sender_id') == {'body': 'redact'} and message.strategies('recipient_id') == {}
    assert data_map.subject_fingerprint_columns == ('member_since',)
    assert data_map.erase_order()[-1] == 'user'
    with_consent = load_data_map(single_tenant_map())
    assert with_consent.consent is not None and with_consent.consent.tenant_column is None


def test_a_single_tenant_map_without_a_fixed_name():
    data_map = load_data_map(SINGLE)
    assert data_map.single_tenant and data_map.tenant is None and data_map.tables['user'].tenant_column is None


def test_a_map_without_tenancy_is_multi_tenant_and_unchanged():
    data_map = load_data_map(MULTI)
    assert not data_map.single_tenant and data_map.tenancy == 'column' and data_map.tenant is None
    assert data_map.subject_tenant_column == 'tenant_id' and data_map.tables['users'].tenant_column == 'tenant_id'
    assert load_data_map({**MULTI, 'tenancy': 'column'}) == data_map


@pytest.mark.parametrize('subject', [{'table': 'users'}, {'table': 'users', 'tenant_column': None}])
def test_a_forgotten_tenant_column_names_both_ways_out(subject):
    message = refused({**MULTI, 'subject': subject})
    assert 'subject.tenant_column: is required' in message
    assert 'tenancy: single' in message and 'tenant column' in message
    assert 'None is not a valid SQL identifier' not in message


def test_a_hostile_tenant_column_is_still_refused_in_a_multi_tenant_map():
    message = refused({**MULTI, 'subject': {'table': 'users', 'tenant_column': 'tenant_id; DROP TABLE users'}})
    assert 'subject.tenant_column' in message and 'is not a valid SQL identifier' in message


@pytest.mark.parametrize('where', ['subject', 'table', 'other_table', 'consent'])
def test_a_single_tenant_map_with_a_tenant_column_anywhere_is_refused(where):
    data = single()
    if where == 'subject':
        data['subject'] = {**data['subject'], 'tenant_column': 'tenant_id'}
    elif where == 'table':
        data['tables']['user']['tenant_column'] = 'tenant_id'
    elif where == 'other_table':
        data['tables']['message']['tenant_column'] = 'org_id'
    else:
        data['consent'] = {'table': 'consent', 'subject_column': 'user_id', 'tenant_column': 'tenant_id'}
    message = refused(data)
    assert 'tenant_column: a single-tenant data map (tenancy: single) has no tenant column' in message
    assert 'declare tenancy: column' in message


def test_a_single_tenant_map_with_a_tenant_lookup_is_refused():
    message = refused(single(tenant_lookup={'table': 'tenants', 'key_column': 'slug'}))
    assert 'tenant_lookup: a single-tenant data map (tenancy: single) has no tenants to look up' in message


def test_a_fixed_tenant_name_in_a_multi_tenant_map_is_refused():
    message = refused({**MULTI, 'tenant': 'main'})
    assert 'tenant: a fixed tenant name is only for a single-tenant data map' in message


@pytest.mark.parametrize('tenancy', ['multi', 'Single', '', None, 1, ['single'], {'single': True}, "single'; --"])
def test_an_unknown_tenancy_is_refused(tenancy):
    message = refused(single(tenancy=tenancy))
    assert 'tenancy: unknown tenancy' in message and 'expected column' in message


@pytest.mark.parametrize('name', HOSTILE_TENANTS)
def test_a_hostile_fixed_tenant_name_is_refused(name):
    message = refused(single(tenant=name))
    assert message.count('tenant: ') == 1 and 'is not a valid tenant name' in message
    assert len(message) < 400  # a very long name is cut in the message


@pytest.mark.parametrize('name', [1, True, ['main'], {'a': 1}, 1.5])
def test_a_fixed_tenant_name_that_is_no_string_is_refused(name):
    assert 'tenant: must be a string' in refused(single(tenant=name))


@pytest.mark.parametrize('name', ['main', 'acme-prod', 'site_2', 'a.b', 'A' * 63, '7'])
def test_plain_tenant_names_are_accepted(name):
    assert tenant_name_problem(name) is None
    assert load_data_map(single(tenant=name)).tenant == name


def test_every_table_still_reaches_the_subject_through_declared_relations():
    data = single()
    data['tables']['notes'] = {'erasure': 'delete'}
    data['tables']['tags'] = {'parent': {'table': 'missing', 'column': 'note_id', 'references': 'id'}}
    message = refused(data)
    assert 'tables.notes: needs subject_columns' in message and "tables.tags.parent.table: 'missing' is not a mapped table" in message


def test_identifiers_are_still_validated_in_a_single_tenant_map():
    data = single()
    data['tables']['message']['columns'] = {'body"; --': 'redact'}
    data['subject'] = {'table': 'user; DROP', 'id_column': 'id'}
    message = refused(data)
    assert "subject.table: 'user; DROP' is not a valid SQL identifier" in message and 'tables.message.columns' in message


def test_the_request_tenant_of_a_single_tenant_database():
    fixed = load_data_map(single(tenant='main'))
    free = load_data_map(SINGLE)
    assert single_tenant_name(fixed, None) == single_tenant_name(fixed, '') == single_tenant_name(fixed, 'main') == 'main'
    assert single_tenant_name(free, None) == DEFAULT_SINGLE_TENANT == 'default'
    assert single_tenant_name(free, 'shop') == 'shop'
    with pytest.raises(RgpdError, match=r"tenant 'acme' is not the tenant of this database: .* names its tenant 'main'"):
        single_tenant_name(fixed, 'acme')
    for name in HOSTILE_TENANTS:
        if name:
            with pytest.raises(RgpdError, match='is not a valid tenant name'):
                single_tenant_name(free, name)
