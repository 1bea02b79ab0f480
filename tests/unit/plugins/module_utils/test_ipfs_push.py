# Copyright (c) Dihya ops maintainers
# GNU General Public License v3.0+ (see LICENSES/GPL-3.0-or-later.txt or https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later

"""Pushing a CAR to a Kubo-compatible receiver on loopback: what is sent, authentication, pin, failures, the deadline."""

from __future__ import annotations

import base64
import socket
import time

import pytest

from ansible_collections.dihya.ops.plugins.module_utils._ipfs_export import ExportPushError, ExportRequest, export
from ansible_collections.dihya.ops.plugins.module_utils._ipfs_push import PushTarget
from ansible_collections.dihya.ops.plugins.module_utils._ipfs_unixfs import IpfsError
from ansible_collections.dihya.ops.tests.ipfs.ipfs_utils import KuboReceiver, make_inputs, unused_port


@pytest.fixture(name='receiver')
def fixture_receiver():
    server = KuboReceiver()
    yield server
    server.close()


@pytest.fixture(name='site')
def fixture_site(tmp_path):
    root = make_inputs(tmp_path / 'root', ['one-byte', 'kubo-several-chunks'])
    (tmp_path / 'out').mkdir()
    return root, tmp_path / 'out'


def run(site, push, check_mode=False):
    root, out = site
    return export(ExportRequest(paths=[str(root / 'tree'), str(root / 'kubo-several-chunks')], dest=str(out / 'x.car'),
                                allowed_roots=[str(root)], force=True, push=push, check_mode=check_mode))


@pytest.mark.parametrize('pin', [False, True])
def test_push_sends_the_car(site, receiver, pin):
    result = run(site, PushTarget(receiver.url, pin=pin))
    assert result['changed'] is True
    assert result['push'] == {'endpoint': receiver.url + '/api/v0/dag/import', 'pinned': pin, 'roots': [result['root_cid']] if pin else []}
    request = receiver.received[-1]
    assert request.path == '/api/v0/dag/import' and request.query == {'pin-roots': ['true' if pin else 'false']}
    assert receiver.car() == (site[1] / 'x.car').read_bytes()
    assert 'Authorization' not in request.headers


def test_push_again_sends_again(site, receiver):
    run(site, None)
    result = run(site, PushTarget(receiver.url))
    assert result['car']['written'] is False and result['changed'] is True and len(receiver.received) == 1


def test_bearer_and_basic_authentication(site, receiver):
    receiver.token = 'kubo-token-canary'
    with pytest.raises(ExportPushError, match='HTTP 401: unauthorized'):
        run(site, PushTarget(receiver.url))
    result = run(site, PushTarget(receiver.url, token='kubo-token-canary'))
    assert result['push']['endpoint'].startswith('http://127.0.0.1:')
    assert 'kubo-token-canary' not in repr(result) and 'kubo-token-canary' not in repr(PushTarget(receiver.url, token='x'))
    receiver.token = None
    receiver.basic = base64.b64encode(b'ops:s3cret-canary').decode()
    result = run(site, PushTarget(receiver.url + '/', username='ops', password='s3cret-canary'))
    assert 's3cret-canary' not in repr(result)


def test_the_node_refuses(site, receiver):
    receiver.status = 500
    receiver.answer = [{'Message': 'blockstore full', 'Code': 0, 'Type': 'error'}]
    with pytest.raises(ExportPushError, match=r'HTTP 500: blockstore full\); the CAR file is kept at .*x\.car') as exc:
        run(site, PushTarget(receiver.url))
    assert (site[1] / 'x.car').exists() and exc.value.result['car']['written'] is True


def test_pin_error_and_wrong_root(site, receiver):
    receiver.answer = [{'Root': {'Cid': {'/': 'bafkreihdwdcefgh4dqkjv67uzcmw7ojee6xedzdetojuzjevtenxquvyku'}, 'PinErrorMsg': ''}}]
    with pytest.raises(ExportPushError, match='did not report pinning the root'):
        run(site, PushTarget(receiver.url, pin=True))
    receiver.answer = [{'Root': {'Cid': {'/': 'bafy'}, 'PinErrorMsg': 'pinning failed'}}]
    with pytest.raises(ExportPushError, match='could not pin'):
        run(site, PushTarget(receiver.url, pin=True))
    receiver.answer = [{'Stats': {}}, 'not an object']
    receiver.status = 404
    with pytest.raises(ExportPushError, match='HTTP 404'):
        run(site, PushTarget(receiver.url, pin=True))


def test_unreachable_endpoint_keeps_the_car(site):
    with pytest.raises(ExportPushError, match=r'cannot push the CAR.*the CAR file is kept at') as exc:
        run(site, PushTarget(f'http://127.0.0.1:{unused_port()}'))
    assert exc.value.result['car']['path'] == str(site[1] / 'x.car')
    assert (site[1] / 'x.car').stat().st_size == exc.value.result['car']['size']


def test_a_silent_node_is_bounded_by_the_deadline(site, receiver):
    receiver.stall.set()
    start = time.monotonic()
    with pytest.raises(ExportPushError, match='deadline'):
        run(site, PushTarget(receiver.url, timeout=0.5))
    assert time.monotonic() - start < 5


def test_a_node_that_never_accepts_is_bounded(site):
    # A listening socket whose backlog is full and that never accepts: the connection or the send waits.
    server = socket.socket()
    server.bind(('127.0.0.1', 0))
    server.listen(0)
    try:
        start = time.monotonic()
        with pytest.raises(ExportPushError):
            run(site, PushTarget(f'http://127.0.0.1:{server.getsockname()[1]}', timeout=0.5))
        assert time.monotonic() - start < 5
    finally:
        server.close()


def test_check_mode_pushes_nothing(site, receiver):
    result = run(site, PushTarget(receiver.url), check_mode=True)
    assert result['push']['skipped'] == 'check mode' and receiver.received == []


@pytest.mark.parametrize('target, message', [
    (PushTarget('ftp://127.0.0.1:5001'), 'http:// or https://'),
    (PushTarget('http://user:pw@127.0.0.1:5001'), 'must not hold a user name or password'),
    (PushTarget('http://127.0.0.1:5001?x=1'), 'query'),
    (PushTarget('http://127.0.0.1:99999'), 'not a valid URL'),
    (PushTarget('http://127.0.0.1:5001', token='t', username='u', password='p'), 'either a token'),
    (PushTarget('http://127.0.0.1:5001', username='u'), 'go together'),
    (PushTarget('http://127.0.0.1:5001', timeout=0), 'timeout'),
])
def test_bad_targets_are_refused_before_anything_is_written(site, target, message):
    with pytest.raises(IpfsError, match=message):
        run(site, target)
    assert not (site[1] / 'x.car').exists()


def test_ipv6_and_full_endpoint_urls():
    assert PushTarget('http://[::1]:5001').shown() == 'http://[::1]:5001/api/v0/dag/import'
    assert PushTarget('https://kubo.example/api/v0/dag/import').shown() == 'https://kubo.example/api/v0/dag/import'
    assert PushTarget('http://kubo.example/prefix/').shown() == 'http://kubo.example/prefix/api/v0/dag/import'
