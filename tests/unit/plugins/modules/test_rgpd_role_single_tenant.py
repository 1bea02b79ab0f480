# Copyright (c) Dihya ops maintainers
# GNU General Public License v3.0+ (see LICENSES/GPL-3.0-or-later.txt or https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later

"""The dihya.ops.rgpd role with a single-tenant data map, in real ansible-playbook runs on localhost: rgpd_tenant
defaults to the map's fixed name (or the host's one tenant), another or a hostile tenant is refused, and a multi-tenant
map still needs rgpd_tenant."""

from __future__ import annotations

import os
import pathlib
import shutil
import subprocess
import sys
import zipfile

import pytest
import yaml

from ansible_collections.dihya.ops.plugins.modules import rgpd
from ansible_collections.dihya.ops.tests.unit.plugins import rgpd_fixtures
from ansible_collections.dihya.ops.tests.unit.plugins.rgpd_fixtures import DEMO_DATA_MAP, SINGLE_ROWS, Backend, single_tenant_map

pytestmark = pytest.mark.services('ansible')

PLAYBOOK = """
- name: One RGPD request
  hosts: localhost
  gather_facts: false
  roles:
    - role: dihya.ops.rgpd
"""


def run_playbook(tmp_path: pathlib.Path, *args: str) -> subprocess.CompletedProcess[str]:
    """A real ansible-playbook run of the role on localhost, with the collection from this checkout."""
    (tmp_path / 'play.yml').write_text(PLAYBOOK)
    (tmp_path / 'ansible.cfg').write_text('[defaults]\nstdout_callback = ansible.builtin.default\nretry_files_enabled = false\n')
    (tmp_path / 'hosts').write_text(f'localhost ansible_connection=local ansible_python_interpreter={sys.executable}\n')
    collections = pathlib.Path(__file__).resolve().parents[4] / '.cache' / 'collections'
    if not collections.is_dir():
        collections = pathlib.Path(rgpd.__file__).resolve().parents[5]
    env = {
        'PATH': os.path.dirname(sys.executable) + os.pathsep + os.environ.get('PATH', '/usr/bin:/bin'),
        'HOME': str(tmp_path), 'ANSIBLE_CONFIG': str(tmp_path / 'ansible.cfg'),
        'ANSIBLE_COLLECTIONS_PATH': str(collections), 'ANSIBLE_LOCAL_TEMP': str(tmp_path / 'tmp'),
        'ANSIBLE_REMOTE_TEMP': str(tmp_path / 'remote-tmp'), 'ANSIBLE_NOCOLOR': '1', 'LANG': 'C.UTF-8',
    }
    command = shutil.which('ansible-playbook', path=env['PATH'])
    assert command, 'ansible-playbook is missing from the virtual environment'
    return subprocess.run([command, *args, '-i', str(tmp_path / 'hosts'), str(tmp_path / 'play.yml')],
                          cwd=tmp_path, capture_output=True, text=True, timeout=300, check=False, env=env)


@pytest.fixture(name='host')
def fixture_host(tmp_path: pathlib.Path) -> dict[str, str]:
    """A single-tenant SQLite database, its data maps (with and without a fixed tenant name) and the model's variables."""
    (tmp_path / 'data').mkdir()
    database = Backend('sqlite', path=str(tmp_path / 'data' / 'app.db'))
    rgpd_fixtures.seed_single_tenant(database)
    fixed, free = single_tenant_map(), single_tenant_map()
    del free['tenant']
    (tmp_path / 'map.yml').write_text(yaml.safe_dump(fixed))
    (tmp_path / 'map-free.yml').write_text(yaml.safe_dump(free))
    variables = {
        'dihya_backend_root': str(tmp_path / 'root'),
        'dihya_backend_db_url': f'sqlite:///{database.path}',
        'dihya_backend_rgpd_data_map': str(tmp_path / 'map.yml'),
        'dihya_backend_pseudonym_key': 'role-test-pseudonym-key-0123456789',
        'dihya_backend_rgpd_ledger_file': str(tmp_path / 'state' / 'ledger.jsonl'),
        'dihya_backend_rgpd_fetch_dir': str(tmp_path / 'fetched'),
    }
    (tmp_path / 'model.yml').write_text(yaml.safe_dump(variables))
    return variables


def request(tmp_path: pathlib.Path, *extra: str, check: bool = False) -> subprocess.CompletedProcess[str]:
    args = ['-e', f'@{tmp_path / "model.yml"}']
    for item in extra:
        args += ['-e', item]
    return run_playbook(tmp_path, *args, *(['--check'] if check else []))


def test_export_takes_the_maps_tenant_and_never_holds_a_secret(host: dict[str, str], tmp_path: pathlib.Path) -> None:
    completed = request(tmp_path, 'rgpd_operation=export', 'rgpd_subject_id=2')
    assert completed.returncode == 0, completed.stdout[-3000:] + completed.stderr[-2000:]
    assert 'Export subject of tenant main:' in completed.stdout
    [archive] = list((tmp_path / 'fetched' / 'main').glob('localhost-rgpd-export-main-*.zip'))
    with zipfile.ZipFile(archive) as opened:
        text = ''.join(opened.read(name).decode('utf-8') for name in opened.namelist())
    assert 'bob@example.org' in text
    for row in SINGLE_ROWS['user']:
        assert row[5] not in text and (row[6] is None or row[6] not in text)


def test_another_or_a_hostile_tenant_is_refused(host: dict[str, str], tmp_path: pathlib.Path) -> None:
    other = request(tmp_path, 'rgpd_operation=inventory', 'rgpd_subject_id=2', 'rgpd_tenant=acme')
    assert other.returncode != 0 and 'tenant "acme" is not the tenant of this database' in other.stdout + other.stderr
    hostile = request(tmp_path, 'rgpd_operation=inventory', 'rgpd_subject_id=2', 'rgpd_tenant=../../etc',
                      f'dihya_backend_rgpd_data_map={tmp_path / "map-free.yml"}')
    assert hostile.returncode != 0 and 'is not a valid tenant name' in hostile.stdout + hostile.stderr
    assert not (tmp_path / 'fetched').exists() and not (tmp_path / 'etc').exists()


def test_the_hosts_one_tenant_names_a_map_without_a_fixed_name(host: dict[str, str], tmp_path: pathlib.Path) -> None:
    before = Backend('sqlite', path=host['dihya_backend_db_url'][len('sqlite:///'):]).dump()
    completed = request(tmp_path, 'rgpd_operation=erase', 'rgpd_subject_id=1', f'dihya_backend_rgpd_data_map={tmp_path / "map-free.yml"}',
                        '{"dihya_backend_tenants": ["shop"]}', check=True)
    assert completed.returncode == 0, completed.stdout[-3000:] + completed.stderr[-2000:]
    assert 'Would erase subject of tenant shop:' in completed.stdout
    assert Backend('sqlite', path=host['dihya_backend_db_url'][len('sqlite:///'):]).dump() == before
    assert not (tmp_path / 'state' / 'ledger.jsonl').exists()


def test_a_multi_tenant_map_still_needs_rgpd_tenant(host: dict[str, str], tmp_path: pathlib.Path) -> None:
    completed = request(tmp_path, 'rgpd_operation=inventory', 'rgpd_subject_id=2', f'dihya_backend_rgpd_data_map={DEMO_DATA_MAP}',
                        '{"dihya_backend_tenants": ["acme"]}')
    assert completed.returncode != 0 and 'rgpd_tenant is empty; the data map is multi-tenant' in completed.stdout + completed.stderr
