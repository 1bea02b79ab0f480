# Copyright (c) Dihya ops maintainers
# GNU General Public License v3.0+ (see LICENSES/GPL-3.0-or-later.txt or https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later

"""The ipfs_export module: options, results, check mode, failures (the engine is tested in module_utils/test_ipfs_*)."""

from __future__ import annotations

import base64
import json
import os

import pytest

from ansible_collections.dihya.ops.plugins.modules import ipfs_export
from ansible_collections.dihya.ops.tests.ipfs.ipfs_utils import KuboReceiver, make_inputs, unused_port
from ansible_collections.dihya.ops.tests.unit.plugins.modules.utils import run_module

KEY = base64.urlsafe_b64encode(b'K' * 32).decode()
TOKEN = 'kubo-token-canary-51d0'


@pytest.fixture(name='site')
def fixture_site(tmp_path):
    root = make_inputs(tmp_path / 'root', ['one-byte'])
    (root / 'reports' / 'r.json').parent.mkdir()
    (root / 'reports' / 'r.json').write_text('{"ok": true}\n')
    (tmp_path / 'out').mkdir()
    return root, tmp_path / 'out'


def args(site, **options):
    root, out = site
    options.setdefault('paths', [str(root / 'reports')])
    options.setdefault('dest', str(out / 'x.car'))
    options.setdefault('allowed_roots', [str(root)])
    return options


def test_encrypted_export_then_unchanged(site):
    options = args(site, encrypt=True, key=KEY, key_id='k-2026', report_dirs=[str(site[0] / 'reports')])
    first = run_module(ipfs_export.main, options)
    assert not first.get('failed'), first
    assert first['changed'] is True and first['root_cid'].startswith('bafy') and first['inputs'][0]['kinds'] == ['report']
    assert first['encryption']['key_id'] == 'k-2026' and KEY not in json.dumps(first)
    assert os.stat(first['car']['path']).st_mode & 0o777 == 0o600
    again = run_module(ipfs_export.main, options)
    assert again['changed'] is False and again['root_cid'] == first['root_cid']


def test_check_mode_writes_nothing(site):
    result = run_module(ipfs_export.main, args(site, force=True, profile='ipfs-car', wrap=False, paths=[str(site[0] / 'one-byte')]),
                        check_mode=True)
    assert result['changed'] is True and result['car']['written'] is False and os.listdir(site[1]) == []
    assert result['root_cid'] == result['inputs'][0]['cid']


def test_refusal_is_a_clear_failure(site):
    result = run_module(ipfs_export.main, args(site))
    assert result['failed'] and 'not encrypted' in result['msg']
    result = run_module(ipfs_export.main, args(site, encrypt=True))
    assert result['failed'] and 'key' in result['msg']
    result = run_module(ipfs_export.main, args(site, force=True, paths=['/etc/passwd']))
    assert result['failed'] and 'outside the allowed roots' in result['msg']
    result = run_module(ipfs_export.main, args(site, force=True, profile='other'))
    assert result['failed'] and 'profile' in result['msg']


def test_push(site):
    receiver = KuboReceiver()
    receiver.token = TOKEN
    try:
        result = run_module(ipfs_export.main, args(site, force=True, push={'url': receiver.url, 'token': TOKEN, 'pin': True}))
    finally:
        receiver.close()
    assert not result.get('failed'), result
    assert result['push']['pinned'] is True and TOKEN not in json.dumps(result)


def test_push_to_nowhere_keeps_the_car(site):
    result = run_module(ipfs_export.main, args(site, force=True, push={'url': f'http://127.0.0.1:{unused_port()}', 'timeout': 5}))
    assert result['failed'] and 'the CAR file is kept at' in result['msg']
    assert result['car']['path'] == str(site[1] / 'x.car') and os.path.exists(result['car']['path'])


def test_an_unexpected_os_error_is_reported(site, monkeypatch):
    from ansible_collections.dihya.ops.plugins.module_utils import _ipfs_export

    def broken(request):
        raise PermissionError(13, 'Permission denied', request.dest)

    monkeypatch.setattr(ipfs_export, 'export', broken)
    assert _ipfs_export.export is not broken
    result = run_module(ipfs_export.main, args(site, force=True))
    assert result['failed'] and result['msg'].startswith('IPFS export failed:')
