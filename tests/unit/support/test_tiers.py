# Copyright (c) Dihya ops maintainers
# GNU General Public License v3.0+ (see LICENSES/GPL-3.0-or-later.txt or https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later

"""The tiers of the test suite: which tests need a service, and the guard that refuses services in the unit tier."""

from __future__ import annotations

import os
import subprocess
import sys
import types

import pytest

from ansible_collections.dihya.ops.tests.support import tiers
from ansible_collections.dihya.ops.tests.support.services import Postgres, Supervisor

COLLECTIONS = os.path.abspath(os.path.join(os.path.dirname(tiers.__file__), '..', '..', '..', '..', '..'))


@pytest.mark.parametrize('argv, service', [
    (['/usr/lib/postgresql/16/bin/initdb', '-D', 'x'], 'postgres'),
    (['/venv/bin/supervisord', '-c', 'conf'], 'supervisor'),
    (['rsyslogd', '-n'], 'rsyslog'),
    (['/venv/bin/python', '-m', 'pip', 'install', 'x'], 'venv'),
    ([sys.executable, '-m', 'venv', '/tmp/v'], 'venv'),
    (['/venv/bin/ansible-playbook', 'play.yml'], 'ansible'),
    ('exec supervisord -c conf', 'supervisor'),
    (['sleep', '1000'], None),
    ([sys.executable, '-c', 'print(1)'], None),
    (['/venv/bin/supervisorctl', 'status'], None),
    (['/venv/bin/ansible-vault', 'encrypt', 'f'], None),
])
def test_program_service(argv, service):
    assert tiers.program_service(argv) == service


@pytest.mark.parametrize('needed, unit, integration', [(set(), True, False), ({'postgres'}, False, True)])
def test_in_tier(needed, unit, integration):
    assert tiers.in_tier(needed, tiers.UNIT) is unit
    assert tiers.in_tier(needed, tiers.INTEGRATION) is integration
    assert tiers.in_tier(needed, tiers.ALL) is True


def functions(source):
    """The functions ``source`` defines, with the starters in their namespace (this file names none in a test's code)."""
    namespace = {'Supervisor': Supervisor, 'Postgres': Postgres}
    exec(source, namespace)  # pylint: disable=exec-used
    return namespace


def test_started_by_finds_the_starters_a_function_calls():
    found = functions(
        'def fixture():\n    return Supervisor.start()\n'
        'def nested():\n    def inner():\n        return Postgres.start()\n    return inner\n'
        'def plain():\n    return 1\n')
    assert tiers.started_by(found['fixture']) == {'supervisor'}
    assert tiers.started_by(found['nested']) == {'postgres'}
    assert tiers.started_by(found['plain']) == set()
    assert tiers.started_by(None) == set()


def test_needed_services_of_an_item():
    marker = types.SimpleNamespace(args=('load',))
    definition = types.SimpleNamespace(func=functions('def box():\n    return Supervisor.start()\n')['box'])
    item = types.SimpleNamespace(
        iter_markers=lambda name: [marker] if name == 'services' else [],
        fixturenames=['tmp_path', 'postgres', 'box'],
        _fixtureinfo=types.SimpleNamespace(name2fixturedefs={'box': [definition]}),
        function=test_in_tier,
    )
    assert tiers.needed_services(item) == {'load', 'postgres', 'supervisor'}


def test_an_unknown_tier_is_refused():
    with pytest.raises(ValueError, match="unknown test tier 'fast'"):
        tiers.configure('fast')


GUARDED = """
import subprocess, sys
sys.path.insert(0, sys.argv[1])
from ansible_collections.dihya.ops.tests.support import tiers, services
tiers.configure('unit')
subprocess.run(['true'], check=True)
for start in (lambda: subprocess.Popen(['initdb', '-D', '/nonexistent']), services.Supervisor.start, services.Postgres.start):
    try:
        start()
    except tiers.ServiceInUnitTier as exc:
        print('refused:', str(exc).split(' (')[1].split(')')[0])
print(len(tiers.take_violations()), len(tiers.take_violations()))
"""


def test_the_unit_tier_refuses_to_start_a_service():
    # In a child: the audit hook of the unit tier stays for the life of the process.
    proc = subprocess.run([sys.executable, '-c', GUARDED, COLLECTIONS], capture_output=True, text=True, timeout=60, check=False)
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout.splitlines() == ['refused: postgres', 'refused: supervisor', 'refused: postgres', '3 0']
