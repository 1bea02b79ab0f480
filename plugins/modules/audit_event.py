#!/usr/bin/python
# Copyright (c) Dihya ops maintainers
# GNU General Public License v3.0+ (see LICENSES/GPL-3.0-or-later.txt or https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later

from __future__ import annotations


DOCUMENTATION = r"""
module: audit_event
short_description: Write one audit event to a tamper-evident log and forward it to syslog, Elasticsearch, Splunk or a webhook
version_added: 0.1.0
description:
  - Builds one ECS-compatible audit event and appends it to the audit log file O(path) on the managed host, chained with
    HMAC-SHA256 (sequence number, hash of the previous record, HMAC with O(key)). This file is the source of truth;
    M(dihya.ops.audit_verify) checks its chain.
  - User ids, e-mail addresses and source IP addresses are replaced by keyed pseudonyms (C(hmac:<hex>)) unless
    O(allow_clear_values=true).
  - The event can also be forwarded to network sinks (O(sinks)), through a durable spool on the managed host. The record is
    written to the spool (one file per record and sink, mode 0600, written to a temporary file, flushed to disk and renamed)
    before it is sent, and removed only once the sink acknowledged it. Whatever was not delivered stays in the spool and is
    sent again, oldest first, by the next run for the same O(spool_dir). Delivery is therefore at least once; nothing is dropped.
  - What counts as an acknowledgement - syslog over TCP or TLS, the messages were written and the connection closed cleanly;
    syslog over UDP, the datagram was sent (UDP has no acknowledgement, so delivery is best effort);
    Elasticsearch, an HTTP 2xx answer to C(_bulk) in which the item was created (HTTP 409, already present, also counts, as
    records are sent with C(create) and their chain HMAC as C(_id), so a record sent twice is indexed once);
    Splunk HEC and webhooks, an HTTP 2xx answer.
  - A record a sink refuses for good (an Elasticsearch item error other than 409 or 429, a message too large for UDP) is moved to
    C(<spool_dir>/<sink name>/rejected/), with the reason next to it, and reported in RV(delivery.sinks[].rejected). It is never deleted.
  - Spool files hold only the record as written to the log (already pseudonymised), never O(key), O(pseudonym_key) or tokens.
author:
  - Dihya ops maintainers (@dihya-ops)
extends_documentation_fragment:
  - dihya.ops._attributes
attributes:
  check_mode:
    support: full
    details:
      - In check mode the module builds and validates the event and the sinks and returns the event it would write, without
        the chain fields, and what it would queue. It writes nothing and sends nothing.
      - It fails where the real run would refuse the log, its lock file or the spool (a symbolic link, or not a regular file
        or directory). A missing directory of O(path) or O(metrics_path) is only a warning, as an earlier task may create it.
  diff_mode:
    support: none
  idempotent:
    support: none
    details:
      - Every run appends a new record to the log.
requirements:
  - prometheus_client (only with O(metrics_path))
options:
  path:
    description:
      - The audit log file. It is created with mode 0600 when missing; its directory must exist. A symbolic link is refused.
      - An absolute path without C(..) components or NUL bytes, like every path option of this module; a relative path is
        refused. C(~) is expanded to the home directory of the user the module runs as.
    type: path
    required: true
  key:
    description:
      - The HMAC-SHA256 chain key, at least 16 bytes. Keep it in Ansible Vault.
    type: str
    required: true
  pseudonym_key:
    description:
      - Key of the pseudonyms of O(user), O(email) and O(source_ip). Without it, a key derived from O(key) is used.
    type: str
  allow_clear_values:
    description:
      - Write O(user), O(email) and O(source_ip) in clear instead of pseudonyms. Only where a legal basis allows it.
    type: bool
    default: false
  action:
    description:
      - What happened, for example V(restart_services.finished). Becomes C(event.action).
    type: str
    required: true
  category:
    description:
      - Category of the event (C(event.category)).
    type: str
    choices: [audit, security, rgpd, ops]
    default: audit
  outcome:
    description:
      - Outcome of the event (C(event.outcome)).
    type: str
    choices: [success, failure, denied]
    default: success
  user:
    description:
      - Who did it (C(user.id)), pseudonymised unless O(allow_clear_values=true).
    type: str
  tenant:
    description:
      - Tenant concerned (C(organization.id)).
    type: str
  trace_id:
    description:
      - Trace id that ties together everything about one run (C(trace.id)). A new one is made when omitted; it is returned in RV(trace_id).
    type: str
  correlation_id:
    description:
      - Caller's correlation or request id (C(dihya.correlation_id)).
    type: str
  route:
    description:
      - The route or operation path (C(url.path)).
    type: str
  host:
    description:
      - Host the event is about (C(host.name)). Defaults to the managed host's name.
    type: str
  email:
    description:
      - E-mail address of the user (C(user.email)), pseudonymised unless O(allow_clear_values=true).
    type: str
  source_ip:
    description:
      - Source IP address (C(source.ip)), pseudonymised unless O(allow_clear_values=true).
    type: str
  labels:
    description:
      - Flat string labels (C(labels)). Numbers and booleans become strings.
    type: dict
  details:
    description:
      - Free-form details (C(dihya.details)). O(labels) and O(details) together may take at most 16 KiB as canonical JSON.
    type: dict
  fsync:
    description:
      - When the log is flushed to disk. One event is written per task, so both modes flush once per task.
    type: str
    choices: [always, batch]
    default: always
  sinks:
    description:
      - Network sinks that receive the event, in addition to the log file.
      - A sink with a wrong specification (unknown O(sinks[].type), bad port, missing URL...) does not stop the event. It is written to
        the log and kept in the spool under the sink's name, and the task then fails with a message naming the sink. Give each sink
        a O(sinks[].name), so that records kept while its specification was wrong are sent once it is fixed.
      - An unreachable sink does not make the task fail. Its records stay in the spool, the task warns and reports them in
        RV(delivery.sinks[].pending).
    type: list
    elements: dict
    default: []
    suboptions:
      type:
        description:
          - V(syslog) sends RFC 5424 messages over UDP, TCP (octet-counting framing, RFC 6587) or TLS (RFC 5425).
            The message holds the record as JSON; its structured data C([dihya@32473 ...]) holds the record id, action, outcome, trace id,
            tenant and sequence number. Severity is C(notice) for a success, C(warning) otherwise.
          - V(elasticsearch) sends ECS documents with the C(_bulk) API.
          - V(splunk_hec) sends to the Splunk HTTP Event Collector, one envelope per record (the record in its C(event) field), with the token
            in an C(Authorization) header of the C(Splunk) scheme.
          - V(webhook) POSTs the record as JSON, with the record id in the C(Idempotency-Key) header.
          - Choices are V(syslog), V(elasticsearch), V(splunk_hec) and V(webhook).
        type: str
        required: true
      name:
        description:
          - Name of the sink's spool directory (letters, digits, C(.), C(_), C(-)). Defaults to the type and a digest of the endpoint.
        type: str
      url:
        description:
          - For HTTP sinks, the URL (C(http://) or C(https://)), without credentials (use O(sinks[].token)).
            For V(elasticsearch), C(/_bulk) is added unless the path already ends with it.
            For V(splunk_hec), a URL without path gets C(/services/collector/event).
          - For V(syslog), C(udp://host:port), C(tcp://host:port) or C(tls://host:port), instead of O(sinks[].host), O(sinks[].port)
            and O(sinks[].protocol).
        type: str
      host:
        description:
          - Syslog receiver host name or IP address.
        type: str
      port:
        description:
          - Syslog receiver port, 1 to 65535. Defaults to 514 for udp and tcp, 6514 for tls.
        type: raw
      protocol:
        description:
          - Syslog transport, V(udp), V(tcp) or V(tls). Defaults to V(tcp).
        type: str
      index:
        description:
          - Elasticsearch index or data stream (default V(dihya-audit)), or Splunk index (default, the token's index).
        type: str
      token:
        description:
          - Credential sent in the C(Authorization) header; C(ApiKey <token>) for Elasticsearch, C(Splunk <token>) for HEC
            (required) and C(Bearer <token>) for webhooks. It is never written to the spool, the log or the results.
        type: str
      ca_path:
        description:
          - CA bundle (PEM) to check the certificate of an HTTPS or TLS syslog receiver. Defaults to the system's CAs.
          - An absolute path (see O(path)).
        type: path
      validate_certs:
        description:
          - Check the receiver's certificate and host name. Turn off only for tests.
        type: bool
        default: true
      timeout:
        description:
          - Seconds for one connection or request to this sink. Defaults to 5.
        type: float
      app_name:
        description:
          - Syslog APP-NAME. Defaults to V(dihya-audit).
        type: str
      facility:
        description:
          - Syslog facility name, V(kern) to V(local7). Defaults to V(local0).
        type: str
  spool_dir:
    description:
      - Directory of the spool, created with mode 0700. Defaults to O(path) followed by C(.spool).
      - An absolute path (see O(path)); an empty value is refused.
      - Use the same spool directory in every task that writes to the same sinks, so each run also sends what earlier runs left.
      - Every spooled record is a new file that never replaces anything (a record the sink refused moves to C(rejected/) the same
        way); no directory of the spool, nor any directory above it, may be a symbolic link.
    type: path
  delivery_timeout:
    description:
      - Seconds the task may spend sending (new and spooled records, all sinks together). What is left stays in the spool.
      - The sinks are served in order, each with an even share of the time still left, so a silent sink cannot starve the others.
    type: float
    default: 10
  max_attempts:
    description:
      - How many times each record is tried per run, with a short pause in between. Records still not delivered stay in the spool.
    type: int
    default: 3
  metrics_path:
    description:
      - Write delivery metrics to this Prometheus textfile-collector file (it should end in C(.prom); its directory must exist).
      - Counters C(dihya_audit_delivery_events_total{sink,type,state}) with C(state) V(queued), V(sent) or V(failed), gauges
        C(dihya_audit_delivery_pending{sink,type}), C(dihya_audit_delivery_rejected{sink,type}) and
        C(dihya_audit_delivery_last_success_timestamp_seconds{sink,type}). Counters continue from the previous file.
      - Use one file per O(spool_dir). Nothing is written when O(sinks) is empty.
      - Only a regular file (the previous metrics file) is ever replaced; a symbolic link, a directory, a FIFO or a device
        at this path, or a symbolic link among its directories, is refused.
      - An absolute path (see O(path)).
    type: path
notes:
  - At most 1000 spooled records per sink are taken in one run, oldest first.
  - Only one run at a time delivers from a spool; a run that finds the spool busy for longer than O(delivery_timeout) leaves its record queued.
  - The values of O(user), O(email) and O(source_ip) are pseudonymised in the record but are task arguments; set C(no_log) on the
    task if the task arguments themselves must not show them in verbose output.
seealso:
  - module: dihya.ops.audit_verify
"""

EXAMPLES = r"""
- name: Record that the restart finished, in the log only
  dihya.ops.audit_event:
    path: /var/log/dihya/audit.jsonl
    key: "{{ vault_dihya_audit_key }}"
    action: restart_services.finished
    category: ops
    outcome: success
    user: "{{ dihya_ops_user }}"
    tenant: acme
    trace_id: "{{ dihya_trace_id }}"

- name: Record a refused access and forward it to the SIEM over TLS syslog and to Elasticsearch
  dihya.ops.audit_event:
    path: /var/log/dihya/audit.jsonl
    key: "{{ vault_dihya_audit_key }}"
    pseudonym_key: "{{ vault_dihya_pseudonym_key }}"
    action: rgpd.export
    category: security
    outcome: denied
    user: "{{ dihya_ops_user }}"
    source_ip: "{{ dihya_client_ip }}"
    details:
      reason: not in the rgpd_operators group
    sinks:
      - type: syslog
        name: siem
        url: tls://siem.example.org:6514
        ca_path: /etc/ssl/certs/siem-ca.pem
      - type: elasticsearch
        name: es
        url: https://es.example.org:9200
        index: dihya-audit
        token: "{{ vault_es_api_key }}"
    metrics_path: /var/lib/node_exporter/textfile/dihya_audit.prom
  register: dihya_audit

- name: Warn when records wait in the spool
  ansible.builtin.debug:
    msg: "{{ dihya_audit.delivery.total.pending }} audit records wait for delivery"
  when: dihya_audit.delivery.total.pending > 0

- name: Send to Splunk HEC and a webhook
  dihya.ops.audit_event:
    path: /var/log/dihya/audit.jsonl
    key: "{{ vault_dihya_audit_key }}"
    action: purge_temp_files.finished
    sinks:
      - type: splunk_hec
        name: splunk
        url: https://splunk.example.org:8088
        token: "{{ vault_splunk_hec_token }}"
      - type: webhook
        name: chatops
        url: https://hooks.example.org/audit
        token: "{{ vault_webhook_token }}"
    delivery_timeout: 5
"""

RETURN = r"""
record:
  description:
    - The record as written to the log, with C(dihya.audit.seq), C(dihya.audit.prev) and C(dihya.audit.hmac).
    - In check mode, the event that would be written, without C(dihya.audit).
  returned: always
  type: dict
  sample:
    "@timestamp": "2026-11-25T20:31:02.123456Z"
    event: {action: restart_services.finished, category: ops, outcome: success, kind: event}
    user: {id: "hmac:5f1c..."}
    organization: {id: acme}
    trace: {id: 4bf92f3577b34da6a3ce929d0e0e4736}
    host: {name: web1}
    dihya: {audit: {seq: 42, prev: "9c1e...", hmac: "77ab..."}}
trace_id:
  description: The trace id of the event (given, or made by the module).
  returned: always
  type: str
  sample: 4bf92f3577b34da6a3ce929d0e0e4736
path:
  description: The audit log file.
  returned: always
  type: str
  sample: /var/log/dihya/audit.jsonl
spool_dir:
  description: The spool directory.
  returned: always
  type: str
  sample: /var/log/dihya/audit.jsonl.spool
delivery:
  description: What happened to the network copies of the records.
  returned: always
  type: dict
  contains:
    total:
      description: Sums over all sinks.
      type: dict
      returned: always
      contains:
        queued:
          description: Records this run put in the spool.
          type: int
          returned: always
          sample: 2
        sent:
          description: Records the sinks acknowledged in this run.
          type: int
          returned: always
          sample: 3
        failed:
          description: Records tried in this run and not acknowledged.
          type: int
          returned: always
          sample: 0
        pending:
          description: Records waiting in the spool after this run, those of RV(delivery.orphaned) included.
          type: int
          returned: always
          sample: 0
        rejected:
          description: Records the sinks refused for good, those of RV(delivery.orphaned) included.
          type: int
          returned: always
          sample: 0
    sinks:
      description: One entry per sink of O(sinks), in the same order.
      type: list
      elements: dict
      returned: always
      contains:
        name:
          description: The sink's spool name.
          type: str
          returned: always
          sample: siem
        type:
          description: The sink type, or V(unknown) for an unknown type.
          type: str
          returned: always
          sample: syslog
        endpoint:
          description: Where the sink sends, without credentials or query string; empty for an invalid sink.
          type: str
          returned: always
          sample: tls://siem.example.org:6514
        queued:
          description: Records this run put in the spool for the sink (the new record). In check mode, what would be queued.
          type: int
          returned: always
          sample: 1
        sent:
          description: Records the sink acknowledged in this run, including records left by earlier runs.
          type: int
          returned: always
          sample: 3
        failed:
          description: Records tried in this run and not acknowledged (they stay pending, or were rejected).
          type: int
          returned: always
          sample: 0
        pending:
          description: Records in the spool for this sink after the run, to be sent by a later run.
          type: int
          returned: always
          sample: 0
        rejected:
          description: Records the sink refused for good, kept in C(<spool_dir>/<name>/rejected/).
          type: int
          returned: always
          sample: 0
        error:
          description: The last problem met with this sink (invalid specification, unreachable, HTTP status...), or null.
          type: str
          returned: always
          sample: "tcp://127.0.0.1:6514: connection refused"
    orphaned:
      description: Spool directories of sinks that are no longer in O(sinks) and still hold records. They are not sent.
      type: list
      elements: dict
      returned: always
      sample: [{name: old-siem, directory: /var/log/dihya/audit.jsonl.spool/old-siem, pending: 3, rejected: 0}]
metrics_written:
  description: Whether O(metrics_path) was written.
  returned: always
  type: bool
  sample: false
"""

from ansible.module_utils.basic import AnsibleModule

from ansible_collections.dihya.ops.plugins.module_utils._audit_delivery import DEFAULT_DELIVERY_TIMEOUT, DEFAULT_MAX_ATTEMPTS
from ansible_collections.dihya.ops.plugins.module_utils._audit_emit import emit
from ansible_collections.dihya.ops.plugins.module_utils._audit_event import CATEGORIES, FSYNC_MODES, OUTCOMES

SINK_OPTIONS = dict(
    type=dict(type='str', required=True),
    name=dict(type='str'),
    url=dict(type='str'),
    host=dict(type='str'),
    port=dict(type='raw'),
    protocol=dict(type='str'),
    index=dict(type='str'),
    token=dict(type='str', no_log=True),
    ca_path=dict(type='path'),
    validate_certs=dict(type='bool', default=True),
    timeout=dict(type='float'),
    app_name=dict(type='str'),
    facility=dict(type='str'),
)


def main() -> None:
    module = AnsibleModule(
        argument_spec=dict(
            path=dict(type='path', required=True),
            key=dict(type='str', required=True, no_log=True),
            pseudonym_key=dict(type='str', no_log=True),
            allow_clear_values=dict(type='bool', default=False),
            action=dict(type='str', required=True),
            category=dict(type='str', default='audit', choices=list(CATEGORIES)),
            outcome=dict(type='str', default='success', choices=list(OUTCOMES)),
            user=dict(type='str'),
            tenant=dict(type='str'),
            trace_id=dict(type='str'),
            correlation_id=dict(type='str'),
            route=dict(type='str'),
            host=dict(type='str'),
            email=dict(type='str'),
            source_ip=dict(type='str'),
            labels=dict(type='dict'),
            details=dict(type='dict'),
            fsync=dict(type='str', default='always', choices=list(FSYNC_MODES)),
            sinks=dict(type='list', elements='dict', default=[], options=SINK_OPTIONS),
            spool_dir=dict(type='path'),
            delivery_timeout=dict(type='float', default=DEFAULT_DELIVERY_TIMEOUT),
            max_attempts=dict(type='int', default=DEFAULT_MAX_ATTEMPTS),
            metrics_path=dict(type='path'),
        ),
        supports_check_mode=True,
    )
    module.exit_json(**emit(module))


if __name__ == '__main__':
    main()
