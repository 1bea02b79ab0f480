# Copyright (c) Dihya ops maintainers
# GNU General Public License v3.0+ (see LICENSES/GPL-3.0-or-later.txt or https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later

"""Tests of the dihya.ops.advisory_gate module, in-process, with the published OSV fixtures."""

from __future__ import annotations

import pathlib

from ansible_collections.dihya.ops.plugins.modules import advisory_gate
from ansible_collections.dihya.ops.tests.unit.plugins.modules.utils import run_module

OSV = str(pathlib.Path(__file__).resolve().parents[3] / 'fixtures' / 'osv')


def run(args, check_mode=False):
    return run_module(advisory_gate.main, args, check_mode=check_mode)


def test_fail_policy_blocks_and_warn_passes():
    args = {'packages': {'flask': '2.3.1', 'werkzeug': '3.1.9'}, 'osv_dirs': [OSV], 'pip_audit_executable': '/nonexistent/pip-audit'}
    blocked = run(args)
    assert blocked['failed'] and not blocked['passed'] and blocked['changed'] is False
    assert blocked['blocking'] == ['flask 2.3.1: PYSEC-2023-62, fixed in 2.2.5, 2.3.2']
    assert 'is not installed: skipped' in blocked['notes'][0] and blocked['warnings']
    warned = run({**args, 'policy': 'warn'}, check_mode=True)
    assert not warned.get('failed') and warned['passed'] and 'allowed with warnings' in warned['msg']


def test_ignores_and_their_expiry():
    args = {'packages': {'flask': '2.3.1'}, 'osv_dirs': [OSV], 'pip_audit': 'never', 'today': '2026-11-25'}
    ignored = run({**args, 'ignores': [{'package': 'flask', 'id': 'CVE-2023-30861', 'until': '2026-12-01', 'reason': 'no proxy'}]})
    assert ignored['passed'] and ignored['findings'][0]['ignored'] and ignored['blocking'] == []
    expired = run({**args, 'ignores': [{'package': 'flask', 'id': 'CVE-2023-30861', 'until': '2026-11-01'}]})
    assert expired['failed'] and 'expired' in expired['notes'][0]
    assert expired['findings'][0]['expired_ignore'] == 'CVE-2023-30861 of flask until 2026-11-01'


def test_bad_input():
    result = run({'packages': {'flask': '1.0'}, 'osv_dirs': [OSV], 'today': 'tomorrow'})
    assert result['failed'] and 'YYYY-MM-DD' in result['msg']
    result = run({'packages': {'flask': '1.0'}, 'osv_dirs': [OSV], 'ignores': [{'package': 'flask', 'until': 'soon'}]})
    assert result['failed'] and 'could not run' in result['msg']
    result = run({'packages': {'flask': '1.0'}, 'pip_audit': 'never'})
    assert result['failed'] and 'no advisory source' in result['msg']


def test_missing_packaging_library(monkeypatch):
    monkeypatch.setattr(advisory_gate, 'HAS_PACKAGING', False)
    result = run({'packages': {'flask': '1.0'}, 'osv_dirs': [OSV]})
    assert result['failed'] and 'packaging' in result['msg']
