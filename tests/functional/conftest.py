# Copyright (c) Dihya ops maintainers
# GNU General Public License v3.0+ (see LICENSES/GPL-3.0-or-later.txt or https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later

"""Fixtures for the functional tests: a real demo fleet (see ``tests/support/fleet.py``), deployed once per session.

It is torn down (processes stopped by PID, roots removed) at the end of the session.

The files run longest first (``RUN_ORDER``), so that under ``--dist loadfile --no-loadscope-reorder``
(``scripts/test.sh functional``) the two workers take the long files at once and end together on short ones.
"""

from __future__ import annotations

import typing as t

import pytest

from ansible_collections.dihya.ops.tests.support.fleet import Fleet, fleet_for_worker

# Test files by the time they take (seconds measured on two busy cores), longest first. A file not listed runs
# first: a new file is not known to be short.
RUN_ORDER = (
    "test_role_booleans.py",      # 450
    "test_social_backend.py",     # 360, deploys its own backend
    "test_rotate_logs.py",        # 380
    "test_run_ops.py",            # 310, PostgreSQL for its DSN canary
    "test_restart_services.py",   # 255
    "test_zero_downtime.py",      # 240
    "test_operation.py",          # 210
    "test_update_dependencies.py",  # 180
    "test_check_health.py",       # 170
    "test_safe_writes.py",        # 165
    "test_purge_temp_files.py",   # 105
    "test_rgpd.py",               # 105
    "test_audit_callback.py",     # 65, no fleet
    "test_operation_ipfs_export.py",  # 45
    "test_build.py",              # 40, no fleet
)


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    """Order the files longest first; the tests of a file keep their order."""
    def rank(item: pytest.Item) -> int:
        name = item.path.name
        return RUN_ORDER.index(name) if name in RUN_ORDER else -1
    items.sort(key=rank)


@pytest.fixture(scope="session")
def fleet() -> t.Iterator[Fleet]:
    fleet = fleet_for_worker()
    deployed = fleet.playbook("tests/demo_backend/deploy.yml")
    try:
        assert deployed.returncode == 0, deployed.stdout + deployed.stderr
        yield fleet
    finally:
        fleet.playbook("tests/demo_backend/teardown.yml", "-e", "demo_backend_purge=true")
