# Copyright (c) Dihya ops maintainers
# GNU General Public License v3.0+ (see LICENSES/GPL-3.0-or-later.txt or https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later

"""The AWX configuration as code (awx/configure.yml and its data, awx/operations.yml), without an AWX.

What can be checked here is checked against the real things: the awx.awx collection scripts/bootstrap.sh unpacks into
.cache/awx-collections (every module and option the playbook uses is in its modules' documentation), the operation
playbooks of playbooks/, the roles' meta/argument_specs.yml and the modules' options (every survey field is one of
their variables, with a compatible type and choices), and the collection's own variable names (what the credential
types inject is what the roles, playbooks and the audit callback read). ``ansible-playbook --syntax-check`` runs in
the integration tier (it is an ansible-playbook run).
"""

from __future__ import annotations

import ast
import os
import pathlib
import re
import subprocess
import sys
import typing as t

import pytest
import yaml

ROOT = pathlib.Path(__file__).resolve().parents[3]
AWX = ROOT / 'awx'
AWX_COLLECTIONS = ROOT / '.cache' / 'awx-collections'
AWX_MODULES = AWX_COLLECTIONS / 'ansible_collections' / 'awx' / 'awx' / 'plugins' / 'modules'
PLAYBOOKS = sorted(path.name for path in (ROOT / 'playbooks').glob('*.yml'))

# Run-context variables of the collection a survey may ask, with their type: read by the operation context
# (plugins/plugin_utils/_run_context.py), the lifecycle (dihya_ops_approval_id) and the playbooks (dihya_ops_batch).
RUN_CONTEXT = {'dihya_ops_tenant': 'str', 'dihya_ops_request_id': 'str', 'dihya_ops_approval_id': 'str', 'dihya_ops_batch': 'int'}
# The playbooks without a role of their own pass <prefix>_<option> to one module.
PLAYBOOK_MODULES = {'audit.yml': ('audit_', 'audit_event'), 'approve.yml': ('approve_', 'approve')}
# AWX's own credential types the configuration uses.
AWX_CREDENTIAL_TYPES = {'Machine', 'Vault'}
SECRET_NAME = re.compile(r'key|password|passphrase|token|secret|dsn|db_url', re.IGNORECASE)


class Unsafe(str):
    """A ``!unsafe`` string: never templated by Ansible."""


class _Loader(yaml.SafeLoader):
    pass


_Loader.add_constructor('!unsafe', lambda loader, node: Unsafe(loader.construct_scalar(t.cast(yaml.ScalarNode, node))))


def _load(path: pathlib.Path) -> t.Any:
    # _Loader is a SafeLoader that knows one more tag.
    return yaml.load(path.read_text(encoding='utf-8'), Loader=_Loader)


def _documentation(path: pathlib.Path) -> dict[str, t.Any]:
    """The DOCUMENTATION of a module file, read without importing it."""
    for node in ast.parse(path.read_text(encoding='utf-8')).body:
        if isinstance(node, ast.Assign) and any(isinstance(target, ast.Name) and target.id == 'DOCUMENTATION' for target in node.targets):
            return t.cast(dict[str, t.Any], yaml.safe_load(ast.literal_eval(node.value)))
    raise AssertionError(f'{path} has no DOCUMENTATION')


def _options(documentation: dict[str, t.Any]) -> dict[str, t.Any]:
    options = dict(documentation.get('options') or {})
    for spec in list(options.values()):
        for alias in spec.get('aliases') or ():
            options[alias] = spec
    return options


@pytest.fixture(scope='module')
def playbook() -> list[dict[str, t.Any]]:
    return t.cast(list[dict[str, t.Any]], _load(AWX / 'configure.yml'))


@pytest.fixture(scope='module')
def data() -> dict[str, t.Any]:
    return t.cast(dict[str, t.Any], _load(AWX / 'operations.yml'))


@pytest.fixture(scope='module')
def awx_modules() -> pathlib.Path:
    if not AWX_MODULES.is_dir():
        pytest.fail(f'{AWX_MODULES} is missing: scripts/bootstrap.sh test unpacks awx.awx there')
    return AWX_MODULES


def _role_options(playbook_name: str) -> dict[str, dict[str, t.Any]]:
    """The options a survey of the playbook may set: its operation role's, or its module's under the playbook's prefix."""
    if playbook_name in PLAYBOOK_MODULES:
        prefix, module = PLAYBOOK_MODULES[playbook_name]
        return {prefix + name: spec for name, spec in _documentation(ROOT / 'plugins' / 'modules' / f'{module}.py')['options'].items()}
    (play,) = yaml.safe_load((ROOT / 'playbooks' / playbook_name).read_text(encoding='utf-8'))
    (task,) = [entry for entry in play['tasks'] if entry.get('ansible.builtin.import_role', {}).get('name') == 'dihya.ops.operation']
    spec = yaml.safe_load((ROOT / 'roles' / task['vars']['operation_name'] / 'meta' / 'argument_specs.yml').read_text(encoding='utf-8'))
    return t.cast(dict[str, dict[str, t.Any]], spec['argument_specs']['main']['options'])


def _reads(text: str, name: str) -> bool:
    """Whether the playbook's text names the variable (as a whole word)."""
    return re.search(rf'(?<![A-Za-z0-9_]){re.escape(name)}(?![A-Za-z0-9_])', text) is not None


def _compatible(field: dict[str, t.Any], spec: dict[str, t.Any]) -> str | None:
    """Why the survey field cannot feed the option ``spec`` (None when it can)."""
    kind, wanted, choices = field['type'], spec.get('type', 'str'), field.get('choices')
    if kind in ('text', 'textarea'):
        # A dict option of a module takes a JSON object's text (the module's argument spec parses it).
        return None if wanted == 'str' or (wanted == 'dict' and 'default' in field and field['default'].startswith('{')) else f'{kind} for {wanted}'
    if kind == 'integer':
        return None if wanted == 'int' else f'integer for {wanted}'
    if kind == 'float':
        return None if wanted == 'float' else f'float for {wanted}'
    if kind == 'multiplechoice':
        if wanted == 'bool':
            return None if set(choices) == {'true', 'false'} else f'bool choices {choices}'
        if wanted != 'str':
            return f'multiplechoice for {wanted}'
        extra = set(choices) - set(spec.get('choices') or choices)
        return f'choices {sorted(extra)} are not choices of the option' if extra else None
    return f'survey type {kind} is not used by the collection'


def test_configuration_parses_and_runs_on_localhost(playbook):
    (play,) = playbook
    assert play['hosts'] == 'localhost'
    assert play['connection'] == 'local'
    assert play['vars']['ansible_python_interpreter'] == '{{ ansible_playbook_python }}'
    assert play['vars_files'] == ['operations.yml']
    assert all(task.get('name') for task in play['tasks'])


def test_every_module_and_option_is_awx_awx(playbook, awx_modules):
    (play,) = playbook
    for task in play['tasks']:
        (action,) = [key for key in task if key.startswith('awx.awx.')]
        path = awx_modules / f'{action.removeprefix("awx.awx.")}.py'
        assert path.is_file(), f'{action} is not a module of awx.awx'
        unknown = set(task[action]) - set(_options(_documentation(path)))
        assert not unknown, f'{task["name"]}: {action} has no option {sorted(unknown)}'


def test_every_operation_playbook_has_one_job_template(data):
    playbooks = [template['playbook'] for template in data['dihya_awx_job_templates']]
    assert sorted(playbooks) == [f'playbooks/{name}' for name in PLAYBOOKS]
    assert {'approve.yml', 'audit.yml', 'check_health.yml', 'rgpd.yml', 'restart_services.yml', 'purge_temp_files.yml',
            'rotate_logs.yml', 'update_dependencies.yml'} <= set(PLAYBOOKS)
    names = [template['name'] for template in data['dihya_awx_job_templates']]
    assert len(set(names)) == len(names)


def test_check_mode_and_hosts_are_asked_at_launch_never_variables(playbook):
    (play,) = playbook
    (task,) = [task for task in play['tasks'] if 'awx.awx.job_template' in task]
    options = task['awx.awx.job_template']
    assert options['job_type'] == 'run'
    assert options['ask_job_type_on_launch'] is True
    assert options['ask_limit_on_launch'] is True
    # Free extra variables at launch could set anything, ansible_* connection variables included: surveys only.
    assert options['ask_variables_on_launch'] is False
    assert options['survey_enabled'] is True
    assert options['survey_spec']['spec'] == '{{ item.survey }}'


@pytest.mark.parametrize('template', yaml.load((AWX / 'operations.yml').read_text(encoding='utf-8'), Loader=_Loader)['dihya_awx_job_templates'],
                         ids=lambda template: template['name'])
def test_survey_fields_are_the_operations_variables(template):
    playbook_name = template['playbook'].removeprefix('playbooks/')
    options = _role_options(playbook_name)
    playbook_text = (ROOT / template['playbook']).read_text(encoding='utf-8')
    variables = [field['variable'] for field in template['survey']]
    assert len(set(variables)) == len(variables), variables
    for field in template['survey']:
        name = field['variable']
        assert field['question_name'] and field.get('question_description'), name
        assert field['type'] != 'password' and not SECRET_NAME.search(name), f'{name}: a secret is a credential, never a survey field'
        if name in RUN_CONTEXT:
            spec = {'type': RUN_CONTEXT[name]}
        else:
            assert name in options, f'{template["name"]}: {name} is neither an option of {playbook_name} nor a run-context variable'
            spec = options[name]
            if playbook_name in PLAYBOOK_MODULES:
                assert _reads(playbook_text, name), f'{playbook_name} does not read {name}'
        problem = _compatible(field, spec)
        assert problem is None, f'{template["name"]}: {name}: {problem}'
        if 'choices' in field:
            assert field.get('default') in field['choices'], name
        if field['type'] in ('integer', 'float') and 'default' in field:
            assert field['min'] <= field['default'] <= field['max'], name
        if spec.get('required'):
            assert field['required'] is True, f'{name} is required by the role'
    # A module's required options the playbook does not take from the survey come from the backend model (path, key).
    required = {name for name, spec in options.items() if spec.get('required')
                and (playbook_name not in PLAYBOOK_MODULES or _reads(playbook_text, name))}
    assert required <= set(variables), f'{template["name"]} does not ask {sorted(required - set(variables))}'


def test_run_context_variables_are_read_by_the_collection():
    sources = '\n'.join(path.read_text(encoding='utf-8') for folder in ('playbooks', 'roles', 'plugins')
                        for path in (ROOT / folder).rglob('*') if path.suffix in ('.yml', '.py'))
    for name in RUN_CONTEXT:
        assert name in sources, name


def test_the_rgpd_survey_maps_the_request(data):
    (rgpd,) = [template for template in data['dihya_awx_job_templates'] if template['playbook'] == 'playbooks/rgpd.yml']
    fields = {field['variable']: field for field in rgpd['survey']}
    assert fields['rgpd_operation']['type'] == 'multiplechoice'
    assert fields['rgpd_subject_id']['required'] is True
    assert fields['rgpd_confirm_erase']['default'] == 'false'
    assert 'dihya_ops_approval_id' in fields
    assert 'export_keys' in rgpd['credentials']


def test_workflow_nodes_name_job_templates(data, playbook, awx_modules):
    templates = {template['name']: template for template in data['dihya_awx_job_templates']}
    (workflow,) = data['dihya_awx_workflows']
    assert workflow['name'] == 'dihya.ops update dependencies then check health'
    identifiers = {node['identifier'] for node in workflow['nodes']}
    for node in workflow['nodes']:
        assert node['unified_job_template']['type'] == 'job_template'
        assert node['unified_job_template']['name'] in templates, node
        for related in node.get('related', {}).values():
            assert {entry['identifier'] for entry in related} <= identifiers, node
    first, second = workflow['nodes']
    assert templates[first['unified_job_template']['name']]['playbook'] == 'playbooks/update_dependencies.yml'
    assert templates[second['unified_job_template']['name']]['playbook'] == 'playbooks/check_health.yml'
    assert first['related']['success_nodes'] == [{'identifier': second['identifier']}]
    node_options = set(_options(_documentation(awx_modules / 'workflow_job_template.py'))['workflow_nodes']['suboptions'])
    for node in workflow['nodes']:
        assert set(node) <= node_options, node
    # The workflow's survey answers reach every node: each is a field of every node's template.
    for field in workflow['survey']:
        for node in workflow['nodes']:
            assert field['variable'] in {entry['variable'] for entry in templates[node['unified_job_template']['name']]['survey']}


def test_credentials_carry_the_secrets(data, playbook):
    types = {entry['name']: entry for entry in data['dihya_awx_credential_types']}
    credentials = {entry['key']: entry for entry in data['dihya_awx_credentials']}
    for template in data['dihya_awx_job_templates']:
        assert set(template['credentials']) <= set(credentials), template['name']
        if any(field['variable'] == 'dihya_ops_approval_id' for field in template['survey']):
            assert {'approval_key', 'governance'} <= set(template['credentials']), template['name']
    for credential in credentials.values():
        assert credential['credential_type'] in set(types) | AWX_CREDENTIAL_TYPES, credential
    sources = '\n'.join(path.read_text(encoding='utf-8') for folder in ('playbooks', 'roles', 'plugins', 'docs')
                        for path in (ROOT / folder).rglob('*') if path.suffix in ('.yml', '.py', '.md'))
    for credential_type in types.values():
        fields = {field['id'] for field in credential_type['inputs']['fields']}
        assert all(field['secret'] is True for field in credential_type['inputs']['fields']), credential_type['name']
        assert set(credential_type['inputs']['required']) <= fields
        injected = {**credential_type['injectors'].get('extra_vars', {}), **credential_type['injectors'].get('env', {}),
                    **credential_type['injectors'].get('file', {})}
        for name, value in injected.items():
            # AWX renders these when a job starts; the run of awx/configure.yml must not.
            assert isinstance(value, Unsafe), f'{credential_type["name"]}: {name} is not !unsafe'
            used = set(re.findall(r'\{\{\s*([a-z_.]+)\s*\}\}', value))
            assert used <= fields | {f'tower.filename.{field}' for field in fields}, (name, used)
        for name in [*credential_type['injectors'].get('extra_vars', {}), *credential_type['injectors'].get('env', {})]:
            assert name in sources, f'{credential_type["name"]} injects {name}, which the collection does not read'
    (play,) = playbook
    (task,) = [task for task in play['tasks'] if 'awx.awx.credential' in task]
    assert task['no_log'] is True
    assert play['vars']['dihya_awx_secrets'] == {}


@pytest.mark.services('ansible')
def test_syntax_check_with_awx_awx_on_the_collection_path(awx_modules, tmp_path):
    env = dict(os.environ, HOME=str(tmp_path), ANSIBLE_NOCOLOR='1', ANSIBLE_FORCE_COLOR='0',
               ANSIBLE_COLLECTIONS_PATH=f'{ROOT / ".cache" / "collections"}:{AWX_COLLECTIONS}')
    check = subprocess.run([str(pathlib.Path(sys.executable).parent / 'ansible-playbook'), '--syntax-check', '-i', 'localhost,',
                            str(AWX / 'configure.yml')], cwd=ROOT, env=env, capture_output=True, text=True, timeout=120, check=False)
    assert check.returncode == 0, check.stdout + check.stderr
