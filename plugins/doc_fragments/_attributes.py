# Copyright (c) Dihya ops maintainers
# GNU General Public License v3.0+ (see LICENSES/GPL-3.0-or-later.txt or https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later

# This doc fragment is PRIVATE to the collection. It can change at any time.
# Do not use it from other collections or standalone plugins/modules.

from __future__ import annotations


class ModuleDocFragment:
    """Descriptions of the action attributes every module of the collection documents.

    Use the base fragment (C(dihya.ops._attributes)) in every module, then state the support
    level of each attribute in the module itself, or add one of the variants below.
    """

    # Base fragment: what each attribute means. Modules set the support level.
    DOCUMENTATION = r"""
options: {}
attributes:
  check_mode:
    description: Can run in C(check_mode) and return changed status prediction without modifying target.
  diff_mode:
    description: Will return details on what has changed (or possibly needs changing in C(check_mode)), when in diff mode.
  idempotent:
    description:
      - When run twice in a row outside check mode, with the same arguments, the second invocation indicates no change.
      - This assumes that the system controlled/queried by the module has not changed in a relevant way.
  platform:
    description: Target operating systems and families the module can run against.
    support: full
    platforms: posix
"""

    # Use together with the base fragment, for modules that never change the target's state.
    IDEMPOTENT_NOT_MODIFY_STATE = r"""
options: {}
attributes:
  idempotent:
    support: full
    details:
      - This action does not modify state.
"""

    # Use together with the base fragment and ansible.builtin.action_common_attributes.flow, for the actions that run
    # on the controller only (no module is sent to the host).
    CONTROLLER = r"""
options: {}
attributes:
  action:
    support: full
    details:
      - Everything runs on the controller; no module is sent to the host.
  async:
    support: none
  bypass_host_loop:
    support: none
  diff_mode:
    support: none
"""
