# Copyright (c) Dihya ops maintainers
# GNU General Public License v3.0+ (see LICENSES/GPL-3.0-or-later.txt or https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later

"""What the health check tests share: run one check through the runner, and expect an error in its options."""

from __future__ import annotations

import typing as t

from ansible_collections.dihya.ops.plugins.module_utils._health import CheckResult, CheckSpec, run_checks


def check(check_type: str, timeout: float = 5.0, latency_budget: float | None = None, **options: t.Any) -> CheckResult:
    """Run one check through the engine and return its result."""
    [result] = run_checks([CheckSpec('probe', check_type, options, timeout=timeout, latency_budget=latency_budget)])
    return result


def assert_error(result: CheckResult, text: str) -> None:
    """The check's options were refused: status ``error``, never attempted, and the message says ``text``."""
    assert result.status == 'error', result
    assert not result.healthy
    assert result.attempts == 0
    assert text in result.message
