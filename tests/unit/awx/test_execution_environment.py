# Copyright (c) Dihya ops maintainers
# GNU General Public License v3.0+ (see LICENSES/GPL-3.0-or-later.txt or https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later

"""The execution environment (meta/execution-environment.yml): the build context ``ansible-builder create`` makes of it.

No image is built (no container engine, no registry): the definition is laid out as in the checkout (``meta/`` and
``bindep.txt`` next to the built tarball) in a temporary folder, ``ansible-builder create`` validates it against the
version 3 schema and writes the context, and the tests read what the image build would use: the Containerfile, the
Python and system requirements, the collection's tarball and its galaxy requirements. The image's own introspection
step (the context's ``introspect.py``) then runs on the collection as it would be installed in the image.
"""

from __future__ import annotations

import json
import os
import pathlib
import re
import shutil
import subprocess
import sys
import tarfile
import typing as t

import pytest
import yaml

ROOT = pathlib.Path(__file__).resolve().parents[3]
BIN = pathlib.Path(sys.executable).parent
DEFINITION = ROOT / 'meta' / 'execution-environment.yml'
VERSION = yaml.safe_load((ROOT / 'galaxy.yml').read_text(encoding='utf-8'))['version']
RPM_IMAGE = ['default', 'platform:rpm', 'platform:redhat', 'platform:centos']


def _run(argv: list[str], cwd: pathlib.Path, home: pathlib.Path) -> subprocess.CompletedProcess[str]:
    env = dict(os.environ, HOME=str(home), ANSIBLE_NOCOLOR='1', ANSIBLE_FORCE_COLOR='0')
    return subprocess.run(argv, cwd=cwd, env=env, capture_output=True, text=True, timeout=120, check=False)


def _pins(path: pathlib.Path) -> dict[str, str]:
    """``name -> version`` of a pinned requirements file (names normalised as pip does)."""
    found = {}
    for text in path.read_text(encoding='utf-8').splitlines():
        line = text.split('#', 1)[0].strip()
        if line and not line.startswith('-'):
            name, dummy, version = line.partition('==')
            found[re.sub(r'[-_.]+', '-', name.split('[', 1)[0].strip()).lower()] = version.strip()
    return found


@pytest.fixture(scope='module')
def definition() -> dict[str, t.Any]:
    data = yaml.safe_load(DEFINITION.read_text(encoding='utf-8'))
    assert isinstance(data, dict)
    return data


@pytest.fixture(scope='module')
def built(tmp_path_factory: pytest.TempPathFactory) -> dict[str, pathlib.Path]:
    """The checkout's layout (meta/, bindep.txt, the built tarball) and the context ansible-builder creates of it."""
    top = tmp_path_factory.mktemp('ee')
    home = top / 'home'
    home.mkdir()
    (top / 'meta').mkdir()
    shutil.copy2(DEFINITION, top / 'meta' / DEFINITION.name)
    shutil.copy2(ROOT / 'bindep.txt', top / 'bindep.txt')
    build = _run([str(BIN / 'ansible-galaxy'), 'collection', 'build', '--output-path', str(top), str(ROOT)], ROOT, home)
    assert build.returncode == 0, build.stdout + build.stderr
    create = _run([str(BIN / 'ansible-builder'), 'create', '-f', str(top / 'meta' / DEFINITION.name), '-c', str(top / 'context'),
                   '--output-filename', 'Containerfile'], top, home)
    assert create.returncode == 0, create.stdout + create.stderr
    return {'top': top, 'home': home, 'context': top / 'context', 'build': top / 'context' / '_build',
            'tarball': top / f'dihya-ops-{VERSION}.tar.gz'}


def test_definition_is_schema_3_on_a_documented_base_image(definition):
    assert definition['version'] == 3
    image = definition['images']['base_image']['name']
    assert image.startswith('quay.io/ansible/awx-ee:'), image
    assert image.rsplit(':', 1)[1] != 'latest', 'the base image is pinned to a release'
    assert image in (ROOT / 'docs' / 'awx.md').read_text(encoding='utf-8')


def test_ansible_builder_refuses_a_definition_outside_the_schema(definition, built):
    wrong = dict(definition, dependencies=dict(definition['dependencies'], pythn=['PyYAML']))
    path = built['top'] / 'meta' / 'wrong.yml'
    path.write_text(yaml.safe_dump(wrong), encoding='utf-8')
    create = _run([str(BIN / 'ansible-builder'), 'create', '-f', str(path), '-c', str(built['top'] / 'wrong')], built['top'], built['home'])
    assert create.returncode != 0
    assert 'pythn' in create.stdout + create.stderr


def test_the_context_has_a_containerfile_on_the_base_image(definition, built):
    containerfile = (built['context'] / 'Containerfile').read_text(encoding='utf-8')
    assert f'ARG EE_BASE_IMAGE="{definition["images"]["base_image"]["name"]}"' in containerfile
    core = definition['dependencies']['ansible_core']['package_pip']
    runner = definition['dependencies']['ansible_runner']['package_pip']
    assert f'ARG ANSIBLE_INSTALL_REFS="{core} {runner}"' in containerfile
    assert 'COPY _build/requirements.txt requirements.txt' in containerfile
    assert 'COPY _build/bindep.txt bindep.txt' in containerfile


def test_python_requirements_are_the_collections_pinned_as_in_run_txt(definition, built):
    listed = definition['dependencies']['python']
    in_context = [line for line in (built['build'] / 'requirements.txt').read_text(encoding='utf-8').splitlines() if line.strip()]
    assert in_context == listed
    run = _pins(ROOT / 'requirements' / 'run.txt')
    for requirement in [*listed, definition['dependencies']['ansible_core']['package_pip'],
                        definition['dependencies']['ansible_runner']['package_pip']]:
        name, dummy, version = requirement.partition('==')
        assert version, f'{requirement} is not pinned'
        assert run.get(re.sub(r'[-_.]+', '-', name).lower()) == version, f'{requirement} is not the pin of requirements/run.txt'
    names = {re.sub(r'[-_.]+', '-', line.partition('==')[0]).lower() for line in listed}
    # The checkout's own tooling (the demo backend, the command line of runops/, bindep) stays out of the image.
    assert not names & {'flask', 'gunicorn', 'supervisor', 'rich', 'bindep', 'ansible-core', 'ansible-runner'}
    assert {'pyyaml', 'psycopg', 'cryptography'} <= names


def test_system_requirements_are_the_rpm_entries_of_bindep_txt(built):
    depends = pytest.importorskip('bindep.depends')
    text = (built['build'] / 'bindep.txt').read_text(encoding='utf-8')
    assert text == (ROOT / 'bindep.txt').read_text(encoding='utf-8')
    rules = depends.Depends(text)
    image = [rule[0] for rule in rules.active_rules(RPM_IMAGE)]
    assert image == ['openssh-clients', 'ca-certificates']
    assert [rule[0] for rule in rules.active_rules(['ee', 'platform:rpm'])] == image
    # scripts/bootstrap.sh on Debian (profiles default and test) is not given any of them.
    for profiles in (['default', 'platform:dpkg', 'platform:debian'], ['test', 'platform:dpkg', 'platform:debian']):
        assert not set(image) - {'ca-certificates'} & {rule[0] for rule in rules.active_rules(profiles)}
        assert not [rule for rule in rules.active_rules(profiles) if 'platform:rpm' in str(rule)]


def test_the_collection_is_installed_from_its_tarball(definition, built):
    galaxy = yaml.safe_load((built['build'] / 'requirements.yml').read_text(encoding='utf-8'))
    assert galaxy == definition['dependencies']['galaxy']
    assert galaxy['collections'] == [{'name': f'collections/dihya-ops-{VERSION}.tar.gz', 'type': 'file'}]
    shipped = built['build'] / 'collections' / f'dihya-ops-{VERSION}.tar.gz'
    assert shipped.read_bytes() == built['tarball'].read_bytes()
    with tarfile.open(shipped) as archive:
        manifest = json.load(t.cast(t.IO[bytes], archive.extractfile('MANIFEST.json')))
        names = set(archive.getnames())
    assert (manifest['collection_info']['namespace'], manifest['collection_info']['name']) == ('dihya', 'ops')
    assert manifest['collection_info']['version'] == VERSION
    assert 'playbooks/check_health.yml' in names
    containerfile = (built['context'] / 'Containerfile').read_text(encoding='utf-8')
    assert 'COPY _build /build' in containerfile
    assert 'ansible-galaxy collection install $ANSIBLE_GALAXY_CLI_COLLECTION_OPTS -r requirements.yml' in containerfile


def test_the_images_introspection_reads_the_installed_collection(definition, built):
    """The build's introspection step reads every installed collection's meta/execution-environment.yml as a list of
    requirement files: the definition stays out of the tarball, and the step runs on the installed copy."""
    installed = built['top'] / 'installed'
    target = installed / 'ansible_collections' / 'dihya' / 'ops'
    target.mkdir(parents=True)
    with tarfile.open(built['tarball']) as archive:
        assert 'meta/execution-environment.yml' not in archive.getnames()
        archive.extractall(target, filter='data')
    out = built['top'] / 'introspected'
    step = _run([sys.executable, str(built['build'] / 'scripts' / 'introspect.py'), 'introspect', str(installed),
                 f'--user-pip={built["build"] / "requirements.txt"}', f'--user-bindep={built["build"] / "bindep.txt"}',
                 f'--write-pip={out}-requirements.txt', f'--write-bindep={out}-bindep.txt'], built['top'], built['home'])
    assert step.returncode == 0, step.stdout + step.stderr
    pip = [line.split('#', 1)[0].strip() for line in pathlib.Path(f'{out}-requirements.txt').read_text(encoding='utf-8').splitlines()]
    assert [line for line in pip if line] == definition['dependencies']['python']
    system = pathlib.Path(f'{out}-bindep.txt').read_text(encoding='utf-8')
    assert 'openssh-clients [platform:rpm default ee]' in system
