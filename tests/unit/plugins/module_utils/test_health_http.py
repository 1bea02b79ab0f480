# Copyright (c) Dihya ops maintainers
# GNU General Public License v3.0+ (see LICENSES/GPL-3.0-or-later.txt or https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later

"""Tests of the http and https checks against real loopback servers."""

from __future__ import annotations

import json
import pathlib
import re
import time
import typing as t

import pytest

from ansible_collections.dihya.ops.plugins.module_utils import _probe_http
from ansible_collections.dihya.ops.plugins.module_utils._health import CheckSpec, run_checks
from ansible_collections.dihya.ops.plugins.module_utils._probe_common import as_text
from ansible_collections.dihya.ops.tests.unit.plugins.module_utils.health_utils import assert_error, check

if t.TYPE_CHECKING:
    from ansible_collections.dihya.ops.tests.unit.conftest import Server, TLSMaterial


# ---------------------------------------------------------------------------
# HTTP
# ---------------------------------------------------------------------------

class TestHttp:
    def test_healthy_endpoint(self, http_server: Server) -> None:
        result = check('http', url=http_server.url('/ok'))
        assert result.healthy and result.status == 'ok'
        assert result.message == 'HTTP 200'
        assert result.details['status_code'] == 200
        assert result.attempts == 1
        assert 0 < result.latency_seconds < 2

    def test_unexpected_status(self, http_server: Server) -> None:
        result = check('http', url=http_server.url('/unavailable'))
        assert result.status == 'failed' and not result.healthy
        assert result.message == 'HTTP 503 not in [200]'
        assert result.details['status_code'] == 503

    def test_accepted_status_codes(self, http_server: Server) -> None:
        assert check('http', url=http_server.url('/unavailable'), status_codes=[200, 503]).healthy

    def test_redirects_are_not_followed(self, http_server: Server) -> None:
        assert check('http', url=http_server.url('/redirect')).message == 'HTTP 302 not in [200]'
        assert check('http', url=http_server.url('/redirect'), status_codes=[302]).healthy

    def test_unknown_path(self, http_server: Server) -> None:
        assert check('http', url=http_server.url('/nope')).message == 'HTTP 404 not in [200]'

    def test_body_regex(self, http_server: Server) -> None:
        assert check('http', url=http_server.url('/text'), body_regex=r'ready: (yes|maybe)').healthy
        result = check('http', url=http_server.url('/text'), body_regex=r'ready: no')
        assert not result.healthy
        assert result.message == "HTTP 200 but the body does not match 'ready: no'"

    def test_status_is_checked_before_the_body(self, http_server: Server) -> None:
        result = check('http', url=http_server.url('/unavailable'), body_regex='never')
        assert result.message == 'HTTP 503 not in [200]'

    @pytest.mark.parametrize('field, value', [
        ('database.status', 'ok'),
        ('database.latency_ms', 3),
        ('database.latency_ms', '3'),
        ('replicas.0.state', 'up'),
        ('ready', True),
        ('ready', 'true'),
    ])
    def test_json_field_value(self, http_server: Server, field: str, value: t.Any) -> None:
        result = check('http', url=http_server.url('/ok'), json_field=field, json_value=value)
        assert result.healthy, result.message
        assert result.details['json_value'] == as_text(value)

    def test_json_field_presence(self, http_server: Server) -> None:
        assert check('http', url=http_server.url('/ok'), json_field='database').healthy

    def test_json_value_mismatch(self, http_server: Server) -> None:
        result = check('http', url=http_server.url('/unavailable'), status_codes=[503], json_field='status', json_value='ok')
        assert not result.healthy
        assert result.message == "JSON field 'status' is 'down', expected 'ok'"

    @pytest.mark.parametrize('field', ['database.missing', 'replicas.5.state', 'replicas.x', 'status.deeper'])
    def test_json_field_missing(self, http_server: Server, field: str) -> None:
        result = check('http', url=http_server.url('/ok'), json_field=field)
        assert result.status == 'failed'
        assert result.message == f'JSON field {field!r} not found'

    def test_invalid_json(self, http_server: Server) -> None:
        result = check('http', url=http_server.url('/badjson'), json_field='status')
        assert result.status == 'failed'
        assert result.message == 'HTTP 200 but the body is not valid JSON'

    def test_latency_budget(self, http_server: Server) -> None:
        result = check('http', url=http_server.url('/slow'), latency_budget=0.1)
        assert result.status == 'failed'
        assert result.message.startswith('latency 0.') and result.message.endswith('s over budget 0.1s')
        assert result.details['status_code'] == 200
        assert check('http', url=http_server.url('/slow'), latency_budget=2).healthy

    def test_timeout(self, http_server: Server) -> None:
        result = check('http', url=http_server.url('/slow'), timeout=0.1)
        assert result.status == 'failed'
        assert result.message == 'deadline exceeded while reading the status line and headers (timeout 0.1 s)'
        assert result.latency_seconds < 0.3

    def test_total_timeout_while_reading_the_body(self, http_server: Server) -> None:
        # The server sends one byte every 0.1 s for 2 s: each read is fast, the whole body is not.
        started = time.monotonic()
        result = check('http', url=http_server.url('/drip'), timeout=0.35)
        assert result.message == 'deadline exceeded while reading the response body (timeout 0.35 s)'
        assert time.monotonic() - started < 1.5

    def test_connection_refused(self, closed_port: int) -> None:
        result = check('http', url=f'http://127.0.0.1:{closed_port}/')
        assert result.status == 'failed'
        assert result.message == 'connection refused'

    def test_connection_closed_without_response(self, http_server: Server) -> None:
        assert check('http', url=http_server.url('/hangup')).message == 'connection closed without a response'

    def test_large_body_is_capped(self, http_server: Server) -> None:
        result = check('http', url=http_server.url('/big'), body_regex='x$')
        assert result.healthy
        assert result.details['body_bytes'] == _probe_http.MAX_BODY_BYTES

    def test_method_headers_and_body(self, http_server: Server) -> None:
        result = check(
            'http', url=http_server.url('/echo?x=1'), method='post', body='{"ping": 1}',
            headers={'X-Token': 'abc', 'Content-Type': 'application/json'},
            body_regex=r'"method": "POST".*"path": "/echo\?x=1".*"x-token": "abc".*"body": "\{\\"ping\\": 1\}"',
        )
        assert result.healthy, result.message

    def test_default_user_agent_and_basic_auth(self, http_server: Server) -> None:
        url = http_server.url('/echo')
        auth: dict[str, t.Any] = {'url_username': 'user', 'url_password': 'p@ss'}
        result = check('http', url=url, json_field='headers.authorization', json_value='Basic dXNlcjpwQHNz', **auth)
        assert result.healthy, result.message
        assert check('http', url=url, json_field='headers.authorization', json_value='Basic dXNlcjo=', url_username='user').healthy
        assert check('http', url=url, json_field='headers.user-agent', json_value='dihya.ops.health_check', **auth).healthy
        assert check('http', url=url, headers={'User-Agent': 'probe/1'}, json_field='headers.user-agent', json_value='probe/1').healthy

    @pytest.mark.parametrize('options, message', [
        ({'url_password': 'x'}, 'url_password needs url_username'),
        ({'url_username': 'a:b'}, 'url_username must be a string without colons'),
        ({'url_username': 'a', 'url_password': 'x\ny'}, 'without colons or control characters'),
        ({'url_username': 'a', 'headers': {'authorization': 'Bearer t'}}, 'not both'),
    ])
    def test_basic_auth_options(self, http_server: Server, options: dict[str, t.Any], message: str) -> None:
        assert_error(check('http', url=http_server.url('/echo'), **options), message)

    @pytest.mark.parametrize('url', [
        'http://user:Url-Pa55word@127.0.0.1:{port}/echo',
        'http://user:Url%2DPa55word@127.0.0.1:{port}/echo',
        'https://user:Url-Pa55word@127.0.0.1:{port}/echo',
        'http://:Url-Pa55word@127.0.0.1:{port}/echo',
        'http://Url-Pa55word@127.0.0.1:{port}/echo',
        'http://user:Url-Pa55word@[::1]:{port}/echo',
        'HTTP://user:Url-Pa55word@127.0.0.1:{port}/echo?x=@',
        'http://user:Url-Pa55word@127.0.0.1:{port}',
        'http://user:Url-Pa55word@127.0.0.1:notaport/',
    ])
    def test_credentials_in_the_url_are_refused_and_masked(self, http_server: Server, url: str) -> None:
        url = url.format(port=http_server.port)
        result, other = run_checks([CheckSpec(f'api {url}', 'http', {'url': url}), CheckSpec('other', 'https', {'url': url})])
        assert_error(result, 'url must not hold a user name or password')
        assert_error(other, 'url must not hold a user name or password')
        assert 'url_username and url_password' in result.message
        text = json.dumps(result.to_dict())
        assert 'Url-Pa55word' not in text and 'Url%2DPa55word' not in text
        assert re.match(r'api (?i:https?)://\*{8}@', result.name), result.name
        assert result.message == _probe_http.URL_CREDENTIALS_REFUSED

    def test_head_request(self, http_server: Server) -> None:
        result = check('http', url=http_server.url('/ok'), method='HEAD')
        assert result.healthy and result.details['body_bytes'] == 0

    def test_proxy_environment_is_ignored(self, http_server: Server, closed_port: int, monkeypatch: pytest.MonkeyPatch) -> None:
        for name in ('http_proxy', 'HTTP_PROXY', 'https_proxy', 'HTTPS_PROXY', 'all_proxy', 'ALL_PROXY'):
            monkeypatch.setenv(name, f'http://127.0.0.1:{closed_port}')
        monkeypatch.delenv('no_proxy', raising=False)
        monkeypatch.delenv('NO_PROXY', raising=False)
        assert check('http', url=http_server.url('/ok')).healthy

    @pytest.mark.parametrize('url, message', [
        ('ftp://127.0.0.1/', "url must use the http or https scheme (got 'ftp')"),
        ('127.0.0.1:8080/health', 'url must use the http or https scheme'),
        ('not a url', "url must use the http or https scheme (got 'none')"),
        ('http://', 'url has no host'),
        ('http:///healthz', 'url has no host'),
        ('http://[::1/', 'malformed url'),
        ('http://127.0.0.1:99999/', 'malformed url'),
        ('http://127.0.0.1:port/', 'malformed url'),
        ('http://127.0.0.1:0/', 'url port must be between 1 and 65535'),
        ('http://127.0.0.1/a b', 'url must not contain whitespace'),
        ('http://127.0.0.1/\x07', 'url must not contain whitespace or control characters'),
    ])
    def test_malformed_url(self, url: str, message: str) -> None:
        assert_error(check('http', url=url), message)

    @pytest.mark.parametrize('options, message', [
        ({}, 'url is required for a http check'),
        ({'url': 42}, 'url must be a string'),
        ({'url': 'http://h/', 'method': 'BREW'}, 'method must be one of'),
        ({'url': 'http://h/', 'status_codes': []}, 'status_codes must be a non-empty list'),
        ({'url': 'http://h/', 'status_codes': [200, 999]}, 'status_codes must be a non-empty list'),
        ({'url': 'http://h/', 'status_codes': [True]}, 'status_codes must be a non-empty list'),
        ({'url': 'http://h/', 'body_regex': '(unclosed'}, 'body_regex is not a valid regular expression'),
        ({'url': 'http://h/', 'json_field': 'a..b'}, 'must be a dotted path'),
        ({'url': 'http://h/', 'json_value': 'ok'}, 'json_value needs json_field'),
        ({'url': 'http://h/', 'headers': ['X-A: b']}, 'headers must be a dictionary'),
        ({'url': 'http://h/', 'headers': {'Bad Name': 'x'}}, "invalid HTTP header name 'Bad Name'"),
        ({'url': 'http://h/', 'headers': {'X-A': 'a\r\nX-Injected: 1'}}, 'must not contain line breaks'),
        ({'url': 'http://h/', 'validate_certs': 'yes'}, 'validate_certs must be a boolean'),
        ({'url': 'http://h/', 'port': 80}, 'option(s) not valid for a http check: port'),
        ({'url': 'http://h/', 'dsn': 'x', 'path': '/'}, 'option(s) not valid for a http check: dsn, path'),
    ])
    def test_invalid_options(self, options: dict[str, t.Any], message: str) -> None:
        assert_error(check('http', **options), message)

    def test_none_options_are_ignored(self, http_server: Server) -> None:
        assert check('http', url=http_server.url('/ok'), port=None, method=None).healthy


class TestHttps:
    def test_without_validation(self, https_server: Server) -> None:
        result = check('https', url=https_server.url('/ok'), validate_certs=False)
        assert result.healthy, result.message

    def test_validation_against_the_system_store_fails(self, https_server: Server) -> None:
        result = check('https', url=https_server.url('/ok'))
        assert result.status == 'failed'
        assert result.message.startswith('certificate verification failed: ')

    def test_validation_with_ca_path(self, https_server: Server, tls_material: TLSMaterial) -> None:
        assert check('https', url=https_server.url('/ok'), ca_path=tls_material.ca_path).healthy
        assert check('https', url=https_server.url('/ok', host='localhost'), ca_path=tls_material.ca_path).healthy

    def test_http_check_accepts_https_urls(self, https_server: Server, tls_material: TLSMaterial) -> None:
        assert check('http', url=https_server.url('/ok'), ca_path=tls_material.ca_path).healthy

    def test_https_check_needs_https_url(self, http_server: Server) -> None:
        assert_error(check('https', url=http_server.url('/ok')), 'an https check needs an https:// url')

    def test_ca_directory(self, https_server: Server, tls_material: TLSMaterial) -> None:
        # A directory is used as an OpenSSL hashed CA directory; this one has no hash links.
        result = check('https', url=https_server.url('/ok'), ca_path=tls_material.directory)
        assert result.message.startswith('certificate verification failed')

    def test_missing_ca_path(self, https_server: Server, tmp_path: pathlib.Path) -> None:
        assert_error(check('https', url=https_server.url('/ok'), ca_path=str(tmp_path / 'nope.pem')), 'ca_path')

    def test_unusable_ca_file(self, https_server: Server, tmp_path: pathlib.Path) -> None:
        bad = tmp_path / 'bad.pem'
        bad.write_text('not a certificate\n')
        assert_error(check('https', url=https_server.url('/ok'), ca_path=str(bad)), 'cannot load CA certificates from')

    def test_plain_http_server(self, http_server: Server) -> None:
        result = check('https', url=f'https://127.0.0.1:{http_server.port}/ok', validate_certs=False)
        assert result.status == 'failed'
        assert result.message.startswith('TLS error: ')
