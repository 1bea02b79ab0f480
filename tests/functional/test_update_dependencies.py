"""Python dependency updates with a vulnerability gate and an automatic rollback, on the real demo fleet.

The updates install the test package ``dihya-demo-ext`` (see wheelbuilder.py) into the virtual
environment of dihya-demo-1: 1.0.0 -> 1.1.0 is a good upgrade, 2.0.0 breaks gunicorn's workers at
start-up and must be rolled back. The tests run in file order and build on each other.
"""

from __future__ import annotations

import json
import os
import pathlib
import re
import subprocess

import pytest

from ansible_collections.dihya.ops.tests.support.fleet import ROOT, assert_no_traceback
from ansible_collections.dihya.ops.tests.support.wheelbuilder import build_all, build_wheel

HOST = 'dihya-demo-1'
REAL_ADVISORIES = ROOT / 'tests' / 'fixtures' / 'osv'


def recap(output: str) -> dict[str, dict[str, int]]:
    stats: dict[str, dict[str, int]] = {}
    for host, counters in re.findall(r'^(\S+)\s+:\s+(ok=.*)$', output, re.MULTILINE):
        stats[host] = {key: int(value) for key, value in re.findall(r'(\w+)=(\d+)', counters)}
    return stats


@pytest.fixture(scope='module')
def update(fleet, tmp_path_factory):
    """Local wheels, a test advisory folder, and a runner of the playbook on dihya-demo-1 (with 1.0.0 installed)."""
    base = tmp_path_factory.mktemp('update')
    wheels = build_all(base / 'wheels')
    build_wheel(wheels, '1.2.0', unsafe=True)
    advisories = base / 'osv'
    advisories.mkdir()
    # An advisory of the test package (not a published one): 1.1.0 up to 2.0.0 affected.
    (advisories / 'DIHYA-2026-0001.json').write_text(json.dumps({
        'id': 'DIHYA-2026-0001', 'aliases': ['CVE-2026-99999'], 'summary': 'Test advisory of dihya-demo-ext',
        'affected': [{'package': {'ecosystem': 'PyPI', 'name': 'dihya-demo-ext'},
                      'ranges': [{'type': 'ECOSYSTEM', 'events': [{'introduced': '1.1.0'}, {'fixed': '2.0.0'}]}]}],
    }))
    venv = fleet.root(HOST) / 'venv'
    pip = [str(venv / 'bin' / 'python'), '-m', 'pip', '--disable-pip-version-check']
    subprocess.run([*pip, 'install', '--quiet', '--no-index', '--find-links', str(wheels), 'dihya-demo-ext==1.0.0'],
                   check=True, timeout=120, capture_output=True)

    def freeze() -> list[str]:
        return subprocess.run([*pip, 'freeze'], check=True, timeout=60, capture_output=True, text=True).stdout.splitlines()

    def run(packages: list[str], *args: str, osv: list[pathlib.Path] | None = None, **extra) -> subprocess.CompletedProcess:
        variables = {
            'update_dependencies_packages': packages,
            'update_dependencies_find_links': [str(wheels)],
            'update_dependencies_no_index': True,
            'update_dependencies_osv_dirs': [str(path) for path in (osv if osv is not None else [REAL_ADVISORIES])],
            'update_dependencies_health_deadline': 20,
            # The backend model's wheelhouse (proposed inventory variable dihya_backend_wheelhouse).
            'dihya_backend_wheelhouse': str(fleet.sandbox / 'wheelhouse'),
            **extra,
        }
        return fleet.playbook('playbooks/update_dependencies.yml', '--limit', HOST, '-e', json.dumps(variables), *args)

    yield {'run': run, 'freeze': freeze, 'advisories': advisories, 'venv': venv}
    subprocess.run([*pip, 'uninstall', '--yes', '--quiet', 'dihya-demo-ext'], check=False, timeout=120, capture_output=True)


def venv_tree(venv: pathlib.Path) -> dict[str, tuple[int, int]]:
    tree = {}
    for root, dirs, files in os.walk(venv):
        for name in dirs + files:
            path = os.path.join(root, name)
            info = os.lstat(path)
            tree[path] = (info.st_size, info.st_mtime_ns)
    return tree


def test_check_mode_reports_the_change_and_changes_nothing(fleet, update):
    freeze, tree, pids = update['freeze'](), venv_tree(update['venv']), fleet.pids()
    proc = update['run'](['dihya-demo-ext==1.1.0'], '--check')
    output = proc.stdout + proc.stderr
    assert proc.returncode == 0, output
    assert 'dihya-demo-ext 1.0.0 -> 1.1.0' in output
    assert recap(proc.stdout)[HOST]['changed'] >= 1
    assert update['freeze']() == freeze and 'dihya-demo-ext==1.0.0' in freeze
    assert venv_tree(update['venv']) == tree
    assert fleet.pids() == pids


def test_advisory_blocks_the_update_under_policy_fail_even_with_an_expired_ignore(fleet, update):
    freeze, pids = update['freeze'](), fleet.pids()
    ignores = [{'package': 'dihya-demo-ext', 'id': 'CVE-2026-99999', 'until': '2020-01-31', 'reason': 'old exception'}]
    proc = update['run'](['dihya-demo-ext==1.1.0'], osv=[REAL_ADVISORIES, update['advisories']], update_dependencies_ignores=ignores)
    output = proc.stdout + proc.stderr
    assert proc.returncode != 0, output
    assert 'update blocked' in output and 'dihya-demo-ext 1.1.0: DIHYA-2026-0001, fixed in 2.0.0' in output
    assert 'the ignore of CVE-2026-99999 of dihya-demo-ext until 2020-01-31 expired' in output
    assert 'pip-audit (pip-audit) is not installed' in output
    assert update['freeze']() == freeze and fleet.pids() == pids


def test_upgrade_under_policy_warn_succeeds_and_stays_healthy(fleet, update):
    before = fleet.pids()[HOST]
    proc = update['run'](['dihya-demo-ext==1.1.0'], osv=[REAL_ADVISORIES, update['advisories']],
                         update_dependencies_advisory_policy='warn')
    output = proc.stdout + proc.stderr
    assert proc.returncode == 0, output
    assert 'allowed with warnings (policy warn)' in output
    assert 'dihya-demo-ext==1.1.0' in update['freeze']()
    after = fleet.pids()[HOST]
    assert after and after != before
    status, body = fleet.healthz(HOST)
    assert status == 200 and body['status'] == 'ok'


def test_second_run_changes_nothing(fleet, update):
    pids = fleet.pids()
    for args in ((), ('--check',)):
        proc = update['run'](['dihya-demo-ext==1.1.0'], *args)
        assert proc.returncode == 0, proc.stdout + proc.stderr
        assert recap(proc.stdout)[HOST]['changed'] == 0, proc.stdout
        assert 'nothing to change in' in proc.stdout
    assert fleet.pids() == pids


def tree_of(path: pathlib.Path) -> dict[str, tuple[int, int]]:
    return venv_tree(path) if path.exists() else {}


@pytest.mark.parametrize('step', ['install', 'restart'])
def test_check_mode_failure_is_not_rolled_back(fleet, update, step):
    """A step failing in check mode: check mode installed nothing and took no snapshot, so the rescue rolls nothing back.

    A snapshot of an earlier real run is there: it is neither restored nor reported as restored.
    """
    state = fleet.root(HOST) / 'state' / 'update_dependencies'
    assert (state / 'snapshot' / 'freeze.txt').is_file()
    freeze, venv, snapshot, pids = update['freeze'](), venv_tree(update['venv']), tree_of(state), fleet.pids()
    if step == 'install':
        # The install step fails: its pins (given by the plan) name a version no source has.
        forged = {'changes': [{'name': 'dihya-demo-ext', 'summary': 'dihya-demo-ext 1.1.0 -> 9.9.9'}], 'pins': ['dihya-demo-ext==9.9.9'],
                  'result': {'dihya-demo-ext': '9.9.9'}, 'before': {'dihya-demo-ext': '1.1.0'}}
        proc = update['run'](['dihya-demo-ext==1.1.0'], '--check', __update_dependencies_plan=forged)
        failed_at = 'would fail at install (task: Install the planned versions)'
    else:
        # The restart step fails: it is asked to restart a service the host does not have.
        proc = update['run'](['dihya-demo-ext==1.0.0'], '--check', restart_services_only=['no-such-service'])
        failed_at = 'would fail at restart behind the health gate'
    output = proc.stdout + proc.stderr
    assert proc.returncode != 0, output
    assert_no_traceback(output)
    assert f'Check mode: the update of {update["venv"]} on {HOST} {failed_at}' in output, output
    assert 'no rollback was attempted and no incident report was written' in output, output
    assert 'Roll back the virtual environment to the snapshot' not in output and 'Rollback to the snapshot' not in output
    assert update['freeze']() == freeze and venv_tree(update['venv']) == venv
    assert tree_of(state) == snapshot and fleet.pids() == pids


def test_breaking_upgrade_is_rolled_back(fleet, update):
    freeze = update['freeze']()
    proc = update['run'](['dihya-demo-ext==2.0.0'])
    output = proc.stdout + proc.stderr
    assert proc.returncode != 0, output
    assert_no_traceback(output)
    assert re.search(r"failed at restart behind the health gate \(task: Stop the rollout at this host\): "
                     r"Rollout stopped at dihya-demo-1", output), output
    assert 'Rollback to the snapshot' in output and 'succeeded, the services are healthy again' in output
    assert update['freeze']() == freeze
    snapshot = fleet.root(HOST) / 'state' / 'update_dependencies' / 'snapshot'
    assert (snapshot / 'freeze.txt').read_text().splitlines() == freeze
    status, body = fleet.healthz(HOST)
    assert status == 200 and body['status'] == 'ok'
    incidents = sorted((fleet.root(HOST) / 'state' / 'update_dependencies').glob('incident-*.json'))
    incident = json.loads(incidents[-1].read_text())
    assert incident['rollback'] == 'succeeded' and incident['healthy_after_rollback'] is True
    assert incident['changes'][0]['summary'] == 'dihya-demo-ext 1.1.0 -> 2.0.0'
    assert incident['reinstalled'][0]['pin'] == 'dihya-demo-ext==1.1.0'


def test_install_error_is_rolled_back(fleet, update):
    freeze = update['freeze']()
    proc = update['run'](['dihya-demo-ext==1.2.0'])
    output = proc.stdout + proc.stderr
    assert proc.returncode != 0, output
    assert re.search(r'failed at install \(task: Install the planned versions\): apply of .* failed: pip install failed', output), output
    assert 'succeeded, the services are healthy again' in output
    assert update['freeze']() == freeze
    assert fleet.healthz(HOST)[0] == 200


def test_a_reload_is_refused_before_anything_is_installed(fleet, update):
    freeze, pids = update['freeze'](), fleet.pids()
    proc = update['run'](['dihya-demo-ext==1.2.0'], restart_services_method='reload')
    output = ' '.join((proc.stdout + proc.stderr).split())
    assert proc.returncode != 0
    assert 'restart_services_method=reload keeps each gunicorn master' in output and 'Nothing was changed.' in output, output[-4000:]
    assert_no_traceback(output)
    assert update['freeze']() == freeze and fleet.pids() == pids


def test_hostile_package_spec_is_refused(fleet, update, tmp_path):
    canary = tmp_path / 'pwned'
    freeze = update['freeze']()
    proc = update['run']([f'dihya-demo-ext; touch {canary}'])
    output = proc.stdout + proc.stderr
    assert proc.returncode != 0
    assert 'forbidden characters' in output and 'Traceback' not in output
    assert not canary.exists() and update['freeze']() == freeze


@pytest.mark.parametrize('packages', [['evilpkg-1.0.tar.gz'], ['./evilpkg-1.0.zip'], ['evilpkg==1.0']])
def test_check_mode_never_builds_a_source_distribution(fleet, update, tmp_path, packages):
    """A hostile sdist in the sources, whose build backend would write a canary: the plan refuses it, in check mode and not."""
    from ansible_collections.dihya.ops.tests.unit.plugins.module_utils.test_pydeps import evil_sdist  # pylint: disable=import-outside-toplevel

    canary = tmp_path / 'CANARY'
    for fmt in ('tar.gz', 'zip'):
        evil_sdist(tmp_path / 'evil', canary, fmt)
    freeze, pids = update['freeze'](), fleet.pids()
    for args in (('--check',), ()):
        proc = update['run'](packages, *args, update_dependencies_find_links=[str(tmp_path / 'evil')])
        output = proc.stdout + proc.stderr
        assert proc.returncode != 0, output
        assert_no_traceback(output)
        assert re.search(r'archive or wheel file name|looks like a path|No matching distribution', output), output
        assert not canary.exists()
    assert update['freeze']() == freeze and fleet.pids() == pids
