# Copyright (c) Dihya ops maintainers
# GNU General Public License v3.0+ (see LICENSES/GPL-3.0-or-later.txt or https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later

"""The two tiers of the Python tests, and the guard that keeps services out of the unit tier.

* ``unit``: every test that is not marked ``services``. Nothing is started but in-process loopback servers and
  short-lived child processes: no supervisord, PostgreSQL, rsyslog, virtual environment with pip or ansible-playbook run
  (``scripts/test.sh unit``, which runs ``pytest --tier unit``; ``-m "not services"`` selects the same tests).
* ``integration``: the tests marked ``services``, against the same real services (``pytest --tier integration``).

A test is marked ``services`` automatically (by tests/unit/conftest.py, with :func:`needed_services`) when it
requests a service fixture (:data:`SERVICE_FIXTURES`) or uses a fixture, at any depth, or is itself a function
that calls one of the :data:`STARTERS`; a test can also say ``@pytest.mark.services('postgres')``.

In a unit-tier session, a service that starts anyway makes its test fail: the starters of :mod:`.services`
refuse, and an audit hook refuses every subprocess that would run a service program or pip
(:func:`program_service`). A service that slips through the marking thus fails loudly instead of slowing the tier down.
"""

from __future__ import annotations

import os
import sys
import types
import typing as t

ALL = 'all'
UNIT = 'unit'
INTEGRATION = 'integration'
TIERS = (ALL, UNIT, INTEGRATION)

# What a test of the integration tier needs, as the ``services`` marker names it: a daemon (postgres, rsyslog,
# supervisor), a virtual environment that pip works in (venv), a real run of the Ansible controller, ansible or
# ansible-playbook, on localhost (ansible), or a load test that works on a large data set in a child process (load).
SERVICES = ('ansible', 'load', 'postgres', 'rsyslog', 'supervisor', 'venv')

# Fixtures that are a service, wherever they are defined.
SERVICE_FIXTURES = {'postgres': 'postgres', 'supervisor': 'supervisor', 'rsyslog': 'rsyslog'}

# Functions and classes (by module and qualified name) that start a service: a fixture or a test that calls one needs it.
STARTERS = {
    'ansible_collections.dihya.ops.tests.support.services.Supervisor': 'supervisor',
    'ansible_collections.dihya.ops.tests.support.services.Postgres': 'postgres',
    'ansible_collections.dihya.ops.tests.unit.plugins.audit_receivers.Rsyslog': 'rsyslog',
    'ansible_collections.dihya.ops.tests.unit.plugins.module_utils.pydeps_utils.make_venv': 'venv',
    'ansible_collections.dihya.ops.tests.unit.plugins.module_utils.pydeps_utils.install': 'venv',
}

# Programs that are services (by file name), and modules run with ``python -m`` that build or fill virtual environments.
PROGRAMS = {'supervisord': 'supervisor', 'postgres': 'postgres', 'initdb': 'postgres', 'pg_ctl': 'postgres', 'rsyslogd': 'rsyslog',
            'gunicorn': 'gunicorn', 'ansible-playbook': 'ansible', 'ansible': 'ansible'}
PYTHON_MODULES = {'pip': 'venv', 'venv': 'venv', 'ensurepip': 'venv', 'virtualenv': 'venv'}


class ServiceInUnitTier(AssertionError):
    """A test of the unit tier started a service: it needs the ``services`` marker (and then runs in the integration tier)."""


_state: dict[str, t.Any] = {'tier': ALL, 'hooked': False}
_violations: list[str] = []


def configure(tier: str) -> None:
    """Make ``tier`` the tier of this process; in the unit tier, arm the guard."""
    if tier not in TIERS:
        raise ValueError(f'unknown test tier {tier!r}: expected one of {", ".join(TIERS)}')
    _state['tier'] = tier
    if tier == UNIT and not _state['hooked']:
        sys.addaudithook(_audit)
        _state['hooked'] = True


def current() -> str:
    return str(_state['tier'])


def refuse_in_unit_tier(service: str, what: str) -> None:
    """Raise :class:`ServiceInUnitTier` (and remember it for :func:`take_violations`) if this is a unit-tier session."""
    if _state['tier'] != UNIT:
        return
    message = (f'the unit tier starts no service, and this test started {what} ({service}): '
               f"mark it @pytest.mark.services({service!r}) or use a fixture that is a service; it then runs in the integration tier")
    _violations.append(message)
    raise ServiceInUnitTier(message)


def take_violations() -> list[str]:
    """The refusals since the last call (a test that caught the exception still fails on them)."""
    found = list(_violations)
    _violations.clear()
    return found


def program_service(argv: t.Sequence[str] | str) -> str | None:
    """The service that the command line ``argv`` starts, if any."""
    words = argv.split() if isinstance(argv, str) else [str(word) for word in argv]
    for index, word in enumerate(words):
        if os.path.basename(word) in PROGRAMS:
            return PROGRAMS[os.path.basename(word)]
        if word == '-m' and index + 1 < len(words) and words[index + 1] in PYTHON_MODULES:
            return PYTHON_MODULES[words[index + 1]]
    return None


def _audit(event: str, args: tuple[t.Any, ...]) -> None:
    if event != 'subprocess.Popen' or _state['tier'] != UNIT:
        return
    executable, argv = args[0], args[1]
    words = ([os.fspath(executable)] if executable else []) + ([argv] if isinstance(argv, (str, bytes, os.PathLike)) else list(argv or ()))
    service = program_service([os.fsdecode(word) for word in words])
    if service is not None:
        refuse_in_unit_tier(service, ' '.join(os.fsdecode(word) for word in words)[:200])


def _codes(code: types.CodeType) -> t.Iterator[types.CodeType]:
    yield code
    for constant in code.co_consts:
        if isinstance(constant, types.CodeType):
            yield from _codes(constant)


def started_by(function: t.Any) -> set[str]:
    """The services that ``function`` (a fixture or a test function) starts by calling one of the :data:`STARTERS`."""
    code = getattr(function, '__code__', None)
    namespace = getattr(function, '__globals__', {})
    found = set()
    if isinstance(code, types.CodeType):
        for inner in _codes(code):
            for name in inner.co_names:
                target = namespace.get(name)
                key = f'{getattr(target, "__module__", "")}.{getattr(target, "__qualname__", "")}'
                if key in STARTERS:
                    found.add(STARTERS[key])
    return found


def needed_services(item: t.Any) -> set[str]:
    """The services a collected test needs: its ``services`` markers, service fixtures, and fixtures or a body that start one."""
    needed = {str(name) for marker in item.iter_markers('services') for name in marker.args}
    definitions = getattr(getattr(item, '_fixtureinfo', None), 'name2fixturedefs', {})
    for name in getattr(item, 'fixturenames', ()):
        if name in SERVICE_FIXTURES:
            needed.add(SERVICE_FIXTURES[name])
        for definition in definitions.get(name, ()):
            needed |= started_by(definition.func)
    needed |= started_by(getattr(item, 'function', None))
    return needed


def in_tier(needed: set[str], tier: str) -> bool:
    """Whether a test that needs the ``needed`` services runs in ``tier``."""
    return tier == ALL or (tier == UNIT) is not bool(needed)
