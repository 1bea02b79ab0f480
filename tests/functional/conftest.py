# Copyright (c) Dihya ops maintainers
# GNU General Public License v3.0+ (see LICENSES/GPL-3.0-or-later.txt or https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later

"""Fixtures for the functional tests: a real demo fleet (see ``tests/support/fleet.py``), deployed once per session.

It is torn down (processes stopped by PID, roots removed) at the end of the session.
"""

from __future__ import annotations

import typing as t

import pytest

from ansible_collections.dihya.ops.tests.support.fleet import Fleet, fleet_for_worker


@pytest.fixture(scope="session")
def fleet() -> t.Iterator[Fleet]:
    fleet = fleet_for_worker()
    deployed = fleet.playbook("tests/demo_backend/deploy.yml")
    try:
        assert deployed.returncode == 0, deployed.stdout + deployed.stderr
        yield fleet
    finally:
        fleet.playbook("tests/demo_backend/teardown.yml", "-e", "demo_backend_purge=true")
