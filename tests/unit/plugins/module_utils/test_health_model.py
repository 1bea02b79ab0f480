# Copyright (c) Dihya ops maintainers
# GNU General Public License v3.0+ (see LICENSES/GPL-3.0-or-later.txt or https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later

"""The backend model's health definition as one check: the engine's mapping and the dihya.ops.backend_health_check filter.

The checks the mapping builds are run against a real HTTP server on loopback serving an HTML login page, so
"an HTML page is healthy with the defaults" is what the probe itself says.
"""

from __future__ import annotations

import typing as t

import pytest
import yaml
from ansible.errors import AnsibleFilterError

from ansible_collections.dihya.ops.plugins.filter.backend_health_check import FilterModule, backend_health_check
from ansible_collections.dihya.ops.plugins.module_utils._health import MODEL_CHECK_NAME, build_specs, model_http_check, run_checks
from ansible_collections.dihya.ops.plugins.module_utils._probe_common import CheckConfigError
from ansible_collections.dihya.ops.tests.support.fleet import ROOT
from ansible_collections.dihya.ops.tests.support.login_page import LOGIN_PAGE, login_page_server

URL = 'http://127.0.0.1:8000/healthz'
HTML = LOGIN_PAGE.decode()


@pytest.fixture(scope='module')
def login_page() -> t.Iterator[str]:
    """The base URL of a loopback server whose /login is an HTML page and / a redirect to it."""
    with login_page_server() as base:
        yield base


def run(check: dict[str, t.Any]) -> t.Any:
    [result] = run_checks(build_specs([check], 5.0))
    return result


def test_the_defaults_check_the_status_only():
    assert model_http_check(URL) == {'name': MODEL_CHECK_NAME, 'type': 'http', 'url': URL, 'status_codes': [200], 'validate_certs': True}


def test_an_https_url_makes_an_https_check():
    assert model_http_check('HTTPS://api.example.org/health')['type'] == 'https'


def test_a_json_field_brings_its_value():
    check = model_http_check(URL, json_field='database.status', json_value='up')
    assert (check['json_field'], check['json_value']) == ('database.status', 'up')
    assert model_http_check(URL, json_field='ready', json_value=True)['json_value'] == 'true'
    # Without a field, the value says nothing.
    assert 'json_value' not in model_http_check(URL, json_value='ok')


def test_body_regex_credentials_and_latency_budget():
    check = model_http_check(URL, body_regex='Sign in', username='probe', password='s3cret', latency_budget=1.5, expected_status=[200, 302])
    assert check['body_regex'] == 'Sign in'
    assert (check['url_username'], check['url_password']) == ('probe', 's3cret')
    assert check['latency_budget'] == 1.5
    assert check['status_codes'] == [200, 302]


@pytest.mark.parametrize(('kwargs', 'message'), [
    ({'expected_status': []}, 'must not be empty'),
    ({'expected_status': [200, 'ok']}, "got 'ok'"),
    ({'expected_status': [99]}, 'between 100 and 599'),
    ({'expected_status': [True]}, 'got True'),
    ({'body_regex': '(unclosed'}, 'not a valid regular expression'),
    ({'body_regex': 42}, 'body_regex must be a string'),
    ({'json_field': 'a..b'}, 'dotted path'),
    ({'password': 'alone'}, 'needs a health user name'),
    ({'username': 'a:b'}, 'without colons'),
    ({'validate_certs': 'yes'}, 'validate_certs must be a boolean'),
], ids=['no-status', 'word-status', 'low-status', 'bool-status', 'bad-regex', 'regex-type', 'bad-field', 'password-only', 'colon-user',
        'string-certs'])
def test_bad_values_are_refused_with_the_checks_own_rules(kwargs, message):
    with pytest.raises(CheckConfigError, match=message):
        model_http_check(URL, **kwargs)


@pytest.mark.parametrize('url', ['', None, 42, 'ftp://127.0.0.1/', 'http://user:hunter2@127.0.0.1/healthz', 'http://127.0.0.1/he alth'],
                         ids=['empty', 'none', 'number', 'ftp', 'credentials', 'space'])
def test_bad_urls_are_refused_and_never_echo_a_password(url):
    with pytest.raises(CheckConfigError) as exc:
        model_http_check(url)
    assert 'hunter2' not in str(exc.value)


def test_status_codes_given_as_text_on_the_command_line_are_numbers():
    assert model_http_check(URL, expected_status=['200', ' 204 '])['status_codes'] == [200, 204]
    assert model_http_check(URL, expected_status=301)['status_codes'] == [301]


def test_an_html_page_is_healthy_with_the_defaults(login_page: str):
    result = run(model_http_check(login_page + '/login'))
    assert result.healthy, result


def test_an_html_page_fails_the_demo_json_check_clearly(login_page: str):
    result = run(model_http_check(login_page + '/login', json_field='status'))
    assert not result.healthy
    assert result.message == 'HTTP 200 but the body is not valid JSON'


def test_a_body_regex_that_does_not_match_says_so(login_page: str):
    assert run(model_http_check(login_page + '/login', body_regex='<title>Sign in</title>')).healthy
    result = run(model_http_check(login_page + '/login', body_regex='Welcome back'))
    assert not result.healthy
    assert result.message == "HTTP 200 but the body does not match 'Welcome back'"


def test_an_unexpected_status_fails(login_page: str):
    assert run(model_http_check(login_page + '/')).message == 'HTTP 302 not in [200]'
    assert run(model_http_check(login_page + '/', expected_status=[200, 302])).healthy


# ---------------------------------------------------------------------------
# The filter
# ---------------------------------------------------------------------------

def test_the_filter_is_registered_and_reads_booleans_as_ansible_does():
    assert FilterModule().filters()['backend_health_check'] is backend_health_check
    assert backend_health_check(URL, validate_certs='no')['validate_certs'] is False
    assert backend_health_check(URL, validate_certs='True')['validate_certs'] is True
    assert backend_health_check(URL, latency_budget='2.5')['latency_budget'] == 2.5
    assert 'latency_budget' not in backend_health_check(URL, latency_budget='')


@pytest.mark.parametrize(('kwargs', 'message'), [
    ({'validate_certs': 'perhaps'}, 'validate_certs must be a boolean'),
    ({'latency_budget': 'soon'}, 'latency_budget must be a number'),
    ({'expected_status': ['x']}, 'expected status codes'),
    ({'body_regex': '['}, 'not a valid regular expression'),
], ids=['certs', 'budget', 'status', 'regex'])
def test_the_filter_fails_the_templating_with_a_message_naming_it(kwargs, message):
    with pytest.raises(AnsibleFilterError, match=f'dihya.ops.backend_health_check: .*{message}'):
        backend_health_check(URL, **kwargs)


def test_the_filter_documents_the_model_defaults():
    from ansible_collections.dihya.ops.plugins.filter import backend_health_check as plugin
    options = yaml.safe_load(plugin.DOCUMENTATION)['options']
    assert options['expected_status']['default'] == [200]
    assert options['json_field']['default'] == '' and options['body_regex']['default'] == ''
    assert options['json_value']['default'] == 'ok' and options['validate_certs']['default'] is True


# ---------------------------------------------------------------------------
# Both roles build their check with the filter, from the same model variables
# ---------------------------------------------------------------------------

def _yaml(path: str) -> t.Any:
    return yaml.safe_load((ROOT / path).read_text())


def test_check_health_and_the_restart_gate_build_the_same_check_from_the_model():
    check_health = _yaml('roles/check_health/defaults/main.yml')
    restart = _yaml('roles/restart_services/defaults/main.yml')
    for option in ('expected_status', 'body_regex', 'json_field', 'json_value'):
        assert check_health[f'check_health_{option}'] == restart[f'restart_services_health_{option}'], option
        assert f'dihya_backend_health_{option}' in check_health[f'check_health_{option}']
    assert 'dihya_backend_health_validate_certs' in check_health['check_health_validate_certs']
    [gate] = restart['restart_services_health_checks']
    [http] = _yaml('roles/check_health/vars/main.yml')['_check_health_http_checks']
    for template in (gate, http):
        assert 'dihya.ops.backend_health_check(' in template
    # No check list of the gate's own: one template, with no JSON field or value of its own.
    assert isinstance(gate, str) and "'status'" not in gate and "'ok'" not in gate and 'json_field:' not in gate


def test_the_demo_inventory_checks_the_json_status_and_the_defaults_do_not():
    demo = _yaml('inventories/local/group_vars/dihya_backend/main.yml')
    assert (demo['dihya_backend_health_json_field'], demo['dihya_backend_health_json_value']) == ('status', 'ok')
    assert "default('')" in _yaml('roles/check_health/defaults/main.yml')['check_health_json_field']
