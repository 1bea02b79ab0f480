# Copyright (c) Dihya ops maintainers
# GNU General Public License v3.0+ (see LICENSES/GPL-3.0-or-later.txt or https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later

from __future__ import annotations

DOCUMENTATION = r"""
name: backend_health_check
short_description: The backend model's definition of a healthy backend, as one dihya.ops.health_check check
version_added: 0.1.0
description:
  - Turns the health variables of the backend model (C(dihya_backend_health_*), see C(docs/backend-model.md)) into the
    HTTP or HTTPS check of M(dihya.ops.health_check) that both the C(dihya.ops.check_health) role and the health gate of the
    C(dihya.ops.restart_services) role run, so that the two always agree on what healthy means.
  - The check passes when the answer's status is one of O(expected_status) and, only when they are set, its body matches
    O(body_regex) and the JSON field O(json_field) has the value O(json_value). With the defaults no body is read as JSON, so
    an HTML page (a login page) is healthy on its status alone.
  - The check is V(https) for an C(https://) URL and V(http) otherwise. Empty options are left out of the check.
  - Bad values (a status that is not an HTTP code, an invalid regular expression, a URL holding a user name or password...)
    fail the templating with a message naming them.
author:
  - Dihya ops maintainers (@dihya-ops)
options:
  _input:
    description: The health URL, C(dihya_backend_health_url). It must not hold a user name or password.
    type: str
    required: true
  name:
    description: Name of the check (its C(check) label in the metrics).
    type: str
    default: http_health
  expected_status:
    description: HTTP status codes that count as healthy.
    type: list
    elements: int
    default: [200]
  body_regex:
    description: Python regular expression the body must match (searched anywhere); empty checks no body.
    type: str
    default: ''
  json_field:
    description: Dotted path of a field of the JSON body; empty makes no JSON check.
    type: str
    default: ''
  json_value:
    description: Value O(json_field) must have, compared as text. Ignored without O(json_field).
    type: str
    default: ok
  validate_certs:
    description: Verify the certificate of an C(https://) URL.
    type: bool
    default: true
  username:
    description: User name for HTTP basic authentication; empty sends none.
    type: str
    default: ''
  password:
    description: Password for HTTP basic authentication (from Vault); the module hides it from the output.
    type: str
    default: ''
  latency_budget:
    description: Seconds; a slower answer counts as unhealthy. Unset sets no budget.
    type: float
"""

EXAMPLES = r"""
- name: Run the backend model's health check once
  dihya.ops.health_check:
    checks:
      - "{{ dihya_backend_health_url | dihya.ops.backend_health_check(expected_status=[200, 302], body_regex='Sign in') }}"
    fail_on_unhealthy: true
"""

RETURN = r"""
_value:
  description: One check in the format of the O(dihya.ops.health_check#module:checks) option.
  type: dict
  sample: {name: http_health, type: http, url: "http://127.0.0.1:8000/healthz", status_codes: [200], validate_certs: true,
           json_field: status, json_value: ok}
"""

import typing as t

from ansible.errors import AnsibleFilterError
from ansible.module_utils.parsing.convert_bool import boolean

from ansible_collections.dihya.ops.plugins.module_utils._health import MODEL_CHECK_NAME, model_http_check
from ansible_collections.dihya.ops.plugins.module_utils._probe_common import CheckConfigError


def backend_health_check(
    url: object,
    name: str = MODEL_CHECK_NAME,
    expected_status: object = (200,),
    body_regex: object = '',
    json_field: object = '',
    json_value: object = 'ok',
    validate_certs: object = True,
    username: object = '',
    password: object = '',
    latency_budget: object = None,
) -> dict[str, t.Any]:
    """The health_check check of the backend model's health definition (see :func:`._health.model_http_check`)."""
    try:
        certs = boolean(validate_certs, strict=True)
    except TypeError:
        raise AnsibleFilterError(f'dihya.ops.backend_health_check: validate_certs must be a boolean (got {validate_certs!r})') from None
    try:
        budget = float(t.cast(t.Any, latency_budget)) if latency_budget not in (None, '') else None
    except (TypeError, ValueError):
        raise AnsibleFilterError(f'dihya.ops.backend_health_check: latency_budget must be a number (got {latency_budget!r})') from None
    try:
        return model_http_check(url, name=name, expected_status=expected_status, body_regex=body_regex, json_field=json_field,
                                json_value=json_value, validate_certs=certs, username=username, password=password, latency_budget=budget)
    except CheckConfigError as exc:
        raise AnsibleFilterError(f'dihya.ops.backend_health_check: {exc}') from None


class FilterModule:
    """The backend model's health definition."""

    def filters(self) -> dict[str, t.Callable[..., dict[str, t.Any]]]:
        return {'backend_health_check': backend_health_check}
