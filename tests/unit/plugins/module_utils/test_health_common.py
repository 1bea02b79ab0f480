# Copyright (c) Dihya ops maintainers
# GNU General Public License v3.0+ (see LICENSES/GPL-3.0-or-later.txt or https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later

"""Tests of what the probe families share: values as text, error descriptions, outcomes."""

from __future__ import annotations

import http.client
import socket
import ssl
import typing as t

import pytest

from ansible_collections.dihya.ops.plugins.module_utils._probe_common import Outcome, as_text, describe_error


@pytest.mark.parametrize('value, text', [
    ('ok', 'ok'), (b'ok', 'ok'), (1, '1'), (1.5, '1.5'), (True, 'true'), (False, 'false'), (None, 'null'),
    ({'b': 1, 'a': [1]}, '{"a": [1], "b": 1}'), ([1, 'x'], '[1, "x"]'),
])
def test_as_text(value: t.Any, text: str) -> None:
    assert as_text(value) == text


@pytest.mark.parametrize('exc, text', [
    (ConnectionRefusedError(111, 'Connection refused'), 'connection refused'),
    (ConnectionResetError(104, 'Connection reset by peer'), 'connection reset by peer'),
    (http.client.RemoteDisconnected('Remote end closed connection'), 'connection closed without a response'),
    (socket.timeout('timed out'), 'timed out'),  # noqa: UP041 - the name older code raises
    (TimeoutError(), 'timed out'),
    (socket.gaierror(-2, 'Name or service not known'), 'cannot resolve host: Name or service not known'),
    (OSError(113, 'No route to host'), 'no route to host'),
    (FileNotFoundError(2, 'No such file or directory', '/x'), 'no such file or directory: /x'),
    (ssl.SSLError(1, 'boom'), 'TLS error: '),
    (http.client.BadStatusLine('garbage'), 'invalid HTTP response (BadStatusLine)'),
    (ValueError('odd'), 'ValueError: odd'),
    (KeyError(), 'KeyError'),
    (OSError('plain'), 'OSError: plain'),
])
def test_describe_error(exc: BaseException, text: str) -> None:
    assert describe_error(exc).startswith(text)


def test_outcome_defaults() -> None:
    assert Outcome(True, 'fine').details == {}
