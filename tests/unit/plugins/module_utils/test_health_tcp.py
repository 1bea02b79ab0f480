# Copyright (c) Dihya ops maintainers
# GNU General Public License v3.0+ (see LICENSES/GPL-3.0-or-later.txt or https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later

"""Tests of the tcp check against loopback ports."""

from __future__ import annotations

import typing as t

import pytest

from ansible_collections.dihya.ops.tests.unit.plugins.module_utils.health_utils import assert_error, check

if t.TYPE_CHECKING:
    from ansible_collections.dihya.ops.tests.unit.conftest import Server


# ---------------------------------------------------------------------------
# TCP
# ---------------------------------------------------------------------------

class TestTcp:
    def test_open_port(self, http_server: Server) -> None:
        result = check('tcp', host='127.0.0.1', port=http_server.port)
        assert result.healthy
        assert result.message == f'connected to 127.0.0.1:{http_server.port}'
        assert result.details == {'host': '127.0.0.1', 'port': http_server.port, 'address': '127.0.0.1'}

    def test_closed_port(self, closed_port: int) -> None:
        result = check('tcp', host='127.0.0.1', port=closed_port)
        assert result.status == 'failed'
        assert result.message == 'connection refused'
        assert result.details == {'host': '127.0.0.1', 'port': closed_port}

    @pytest.mark.parametrize('options, message', [
        ({'port': 80}, 'host is required for a tcp check'),
        ({'host': '127.0.0.1'}, 'port is required for a tcp check'),
        ({'host': '127.0.0.1', 'port': 0}, 'port must be an integer between 1 and 65535 (got 0)'),
        ({'host': '127.0.0.1', 'port': 65536}, 'port must be an integer between 1 and 65535'),
        ({'host': '127.0.0.1', 'port': '80'}, 'port must be an integer'),
        ({'host': '127.0.0.1', 'port': True}, 'port must be an integer'),
        ({'host': '127.0.0.1', 'port': 80, 'url': 'http://x/'}, 'option(s) not valid for a tcp check: url'),
    ])
    def test_invalid_options(self, options: dict[str, t.Any], message: str) -> None:
        assert_error(check('tcp', **options), message)
