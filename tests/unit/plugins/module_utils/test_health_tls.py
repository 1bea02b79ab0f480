# Copyright (c) Dihya ops maintainers
# GNU General Public License v3.0+ (see LICENSES/GPL-3.0-or-later.txt or https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later

"""Tests of the tls_cert check against loopback TLS servers with test certificates."""

from __future__ import annotations

import datetime
import sys
import typing as t

import pytest

from ansible_collections.dihya.ops.plugins.module_utils import _probe_tls
from ansible_collections.dihya.ops.tests.unit.plugins.module_utils.health_utils import assert_error, check

if t.TYPE_CHECKING:
    from ansible_collections.dihya.ops.tests.unit.conftest import Server, TLSMaterial


# ---------------------------------------------------------------------------
# TLS certificate
# ---------------------------------------------------------------------------

class TestTlsCert:
    def test_expires_soon(self, https_server: Server) -> None:
        result = check('tls_cert', host='127.0.0.1', port=https_server.port)
        assert result.status == 'failed'
        assert result.message == 'expires in 5 days (< 14)'
        assert result.details['days_left'] == 5
        assert 'CN=localhost' in result.details['subject']
        assert 'CN=Dihya test CA' in result.details['issuer']
        assert result.details['not_after'] > result.details['not_before']

    def test_valid_long_enough(self, https_server: Server) -> None:
        result = check('tls_cert', host='127.0.0.1', port=https_server.port, min_days_valid=5)
        assert result.healthy
        assert result.message == 'expires in 5 days'

    def test_validation_with_ca_and_server_name(self, https_server: Server, tls_material: TLSMaterial) -> None:
        options: dict[str, t.Any] = dict(host='127.0.0.1', port=https_server.port, min_days_valid=1, validate_certs=True)
        assert check('tls_cert', ca_path=tls_material.ca_path, server_name='localhost', **options).healthy
        result = check('tls_cert', ca_path=tls_material.ca_path, server_name='other.example', **options)
        assert result.message.startswith('certificate verification failed: ')
        assert check('tls_cert', **options).message.startswith('certificate verification failed: ')

    def test_expired(self, tls_server_factory: t.Callable[[str], Server]) -> None:
        server = tls_server_factory('expired.pem')
        result = check('tls_cert', host='127.0.0.1', port=server.port)
        assert result.message == 'expired 2 day(s) ago'
        assert result.details['days_left'] == -3

    def test_not_yet_valid(self, tls_server_factory: t.Callable[[str], Server]) -> None:
        server = tls_server_factory('future.pem')
        result = check('tls_cert', host='127.0.0.1', port=server.port)
        assert result.message.startswith('not valid before ')

    def test_connection_refused(self, closed_port: int) -> None:
        result = check('tls_cert', host='127.0.0.1', port=closed_port)
        assert result.message == 'connection refused'
        assert result.details == {'host': '127.0.0.1', 'port': closed_port}

    def test_handshake_timeout(self, silent_listener: int) -> None:
        result = check('tls_cert', host='127.0.0.1', port=silent_listener, timeout=0.3)
        assert result.message == 'deadline exceeded during the TLS handshake (timeout 0.3 s)'

    def test_cryptography_missing(self, monkeypatch: pytest.MonkeyPatch) -> None:
        monkeypatch.setitem(sys.modules, 'cryptography.x509', None)
        assert_error(check('tls_cert', host='127.0.0.1'), 'a tls_cert check needs the cryptography Python library')

    @pytest.mark.parametrize('options, message', [
        ({}, 'host is required for a tls_cert check'),
        ({'host': 'h', 'port': 0}, 'port must be an integer between 1 and 65535'),
        ({'host': 'h', 'min_days_valid': -1}, 'min_days_valid must be an integer of 0 or more'),
        ({'host': 'h', 'min_days_valid': 1.5}, 'min_days_valid must be an integer'),
        ({'host': 'h', 'url': 'https://h/'}, 'option(s) not valid for a tls_cert check: url'),
    ])
    def test_invalid_options(self, options: dict[str, t.Any], message: str) -> None:
        assert_error(check('tls_cert', **options), message)

    def test_expiry_less_than_a_day_ago(self, monkeypatch: pytest.MonkeyPatch, https_server: Server) -> None:
        class Later(datetime.datetime):
            @classmethod
            def now(cls, tz: datetime.tzinfo | None = None) -> t.Self:
                return super().now(tz) + datetime.timedelta(days=5, hours=1, minutes=30)

        # The module the tls_cert check reads the time from.
        assert _probe_tls.datetime is datetime  # type: ignore[attr-defined]
        monkeypatch.setattr(datetime, 'datetime', Later)
        assert check('tls_cert', host='127.0.0.1', port=https_server.port).message == 'expired less than a day ago'
