# Copyright (c) Dihya ops maintainers
# GNU General Public License v3.0+ (see LICENSES/GPL-3.0-or-later.txt or https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later

from __future__ import annotations

DOCUMENTATION = r"""
name: pseudonym
short_description: The pseudonym of a personal identifier, as the collection's modules write it
version_added: 0.1.0
description:
  - Returns C(hmac:) followed by the hexadecimal HMAC-SHA256 of the value's text with the key, the pseudonym that
    M(dihya.ops.rgpd) writes in its results, ledgers and audit events for a subject id given in its canonical form
    (for example C(42), not C(042)).
  - Use it wherever a role or playbook builds a message, a task name or a report about a person, so that the clear
    identifier never reaches the output, the controller's audit trail or a host's audit log. Compute it in a task with
    C(no_log), since that task sees the key.
author:
  - Dihya ops maintainers (@dihya-ops)
options:
  _input:
    description: The identifier (a subject id, an e-mail address...). Anything else is turned into its text first.
    type: raw
    required: true
  key:
    description: The pseudonym key, at least 16 characters, from Ansible Vault.
    type: str
    required: true
"""

EXAMPLES = r"""
- name: Name the person of the request by pseudonym only
  ansible.builtin.set_fact:
    subject_pseudonym: "{{ subject_id | string | dihya.ops.pseudonym(vault_pseudonym_key) }}"
  no_log: true
"""

RETURN = r"""
_value:
  description: C(hmac:) and 64 lowercase hexadecimal characters.
  type: str
  sample: hmac:7b1ed00969f79b63df2b372f40d7b1e9edbe129f1d1f3b64276b4fe1149d6c9c
"""

import typing as t

from ansible.errors import AnsibleFilterError

from ansible_collections.dihya.ops.plugins.module_utils._rgpd_values import pseudonym_of

MIN_KEY_LENGTH = 16


def pseudonym(value: object, key: object) -> str:
    """``hmac:`` and the HMAC-SHA256 hex digest of ``value``'s text keyed with ``key``: the RGPD engine's pseudonym
    (the engine calls the same function, which is ``_ids.pseudonym`` of the value's text)."""
    if not isinstance(key, str) or len(key) < MIN_KEY_LENGTH:
        raise AnsibleFilterError(f'dihya.ops.pseudonym: the key must be a string of at least {MIN_KEY_LENGTH} characters')
    return pseudonym_of(value, key.encode('utf-8'))


class FilterModule:
    """Pseudonyms of personal identifiers."""

    def filters(self) -> dict[str, t.Callable[..., str]]:
        return {'pseudonym': pseudonym}
