# Copyright (c) Dihya ops maintainers
# GNU General Public License v3.0+ (see LICENSES/GPL-3.0-or-later.txt or https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later

"""The functional tests' traceback check: a service's quoted error log is evidence, a crash of ansible is not."""

from __future__ import annotations

import pytest

from ansible_collections.dihya.ops.tests.support.fleet import assert_no_traceback

QUOTED = """fatal: [dihya-demo-1]: FAILED! =>
    changed: false
    msg: |-
        Rollout stopped at dihya-demo-1: restarting service web failed.
        Error log, last 20 line(s) of /srv/log/web.stdout.log (earlier lines left out), scrubbed:
            | Traceback (most recent call last):
            |   File "gunicorn", line 8, in <module>
            | gunicorn.errors.HaltServer: <HaltServer 'Worker failed to boot.' 3>

TASK [dihya.ops.operation : Fail with the error of the operation] **************
[ERROR]: Task failed: Action failed: Rollout stopped at dihya-demo-1: web failed. Error log, last 20 line(s) of /srv/web.log, scrubbed:
    | Traceback (most recent call last):
    |   File "gunicorn", line 8, in <module>
    | gunicorn.errors.HaltServer: <HaltServer 'Worker failed to boot.' 3> Rollback to the snapshot succeeded.
Origin: /collections/ansible_collections/dihya/ops/roles/operation/tasks/main.yml:66:7

TASK [dihya.ops.update_dependencies : Keep what failed] ************************
ok: [dihya-demo-1]
"""


def test_a_traceback_quoted_from_the_service_error_log_is_allowed() -> None:
    assert_no_traceback(QUOTED)


@pytest.mark.parametrize("crash", [
    "An exception occurred during task execution.\nThe full traceback is:\nTraceback (most recent call last):\n",
    '    "module_stderr": "Traceback (most recent call last):\\n  File ..."\n',
])
def test_a_traceback_of_ansible_or_a_module_fails(crash: str) -> None:
    with pytest.raises(AssertionError, match="traceback outside"):
        assert_no_traceback(QUOTED + crash)
    with pytest.raises(AssertionError):
        assert_no_traceback(crash + QUOTED)
