# Copyright (c) Dihya ops maintainers
# GNU General Public License v3.0+ (see LICENSES/GPL-3.0-or-later.txt or https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later

"""Tests of the dihya.ops.python_deps module, in-process, on a real virtual environment with local wheels."""

from __future__ import annotations

import pytest

from ansible_collections.dihya.ops.plugins.module_utils import _pydeps
from ansible_collections.dihya.ops.plugins.modules import python_deps
from ansible_collections.dihya.ops.tests.unit.plugins.module_utils.pydeps_utils import install, make_venv, wheelhouse
from ansible_collections.dihya.ops.tests.unit.plugins.modules.utils import run_module


@pytest.fixture(scope='module')
def env(tmp_path_factory):
    base = tmp_path_factory.mktemp('python_deps')
    wheels = wheelhouse(tmp_path_factory)
    venv = make_venv(base / 'venv', tmp_path_factory)
    install(venv, wheels, 'dihya-demo-ext==1.0.0')
    return {'venv': str(venv), 'wheels': str(wheels), 'snapshot': str(base / 'state' / 'snapshot')}


def run(args, check_mode=False):
    return run_module(python_deps.main, args, check_mode=check_mode)


def test_plan_apply_snapshot_rollback_cycle(env):
    common = {'venv': env['venv'], 'find_links': [env['wheels']], 'no_index': True}
    plan = run({**common, 'action': 'plan', 'packages': ['dihya-demo-ext==1.1.0']})
    assert plan['changed'] is False
    assert plan['changes'][0]['summary'] == 'dihya-demo-ext 1.0.0 -> 1.1.0' and plan['pins'] == ['dihya-demo-ext==1.1.0']
    assert plan['before']['dihya-demo-ext'] == '1.0.0' and plan['result']['dihya-demo-ext'] == '1.1.0'

    checked = run({**common, 'action': 'apply', 'packages': plan['pins']}, check_mode=True)
    assert checked['changed'] is True and checked['changes'] == plan['changes']
    snap_check = run({**common, 'action': 'snapshot', 'snapshot_dir': env['snapshot']}, check_mode=True)
    assert snap_check['changed'] and snap_check['snapshot']['wheels'] == []

    snap = run({**common, 'action': 'snapshot', 'snapshot_dir': env['snapshot']})
    assert snap['snapshot']['packages'] == {'dihya-demo-ext': '1.0.0'}
    applied = run({**common, 'action': 'apply', 'packages': plan['pins']})
    assert applied['changed'] is True
    again = run({**common, 'action': 'apply', 'packages': plan['pins']})
    assert again['changed'] is False and again['changes'] == []

    would = run({'venv': env['venv'], 'action': 'rollback', 'snapshot_dir': env['snapshot']}, check_mode=True)
    assert would['changed'] and would['reinstalled'][0]['pin'] == 'dihya-demo-ext==1.0.0'
    rolled = run({'venv': env['venv'], 'action': 'rollback', 'snapshot_dir': env['snapshot']})
    assert rolled['changed'] and rolled['freeze'] == ['dihya-demo-ext==1.0.0']
    assert run({'venv': env['venv'], 'action': 'rollback', 'snapshot_dir': env['snapshot']})['changed'] is False


def test_bad_input_fails_cleanly(env, tmp_path):
    result = run({'venv': env['venv'], 'action': 'plan', 'packages': ['x; rm -rf /'], 'find_links': [env['wheels']], 'no_index': True})
    assert result['failed'] and 'forbidden characters' in result['msg'] and result['msg'].startswith('plan of ')
    result = run({'venv': str(tmp_path), 'action': 'plan', 'packages': ['x']})
    assert result['failed'] and 'not a virtual environment' in result['msg']
    result = run({'venv': env['venv'], 'action': 'plan', 'packages': ['x'], 'find_links': ['relative']})
    assert result['failed'] and 'absolute path' in result['msg']
    result = run({'venv': env['venv'], 'action': 'rollback'})
    assert result['failed'] and 'snapshot_dir' in result['msg']


def test_missing_packaging_library(env, monkeypatch):
    monkeypatch.setattr(python_deps, 'HAS_PACKAGING', False)
    result = run({'venv': env['venv'], 'action': 'plan', 'packages': ['x']})
    assert result['failed'] and 'packaging' in result['msg']
    assert _pydeps.HAS_PACKAGING
