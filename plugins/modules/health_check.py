#!/usr/bin/python
# Copyright (c) Dihya ops maintainers
# GNU General Public License v3.0+ (see LICENSES/GPL-3.0-or-later.txt or https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later

from __future__ import annotations


DOCUMENTATION = r"""
module: health_check
short_description: Run HTTP, TCP, process, disk, TLS certificate and SQL health checks concurrently
version_added: 0.1.0
description:
  - Runs a list of read-only health checks concurrently on the target and reports each result and an overall verdict.
  - Supported checks are HTTP and HTTPS endpoints, TCP ports, processes (by pidfile, by name or as a supervisor program),
    free disk space, TLS certificate expiry and SQL queries against SQLite or PostgreSQL.
  - Failing checks can be retried, and a deadline bounds the whole run.
  - Optionally writes the results as gauges to a file for the Prometheus node_exporter textfile collector.
  - The module reports a change only when it creates the metrics folder (O(metrics_dir_mode)). Checks only read; the
    metrics file and the audit events are outputs of the probe, not state the module manages, so writing them does not
    count as a change.
  - Bad input for a single check (a malformed URL, an invalid program name, a missing CA file, ...) does not stop the other checks;
    that check is reported with RV(checks[].status=error) and is not healthy.
author:
  - Dihya ops maintainers (@dihya-ops)
extends_documentation_fragment:
  - dihya.ops._attributes
  - dihya.ops._attributes.idempotent_not_modify_state
attributes:
  check_mode:
    support: full
    details:
      - All checks run in check mode, since they only read. The metrics file is not written (RV(metrics_written=false)).
  diff_mode:
    support: none
requirements:
  - prometheus_client (when O(metrics_path) is set)
  - cryptography (for O(checks[].type=tls_cert) checks)
  - psycopg 3 (for O(checks[].type=sql) checks against PostgreSQL)
  - supervisorctl (for O(checks[].supervisor_program) checks)
options:
  checks:
    description:
      - The checks to run. They run concurrently and are reported in this order.
      - Options that do not apply to a check's O(checks[].type) are an error for that check.
    type: list
    elements: dict
    required: true
    suboptions:
      name:
        description:
          - Name of the check, unique within the task. Used in messages and as the C(check) label of the metrics.
        type: str
        required: true
      type:
        description:
          - What to check.
          - V(http) and V(https) send one request to O(checks[].url). V(https) insists on an C(https://) URL.
          - V(tcp) opens a connection to O(checks[].host) and O(checks[].port) and closes it.
          - V(process) looks for a running process by O(checks[].pidfile), O(checks[].process_name) or O(checks[].supervisor_program).
          - V(disk) compares the free space at O(checks[].path) with O(checks[].min_free_bytes) and O(checks[].min_free_percent).
          - V(tls_cert) fetches the certificate of O(checks[].host) and compares its remaining validity with O(checks[].min_days_valid).
          - V(sql) runs O(checks[].query) read-only against O(checks[].db_url).
        type: str
        required: true
        choices: [http, https, tcp, process, disk, tls_cert, sql]
      timeout:
        description:
          - Seconds this check may take, overriding the top-level O(timeout). Must be greater than 0.
          - It bounds the whole attempt, not each network read; see O(timeout).
        type: float
      latency_budget:
        description:
          - Seconds a passing attempt may take at most; a slower one counts as failed.
        type: float
      url:
        description:
          - URL to request. Required for V(http) and V(https) checks.
          - Must use the C(http) or C(https) scheme and name a host.
          - A user name or password in the URL (C(http://user:password@host/)) is refused, since module arguments are shown
            at C(-vvv) and a URL cannot be hidden without hiding the whole URL. Give the credentials as O(checks[].url_username)
            and O(checks[].url_password), or as an C(Authorization) header in O(checks[].headers); both are hidden from the output.
          - Health checks go straight to the target and ignore proxy environment variables. Redirects are not followed.
        type: str
      url_username:
        description:
          - User name sent with HTTP basic authentication to O(checks[].url). Must not contain a colon.
          - Cannot be combined with an C(Authorization) header in O(checks[].headers).
        type: str
      url_password:
        description:
          - Password sent with HTTP basic authentication, with O(checks[].url_username). Hidden from the output.
        type: str
      method:
        description:
          - HTTP method. Defaults to V(GET).
        type: str
        choices: [GET, HEAD, POST, PUT, PATCH, DELETE, OPTIONS]
      status_codes:
        description:
          - HTTP status codes that count as healthy. Defaults to V([200]).
          - Redirects are not followed, so list 3xx codes here if they are expected.
        type: list
        elements: int
      body_regex:
        description:
          - Python regular expression the response body must match (searched anywhere in the body).
          - Only the first MiB of the body is read.
        type: str
      json_field:
        description:
          - Dotted path of a field that must exist in the JSON response body, for example V(database.status).
          - A numeric path element indexes a list, for example V(replicas.0.state).
        type: str
      json_value:
        description:
          - Expected value of O(checks[].json_field), compared as a string.
          - JSON V(true), V(false) and V(null) read as V(true), V(false) and V(null); numbers as written.
        type: raw
      headers:
        description:
          - Request headers. Their values are hidden from the output, since they often carry tokens.
          - Ansible masks hidden values wherever they appear in the output, so avoid very short or common values here.
        type: dict
      body:
        description:
          - Request body, sent as UTF-8. Set a C(Content-Type) header to match.
        type: str
      validate_certs:
        description:
          - Whether the server certificate must be valid and match the host name.
          - Defaults to V(true) for V(http) and V(https) checks and to V(false) for V(tls_cert) checks,
            which report on expiry even for self-signed certificates.
        type: bool
      ca_path:
        description:
          - PEM file or hashed directory of CA certificates to validate the server certificate with, instead of the system store.
        type: path
      host:
        description:
          - Host name or address to connect to. Required for V(tcp) and V(tls_cert) checks.
        type: str
      port:
        description:
          - TCP port, between 1 and 65535. Required for V(tcp) checks; V(tls_cert) checks default to V(443).
        type: int
      server_name:
        description:
          - Server name sent with SNI and checked against the certificate by V(tls_cert) checks. Defaults to O(checks[].host).
        type: str
      min_days_valid:
        description:
          - Minimum number of days the certificate must stay valid for a V(tls_cert) check to pass. Defaults to V(14).
        type: int
      pidfile:
        description:
          - File holding the PID of the process that must be running (not a zombie).
          - A missing pidfile makes the check fail.
        type: path
      process_name:
        description:
          - Name of a process that must be running, matched against the process name and the base name of its executable.
          - Must match C(^[A-Za-z0-9_.:@][A-Za-z0-9_.:@-]{0,127}$).
        type: str
      supervisor_program:
        description:
          - Name of a supervisor program that must be in the C(RUNNING) state, as C(name) or C(group:name).
          - Must match C(^[A-Za-z0-9_.:@][A-Za-z0-9_.:@-]{0,127}$); anything else is reported as an error and nothing is run.
          - When O(checks[].supervisor_config) names the server URL of supervisorctl (C(serverurl) in its C([supervisorctl]) section,
            V(unix:///...) or V(http://...), using only supervisor's C(here) and C(ENV_) expansions, and no C([include]) section), the state
            is read over supervisord's XML-RPC interface, as supervisorctl does, without starting a supervisorctl process.
          - Otherwise the check runs O(checks[].supervisorctl) with an argument list, never through a shell.
        type: str
      supervisorctl:
        description:
          - supervisorctl executable, as a path or a name looked up in E(PATH). Defaults to V(supervisorctl).
        type: str
      supervisor_config:
        description:
          - supervisord configuration file passed to supervisorctl with C(-c). Without it, supervisorctl looks in its default places.
        type: path
      path:
        description:
          - A path on the file system to check. Required for V(disk) checks.
        type: path
      min_free_bytes:
        description:
          - Minimum space, in bytes, available to unprivileged users on the file system of O(checks[].path).
          - A V(disk) check needs this option, O(checks[].min_free_percent) or both.
        type: int
      min_free_percent:
        description:
          - Minimum free share of the file system of O(checks[].path), between V(0) and V(100), computed like C(df) does.
        type: float
      db_url:
        description:
          - Database to query. Required for V(sql) checks. The same forms as the backend model's C(dihya_backend_db_url) and the
            M(dihya.ops.rgpd) module, and nothing else.
          - An absolute path or V(sqlite:///absolute/path/to/file.db) opens an existing SQLite file read-only; a missing file makes the
            check fail and is never created. A relative path is refused.
          - V(postgresql://user:password@host:port/dbname) (or V(postgres://)), or libpq C(key=value) pairs
            (V(host=db dbname=dihya user=ops password=...)), connects with psycopg in a read-only session; the connection attempt
            is bounded by the check's timeout too (libpq's own connect timeout is whole seconds).
          - The value is hidden from the output, and the password never appears in messages.
          - C(dsn) is an alias, the earlier name of this option.
        type: str
        aliases: [dsn]
      query:
        description:
          - Query to run. Defaults to V(SELECT 1).
          - Must be a single C(SELECT), C(WITH) or C(VALUES) statement (a trailing C(;) and comments are fine); anything else,
            several statements included, is reported with RV(checks[].status=error) and never sent.
          - The query cannot write, whatever it says. SQLite runs it on a read-only (C(mode=ro)) connection with C(query_only)
            and an authorizer that denies everything but reads (no C(ATTACH), C(VACUUM INTO), pragmas, writes, transactions or
            C(load_extension)). PostgreSQL runs it in a read-only session and transaction, one statement only, with a
            C(statement_timeout) and C(lock_timeout) of the time left; use a database role without superuser rights.
        type: str
      expect:
        description:
          - Expected first column of the first row, compared as a string. Without it, the query only has to succeed.
        type: raw
  timeout:
    description:
      - Default number of seconds each check may take. Must be greater than 0.
      - The limit holds for the whole attempt, every phase included (name resolution, connect, TLS handshake, sending, status line,
        headers, body, database connection and query); each phase waits only for the time left, so a peer that sends a byte at a time
        cannot stretch it. A check cut short fails with a message naming the phase and the limit, for example
        C(deadline exceeded while reading the status line and headers (timeout 5 s)).
    type: float
    default: 5
  concurrency:
    description:
      - How many checks run at the same time. Must be at least 1.
    type: int
    default: 32
  tenant:
    description:
      - Value of the C(tenant) label of the metrics. Use a separate O(metrics_path) for each tenant.
    type: str
    default: default
  fail_on_unhealthy:
    description:
      - Fail the task when a check is not healthy. The results are returned either way, and the metrics file is written first.
    type: bool
    default: false
  retries:
    description:
      - How many more times a failing check is attempted. Only checks that fail are attempted again, and errors in a check's options are not retried.
    type: int
    default: 0
  delay:
    description:
      - Seconds to wait before attempting a failing check again. Must be 0 or more.
    type: float
    default: 1
  deadline:
    description:
      - Seconds the whole run may take. Must be greater than 0.
      - Every attempt's timeout is cut to the time left, no retry starts after the deadline,
        and a check that could not start in time fails with a message saying so.
      - A check cut by the deadline fails with C(deadline exceeded <phase> (run deadline N s)).
    type: float
  metrics_path:
    description:
      - File to write the results to, in the Prometheus text format, for the node_exporter textfile collector (which only reads C(*.prom) files).
      - The file is replaced atomically with mode C(0644) on every run outside check mode. Its directory must exist, unless
        O(metrics_dir_mode) is set.
      - Only a regular file (the previous metrics file) is ever replaced. A symbolic link, a directory, a FIFO or a device at
        this path, or a symbolic link among its directories, is refused (a warning in check mode).
      - 'Gauges: C(dihya_health_check_up), C(dihya_health_check_duration_seconds) and C(dihya_health_check_last_success_timestamp_seconds),
        labelled C(check), C(type) and C(tenant); and C(dihya_health_check_healthy), labelled C(tenant).'
      - A failing check keeps the last-success timestamp found in the previous file; it is V(0) if the check never passed.
    type: path
  metrics_dir_mode:
    description:
      - When set, the directory of O(metrics_path) is created with this octal mode (for example V('0755'), so that
        node_exporter, another user, can read it) if it is missing, and RV(metrics_dir_created) is V(true) (the task
        reports a change). In check mode nothing is created; RV(metrics_dir_created) says it would be.
      - An existing directory keeps its owner and mode; anything else at that path is refused, as without this option.
    type: str
  label:
    description:
      - "The name of the host in the failure message of O(fail_on_unhealthy), C(LABEL is unhealthy: SUMMARY). Without it the
        message is the summary alone."
    type: str
  audit:
    description:
      - Record the start and end of an operation in the host's audit log, in this module call, with the engine and the
        format of M(dihya.ops.audit_event) (category C(ops), no network sink), C(OPERATION.started) before any check,
        C(OPERATION.finished) after the work, with the outcome V(success), or V(failure) and the failure message in
        C(details.message) (bad options, an unhealthy host with O(fail_on_unhealthy), a metrics file that cannot be written).
      - The folder of the audit log is created with mode C(0700) when missing (and made C(0700) when it exists).
      - A failure to record an event fails the module; a failure to record the start runs nothing.
      - Nothing is recorded in check mode. The M(dihya.ops.operation_context) lifecycle of the C(dihya.ops.operation) role
        passes it for the C(check_health) operation.
    type: dict
    suboptions:
      path:
        description: The audit log, as M(dihya.ops.audit_event)'s O(dihya.ops.audit_event#module:path).
        type: path
        required: true
      key:
        description: The HMAC key of the audit chain.
        type: str
        required: true
      pseudonym_key:
        description: The key that pseudonymises the user (default O(audit.key)).
        type: str
      operation:
        description: The name of the operation, the first part of the events' action.
        type: str
        required: true
      user:
        description: Who runs the operation (recorded pseudonymised).
        type: str
      tenant:
        description: The tenant of the run.
        type: str
      trace_id:
        description: The trace id of the run (32 hexadecimal digits).
        type: str
      correlation_id:
        description: The caller's request or change id.
        type: str
      route:
        description: The route of the events (for example C(dihya.ops.check_health)).
        type: str
      host:
        description: The name of the host in the events.
        type: str
      labels:
        description: Labels of the events (for example C(play), C(environment)).
        type: dict
notes:
  - Checks run in threads of the module process on the target. Blocking calls that take no timeout of their own (name resolution,
    the PostgreSQL connect, C(statvfs) and pidfile reads that a dead network file system can hang) run in a bounded helper thread,
    so the check still ends at its timeout; such a helper thread is left behind until the module exits.
seealso:
  - name: node_exporter textfile collector
    description: How node_exporter picks up metrics written to files.
    link: https://github.com/prometheus/node_exporter#textfile-collector
"""

EXAMPLES = r"""
- name: Check the backend before and after a deployment
  dihya.ops.health_check:
    checks:
      - name: healthz
        type: http
        url: http://127.0.0.1:8000/healthz
        json_field: database.status
        json_value: ok
        latency_budget: 0.5
      - name: gunicorn
        type: process
        supervisor_program: dihya-backend
        supervisor_config: /etc/supervisor/supervisord.conf
      - name: postgres
        type: tcp
        host: 127.0.0.1
        port: 5432
      - name: data disk
        type: disk
        path: /var/lib/dihya
        min_free_percent: 10
      - name: certificate
        type: tls_cert
        host: dihya.example.org
        min_days_valid: 21
    retries: 2
    delay: 2
    deadline: 30
    fail_on_unhealthy: true

- name: Feed the node_exporter textfile collector
  dihya.ops.health_check:
    tenant: "{{ dihya_tenant }}"
    metrics_path: "/var/lib/node_exporter/textfile/dihya_health_{{ dihya_tenant }}.prom"
    checks:
      - name: api
        type: https
        url: "https://{{ inventory_hostname }}/api/health"
        ca_path: /etc/dihya/ca.pem
        headers:
          Authorization: "Bearer {{ dihya_health_token }}"
      - name: sessions-db
        type: sql
        db_url: sqlite:///var/lib/dihya/sessions.db
        query: SELECT count(*) >= 0 FROM sessions
        expect: 1
  register: dihya_health

- name: Show what failed
  ansible.builtin.debug:
    msg: "{{ dihya_health.summary }}"
  when: not dihya_health.healthy
"""

RETURN = r"""
healthy:
  description: Whether every check is healthy.
  returned: always
  type: bool
  sample: false
summary:
  description: One line for humans, naming the failed checks and why they failed.
  returned: always
  type: str
  sample: "2/3 checks healthy; failed: healthz (HTTP 503 not in [200])"
failed_checks:
  description: Names of the checks that are not healthy, in input order.
  returned: always
  type: list
  elements: str
  sample: [healthz]
checks:
  description: One result per check, in input order.
  returned: always
  type: list
  elements: dict
  contains:
    name:
      description: Name of the check.
      type: str
      returned: always
      sample: healthz
    type:
      description: Type of the check.
      type: str
      returned: always
      sample: http
    healthy:
      description: Whether the check passed.
      type: bool
      returned: always
      sample: false
    status:
      description:
        - V(ok) when the check passed, V(failed) when it ran and failed, V(error) when its options are unusable.
      type: str
      returned: always
      sample: failed
    message:
      description: What the check found, for humans.
      type: str
      returned: always
      sample: HTTP 503 not in [200]
    latency_seconds:
      description: Duration of the last attempt, in seconds.
      type: float
      returned: always
      sample: 0.0132
    attempts:
      description: How many times the check was attempted. V(0) for an error in its options or when the deadline passed before it could start.
      type: int
      returned: always
      sample: 1
    details:
      description:
        - Facts the check collected, depending on its type.
        - V(http) and V(https) return C(status_code), C(body_bytes) and, with O(checks[].json_field), C(json_value).
        - V(tcp) returns C(host), C(port) and the connected C(address).
        - V(process) returns C(pid) and C(pidfile) for a pidfile; C(pids) and C(count) for a process name;
          C(supervisor_state), C(pid), C(uptime) and C(rc) for a supervisor program.
        - V(disk) returns C(free_bytes), C(total_bytes) and C(free_percent).
        - V(tls_cert) returns C(days_left), C(not_after), C(not_before), C(subject) and C(issuer).
        - V(sql) returns C(backend) and the first column of the first row as C(value).
      type: dict
      returned: always
      sample: {status_code: 503, body_bytes: 18}
duration_seconds:
  description: How long the whole run took, in seconds.
  returned: always
  type: float
  sample: 0.42
metrics_path:
  description: The value of O(metrics_path).
  returned: always
  type: str
  sample: /var/lib/node_exporter/textfile/dihya_health.prom
metrics_dir_created:
  description: Whether the metrics folder was created (in check mode, would be created) because of O(metrics_dir_mode).
  returned: always
  type: bool
  sample: false
audit_finished:
  description: Whether the end of the operation was recorded (O(audit), outside check mode), also when the module failed.
  returned: when O(audit) is set
  type: bool
  sample: true
metrics_written:
  description: Whether the metrics file was written. Always V(false) in check mode or without O(metrics_path).
  returned: always
  type: bool
  sample: true
"""

import os
import traceback

from ansible.module_utils.basic import AnsibleModule

from ansible_collections.dihya.ops.plugins.module_utils._audit_emit import AUDIT_OPTIONS, operation_event

from ansible_collections.dihya.ops.plugins.module_utils._health import CHECK_TYPES, build_specs, run_report, settings_errors
from ansible_collections.dihya.ops.plugins.module_utils._metrics import MetricsError, preflight, write_health_metrics
from ansible_collections.dihya.ops.plugins.module_utils._probe_http import HTTP_METHODS, url_secrets


CHECK_OPTIONS = dict(
    name=dict(type='str', required=True),
    type=dict(type='str', required=True, choices=list(CHECK_TYPES)),
    timeout=dict(type='float'),
    latency_budget=dict(type='float'),
    url=dict(type='str'),
    url_username=dict(type='str'),
    url_password=dict(type='str', no_log=True),
    method=dict(type='str', choices=list(HTTP_METHODS)),
    status_codes=dict(type='list', elements='int'),
    body_regex=dict(type='str'),
    json_field=dict(type='str'),
    json_value=dict(type='raw'),
    headers=dict(type='dict', no_log=True),
    body=dict(type='str'),
    validate_certs=dict(type='bool'),
    ca_path=dict(type='path'),
    host=dict(type='str'),
    port=dict(type='int'),
    server_name=dict(type='str'),
    min_days_valid=dict(type='int'),
    pidfile=dict(type='path'),
    process_name=dict(type='str'),
    supervisor_program=dict(type='str'),
    supervisorctl=dict(type='str'),
    supervisor_config=dict(type='path'),
    path=dict(type='path'),
    min_free_bytes=dict(type='int'),
    min_free_percent=dict(type='float'),
    db_url=dict(type='str', no_log=True, aliases=['dsn']),
    query=dict(type='str'),
    expect=dict(type='raw'),
)

ARGUMENT_SPEC = dict(
    checks=dict(
        type='list',
        elements='dict',
        required=True,
        options=CHECK_OPTIONS,
        mutually_exclusive=[('pidfile', 'process_name', 'supervisor_program')],
        required_if=[
            ('type', 'http', ('url',)),
            ('type', 'https', ('url',)),
            ('type', 'tcp', ('host', 'port')),
            ('type', 'tls_cert', ('host',)),
            ('type', 'process', ('pidfile', 'process_name', 'supervisor_program'), True),
            ('type', 'disk', ('path',)),
            ('type', 'disk', ('min_free_bytes', 'min_free_percent'), True),
            ('type', 'sql', ('db_url',)),
        ],
    ),
    timeout=dict(type='float', default=5),
    concurrency=dict(type='int', default=32),
    tenant=dict(type='str', default='default'),
    fail_on_unhealthy=dict(type='bool', default=False),
    retries=dict(type='int', default=0),
    delay=dict(type='float', default=1),
    deadline=dict(type='float'),
    metrics_path=dict(type='path'),
    metrics_dir_mode=dict(type='str'),
    label=dict(type='str'),
    audit=dict(type='dict', options=AUDIT_OPTIONS),
)


def _metrics_dir(module: AnsibleModule, metrics_path: str | None, mode: str | None) -> bool:
    """Create the metrics file's folder when it is missing and a mode is given; whether it was (or would be) created."""
    if not metrics_path or mode is None:
        return False
    directory = os.path.dirname(metrics_path)
    if os.path.lexists(directory):
        return False
    try:
        bits = int(mode, 8)
    except ValueError:
        bits = -1
    if not 0 <= bits <= 0o7777:
        module.fail_json(msg=f'metrics_dir_mode must be an octal mode such as 0755, not {mode!r}')
    if not module.check_mode:
        try:
            os.makedirs(directory, mode=bits)
            os.chmod(directory, bits)
        except OSError as exc:
            module.fail_json(msg=f'the metrics folder {directory} cannot be created: {exc.strerror}')
    return True


def _audit_failures(module: AnsibleModule) -> None:
    """Make fail_json record the end of the operation, as a failure with its message, before failing."""
    audit = module.params['audit']
    fail_json = module.fail_json

    def fail(msg: str, **kwargs: object) -> None:
        module.fail_json = fail_json
        if 'audit' not in kwargs:
            operation_event(module, audit, 'finished', 'failure', msg)
            kwargs['audit_finished'] = not module.check_mode
        fail_json(msg=msg, **kwargs)

    module.fail_json = fail


def main() -> None:
    module = AnsibleModule(argument_spec=ARGUMENT_SPEC, supports_check_mode=True)
    params = module.params
    metrics_path = params['metrics_path']
    audit = params['audit']
    if audit:
        # The start of the operation, before any work; from here on, every failure records its end.
        operation_event(module, audit, 'started')
        _audit_failures(module)
    # A URL's user information is refused by the check, but the module's arguments are echoed back (at -vvv):
    # hide it there too, and wherever else it could appear.
    for check in params['checks']:
        module.no_log_values.update(url_secrets(check.get('url')))

    run_options = dict(concurrency=params['concurrency'], retries=params['retries'], delay=params['delay'], deadline=params['deadline'])
    specs = build_specs(params['checks'], params['timeout'])
    errors = settings_errors(specs, params['tenant'], timeout=params['timeout'], **run_options)
    if errors:
        module.fail_json(msg='; '.join(errors))
    created = _metrics_dir(module, metrics_path, params['metrics_dir_mode'])
    if not (created and module.check_mode):
        preflight(module, metrics_path)

    report = run_report(specs, **run_options)
    outcome = report.outcome(metrics_path)
    outcome.update(metrics_dir_created=created, changed=created)
    if metrics_path and not module.check_mode:
        try:
            for warning in write_health_metrics(metrics_path, report.results, params['tenant']):
                module.warn(warning)
        except MetricsError as exc:
            module.fail_json(msg=str(exc), exception=traceback.format_exc(), **outcome)
        outcome['metrics_written'] = True

    if params['fail_on_unhealthy'] and not report.healthy:
        module.fail_json(msg=f"{params['label']} is unhealthy: {report.summary}" if params['label'] else report.summary, **outcome)
    if audit:
        operation_event(module, audit, 'finished')
        outcome['audit_finished'] = not module.check_mode
    module.exit_json(**outcome)


if __name__ == '__main__':
    main()
