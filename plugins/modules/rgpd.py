#!/usr/bin/python
# Copyright (c) Dihya ops maintainers
# GNU General Public License v3.0+ (see LICENSES/GPL-3.0-or-later.txt or https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later

from __future__ import annotations


DOCUMENTATION = r"""
module: rgpd
short_description: Answer RGPD/GDPR data-subject requests against a backend database
version_added: 0.1.0
description:
  - Runs one RGPD operation for one data subject of one tenant, on a SQLite file or a PostgreSQL database,
    following a data map that says which rows belong to the subject and what erasure does to them.
  - V(inventory) counts the rows held about the subject, per table.
  - V(export) writes a zip archive with one JSON and one CSV file per table and a C(manifest.json) (pseudonymised
    subject id, data map version, row counts, SHA-256 of each file, time, trace id). Rows are streamed in batches bounded
    in bytes (a few rows at a time when rows are large), so memory grows neither with their number nor with their size.
    Columns the data map marks C(secret) (password hashes, tokens, keys) are never exported. The archive is written under
    a temporary name in the destination directory, fsynced and renamed, with mode C(0600); it can be encrypted with
    AES-256-GCM.
  - V(anonymise) replaces the subject's personal columns by irreversible, deterministic values (HMAC pseudonyms, masks,
    redaction, fakes or NULL), keeping ids.
  - V(erase) deletes or anonymises every row of the subject in one transaction, children first, and records the erasure,
    with pseudonymised values only (the id's pseudonym and a keyed fingerprint of the subject row), in O(ledger_file), a file
    outside the database and its backups; with O(ledger_table) also in the table C(dihya_rgpd_erasure_ledger) of the same database.
    Rows shared with other people (a message, a follow) lose only the subject's side.
  - V(consent) grants or withdraws a consent for a purpose (a new row in the consent history) or reports the status.
  - V(replay) erases again, after a backup restore, every subject recorded in O(ledger_file) whose row has both the recorded
    pseudonym and the recorded fingerprint. A row with the id but another fingerprint (a person who got the erased id later)
    is reported as C(mismatch) and left alone; entries without a fingerprint (written before fingerprints existed) are
    reported as C(unverified) and left alone unless O(replay_unverified). In check mode it lists what it would erase.
  - Data map problems that do not stop the operation (columns that look like secrets but are exported, no fingerprint
    column) are returned as warnings and in RV(data_map_warnings).
  - Every query is scoped to O(tenant) (a single-tenant data map, with C(tenancy) set to V(single), covers its whole
    database). Table and column names of the data map are validated and quoted, values are always bound parameters, and
    the data map is checked against the database schema before anything runs.
  - V(inventory) only reads, and is the way to check a data map against the live database before any export or erasure.
  - The data map format is described in the collection's C(docs/rgpd.md).
author:
  - Dihya ops maintainers (@dihya-ops)
requirements:
  - psycopg 3 (for PostgreSQL databases)
  - cryptography (for encrypted exports)
extends_documentation_fragment:
  - dihya.ops._attributes
attributes:
  check_mode:
    support: full
    details:
      - In check mode every operation runs its queries in a transaction that is rolled back and reports the per-table counts of
        what it would read, delete or anonymise; no archive, ledger entry, consent row or audit event is written.
  diff_mode:
    support: none
  idempotent:
    support: partial
    details:
      - V(inventory) never changes anything. V(anonymise), V(erase), V(consent) and V(replay) report no change when run again.
      - V(export) writes a new archive (new time and trace id) on every run and always reports a change.
options:
  operation:
    description:
      - The operation to run.
    type: str
    required: true
    choices: [inventory, export, anonymise, erase, consent, replay]
  db_url:
    description:
      - The database, in the collection's one database URL form (the backend model's C(dihya_backend_db_url)).
      - A SQLite file is C(sqlite:///ABSOLUTE/PATH) or a plain absolute path; a PostgreSQL database is
        C(postgresql://user:password@host:port/dbname) (or C(postgres://)) or libpq C(key=value) pairs.
      - Anything else is refused before anything is opened, with a message that never shows the URL; so is a relative
        path, a path with a C(..) component and a URL holding a NUL character.
      - Its password is never shown in results or error messages.
      - Exactly one of O(db_url), O(database) and O(dsn) is required.
    type: str
  database:
    description:
      - Older spelling of O(db_url) for a SQLite file, its absolute path (or C(sqlite:///ABSOLUTE/PATH)), read by the same rules.
      - Mutually exclusive with O(db_url) and O(dsn).
    type: path
  dsn:
    description:
      - Older spelling of O(db_url) for a PostgreSQL database (C(postgresql://user:password@host:port/dbname) or C(key=value) pairs),
        read by the same rules.
      - Mutually exclusive with O(db_url) and O(database).
      - It is never shown in results or error messages.
    type: str
  pg_schema:
    description:
      - PostgreSQL schema holding the tables.
    type: str
    default: public
  sqlite_foreign_keys:
    description:
      - Whether to turn on C(PRAGMA foreign_keys) for the SQLite session. The engine's erasure order does not depend on it.
    type: bool
    default: true
  data_map:
    description:
      - The data map itself (see C(docs/rgpd.md)). Mutually exclusive with O(data_map_file).
    type: dict
  data_map_file:
    description:
      - Path on the managed host of the data map, in YAML or JSON. Mutually exclusive with O(data_map).
    type: path
  tenant:
    description:
      - The tenant of the subject, as stored in the subject table's tenant column, or the key looked up through the
        data map's C(tenant_lookup) (for example a tenant slug).
      - With a multi-tenant data map, required by every operation but V(replay), where it limits the replay to one tenant.
      - With a single-tenant data map (C(tenancy) set to V(single)), optional; it defaults to the data map's fixed C(tenant)
        name (or V(default) when the map gives none), and a tenant other than the map's fixed name is refused. A name is
        letters, digits, C(.), C(_) and C(-), at most 63 characters, never C(..).
    type: str
  subject_id:
    description:
      - The subject's id, as stored in the subject table's id column. Required by every operation but V(replay).
      - It never appears in results, ledgers or audit events; they hold its pseudonym instead.
    type: str
  pseudonym_key:
    description:
      - Key of the HMAC pseudonyms (at least 16 bytes), from Ansible Vault. The same key must be used for an erasure and its
        replay, since replay finds subjects again by their pseudonym.
    type: str
    required: true
  dest:
    description:
      - Absolute path of the archive written by V(export). Its directory must exist (in check mode it may not exist yet),
        and no directory on the way may be a symbolic link.
      - Nothing may exist at O(dest) unless O(force) is set; a symbolic link, directory, FIFO, device or socket there is
        always refused.
    type: path
  force:
    description:
      - Let V(export) replace an existing regular file at O(dest) (atomically, by renaming the new archive over it).
      - Anything else at O(dest) (a symbolic link, a directory, a FIFO, a device, a socket) is refused even with O(force).
    type: bool
    default: false
  encryption_key:
    description:
      - Encrypts the V(export) archive with AES-256-GCM. A 32-byte key as URL-safe base64 (the format of
        C(cryptography.fernet.Fernet.generate_key()), 44 characters) or 64 hexadecimal characters.
    type: str
  ledger_file:
    description:
      - JSON-lines erasure ledger outside the database, written by V(erase) and read by V(replay) (required by both, unless
        V(erase) has O(ledger_table)). Keep it out of the database's folder and backup set (a backup restore must not bring
        an older ledger back); a warning says so when it sits next to a SQLite database.
    type: path
  ledger_table:
    description:
      - Also record erasures in the table C(dihya_rgpd_erasure_ledger) of the application's database (created when missing).
      - The table is restored with the database's backups and an autogenerated migration (Alembic) proposes to drop it; see
        the collection's C(docs/rgpd.md) for how to exclude it from migrations.
    type: bool
    default: false
  replay_unverified:
    description:
      - Let V(replay) erase the subjects of ledger entries without a fingerprint, found by their id's pseudonym only. Such an
        entry cannot tell the erased person from someone who got the same id later; check the list that check mode gives first.
    type: bool
    default: false
  consent_action:
    description:
      - What V(consent) does.
    type: str
    choices: [grant, withdraw, status]
    default: status
  purpose:
    description:
      - The consent purpose, required to V(grant) or V(withdraw).
    type: str
  source:
    description:
      - Where the consent decision comes from (for example C(preference_center)).
    type: str
    default: dihya.ops.rgpd
  consent_time:
    description:
      - Time of the consent decision, C(YYYY-MM-DDTHH:MM:SSZ). Defaults to now.
    type: str
  trace_id:
    description:
      - Trace id of the run (32 lowercase hexadecimal characters), written in manifests, ledger entries and audit events.
        A new one is generated when missing.
    type: str
  audit_log:
    description:
      - Path of a dihya audit log; when given with O(audit_key), one event of category C(rgpd) is appended for the call,
        whether it succeeds or fails (not in check mode).
    type: path
  audit_key:
    description:
      - HMAC chain key of the audit log.
    type: str
  audit_user:
    description:
      - Who asked for the operation, recorded (pseudonymised) in the audit event.
    type: str
  audit_host:
    description:
      - The host name recorded in the audit event (C(host.name)); by default this machine's host name. The role gives the
        inventory name of the host, as every other event of the run has it.
    type: str
  timeout:
    description:
      - Seconds to wait for a database connection or a SQLite lock.
    type: float
    default: 10
notes:
  - The erasure of a subject whose table has O(data_map) C(erasure=anonymise) replaces the subject row by a tombstone with a new id,
    so that kept rows (a message to someone else, an order kept for accounting) point at an anonymous person and no row keeps
    the subject's id. Columns under a unique constraint get values of the tombstone's own, so a subject anonymised before
    (an e-mail already C(hmac:...)) and earlier tombstones never collide with it.
  - A C(secret) column is set to NULL by V(anonymise) and V(erase) (to C([redacted]) when it is NOT NULL) and never exported.
seealso:
  - module: dihya.ops.audit_event
"""

EXAMPLES = r"""
- name: Count what is held about a user
  dihya.ops.rgpd:
    operation: inventory
    db_url: sqlite:///srv/dihya/app.db
    data_map_file: /etc/dihya/rgpd-datamap.yml
    tenant: acme
    subject_id: "42"
    pseudonym_key: "{{ vault_rgpd_pseudonym_key }}"

- name: Export a user's data, encrypted
  dihya.ops.rgpd:
    operation: export
    db_url: "postgresql://dihya:{{ vault_db_password }}@db.internal/dihya"
    data_map: "{{ lookup('ansible.builtin.file', 'rgpd-datamap.yml') | from_yaml }}"
    tenant: acme
    subject_id: "42"
    pseudonym_key: "{{ vault_rgpd_pseudonym_key }}"
    dest: /srv/exports/acme-42.zip.enc
    encryption_key: "{{ vault_rgpd_export_key }}"
  register: dihya_export

- name: Erase a user, recording it in the ledger and the audit log
  dihya.ops.rgpd:
    operation: erase
    db_url: /srv/dihya/app.db
    data_map_file: /etc/dihya/rgpd-datamap.yml
    tenant: acme
    subject_id: "42"
    pseudonym_key: "{{ vault_rgpd_pseudonym_key }}"
    ledger_file: /var/lib/dihya-ops/rgpd/erasure-ledger.jsonl
    audit_log: /var/log/dihya/audit.log
    audit_key: "{{ vault_audit_key }}"
    audit_user: "{{ dihya_requested_by }}"

- name: Erase again every recorded subject after restoring a backup
  dihya.ops.rgpd:
    operation: replay
    db_url: /srv/dihya/app.db
    data_map_file: /etc/dihya/rgpd-datamap.yml
    pseudonym_key: "{{ vault_rgpd_pseudonym_key }}"
    ledger_file: /var/lib/dihya-ops/rgpd/erasure-ledger.jsonl

- name: Record that a user withdrew the newsletter consent
  dihya.ops.rgpd:
    operation: consent
    consent_action: withdraw
    purpose: newsletter
    source: preference_center
    db_url: /srv/dihya/app.db
    data_map_file: /etc/dihya/rgpd-datamap.yml
    tenant: acme
    subject_id: "42"
    pseudonym_key: "{{ vault_rgpd_pseudonym_key }}"
"""

RETURN = r"""
operation:
  description: The operation that ran.
  returned: always
  type: str
  sample: erase
trace_id:
  description: The trace id of the run.
  returned: always
  type: str
  sample: 4bf92f3577b34da6a3ce929d0e0e4736
subject:
  description: Pseudonym of the subject id (C(hmac:) and the HMAC-SHA256 hex digest).
  returned: when the operation is about one subject
  type: str
  sample: hmac:7b1ed00969f79b63df2b372f40d7b1e9edbe129f1d1f3b64276b4fe1149d6c9c
tenant:
  description: The tenant as given; for a single-tenant data map, the database's tenant name.
  returned: when the operation is about one subject
  type: str
  sample: acme
data_map_version:
  description: The C(version) of the data map.
  returned: always
  type: str
  sample: demo-3.1
subject_found:
  description: Whether the subject exists in the tenant.
  returned: when the operation is about one subject
  type: bool
  sample: true
tables:
  description:
    - Per mapped table, C(rows) held about the subject (before the operation); C(sides), for tables with several subject columns,
      the rows per column; C(deleted) and C(anonymised), the rows erase or anonymise changed (or would change, in check mode);
      for the subject table on erasure, C(tombstone) says whether kept rows were repointed to a new anonymous subject row.
  returned: for inventory, export, anonymise and erase
  type: dict
  sample: {"messages": {"rows": 6, "sides": {"sender_id": 5, "recipient_id": 1}}, "users": {"rows": 1}}
total_rows:
  description: Sum of the rows of every table.
  returned: for inventory
  type: int
  sample: 30
archive:
  description: The export archive.
  returned: for export
  type: dict
  contains:
    path:
      description: Where the archive is.
      type: str
      returned: always
      sample: /srv/exports/acme-42.zip
    sha256:
      description: SHA-256 of the archive file (not in check mode).
      type: str
      returned: success
      sample: 71755122441d58b228796c391cad2a046bbab10438562ef1f4f302db4964d6c3
    size:
      description: Size of the archive in bytes (not in check mode).
      type: int
      returned: success
      sample: 10240
    encrypted:
      description: Whether the archive is encrypted.
      type: bool
      returned: always
      sample: false
    files:
      description: SHA-256, size and row count of each file of the archive, as in its manifest (not in check mode).
      type: dict
      returned: success
ledger_entry_id:
  description: Id of the erasure ledger entry.
  returned: when erase erased a subject
  type: str
  sample: 4c941be6d0884a67942bc746413a60cd
consents:
  description: The latest decision per purpose (C(granted), C(source), C(at)).
  returned: for consent
  type: dict
  sample: {"newsletter": {"granted": false, "source": "preference_center", "at": "2026-01-31T10:00:00Z"}}
consent:
  description: The decision for O(purpose) after the operation.
  returned: for consent, when a purpose is given
  type: dict
  sample: {"purpose": "newsletter", "granted": false, "source": "preference_center", "at": "2026-01-31T10:00:00Z"}
replayed:
  description:
    - One item per ledger entry looked at by replay, with C(entry_id), C(tenant), C(subject), C(erased_at), C(found) and C(status).
    - >-
      C(status) is C(erased) (C(would_erase) in check mode, with C(tables), the rows per table), C(absent) (nobody has the
      pseudonym, already erased), C(mismatch) (the row with the id is someone else, nothing erased) or C(unverified) (the entry
      has no fingerprint, nothing erased); C(reason) explains the last two.
  returned: for replay
  type: list
  elements: dict
erased:
  description: How many subjects replay erased again (would erase, in check mode).
  returned: for replay
  type: int
  sample: 1
mismatched:
  description: How many ledger entries replay refused because the row with the id is not the erased person.
  returned: for replay
  type: int
  sample: 0
unverified:
  description: How many ledger entries replay refused because they have no fingerprint.
  returned: for replay
  type: int
  sample: 0
data_map_warnings:
  description: Data map problems that did not stop the operation, also given as warnings.
  returned: when the data map was loaded
  type: list
  elements: str
  sample: ["tables.users: column 'password_hash' looks like a secret (password, hash, token, key...) but is not mapped, ..."]
"""

from ansible.module_utils.basic import AnsibleModule

from ansible_collections.dihya.ops.plugins.module_utils._rgpd import CONSENT_ACTIONS, OPERATIONS
from ansible_collections.dihya.ops.plugins.module_utils._rgpd_request import handle

DATABASE_OPTIONS = ('db_url', 'database', 'dsn')


def main() -> None:
    module = AnsibleModule(
        argument_spec=dict(
            operation=dict(type='str', required=True, choices=list(OPERATIONS)),
            db_url=dict(type='str', no_log=True),
            database=dict(type='path'),
            dsn=dict(type='str', no_log=True),
            pg_schema=dict(type='str', default='public'),
            sqlite_foreign_keys=dict(type='bool', default=True),
            data_map=dict(type='dict'),
            data_map_file=dict(type='path'),
            tenant=dict(type='str'),
            subject_id=dict(type='str'),
            pseudonym_key=dict(type='str', required=True, no_log=True),
            dest=dict(type='path'),
            force=dict(type='bool', default=False),
            encryption_key=dict(type='str', no_log=True),
            ledger_file=dict(type='path'),
            ledger_table=dict(type='bool', default=False),
            replay_unverified=dict(type='bool', default=False),
            consent_action=dict(type='str', default='status', choices=list(CONSENT_ACTIONS)),
            purpose=dict(type='str'),
            source=dict(type='str', default='dihya.ops.rgpd'),
            consent_time=dict(type='str'),
            trace_id=dict(type='str'),
            audit_log=dict(type='path'),
            audit_key=dict(type='str', no_log=True),
            audit_user=dict(type='str'),
            audit_host=dict(type='str'),
            timeout=dict(type='float', default=10.0),
        ),
        mutually_exclusive=[DATABASE_OPTIONS, ('data_map', 'data_map_file')],
        required_one_of=[DATABASE_OPTIONS, ('data_map', 'data_map_file')],
        required_if=[
            ('operation', 'inventory', ('subject_id',)),
            ('operation', 'export', ('subject_id', 'dest')),
            ('operation', 'anonymise', ('subject_id',)),
            ('operation', 'erase', ('subject_id',)),
            ('operation', 'consent', ('subject_id',)),
            ('operation', 'replay', ('ledger_file',)),
        ],
        required_together=[('audit_log', 'audit_key')],
        supports_check_mode=True,
    )
    outcome = handle(module.params, check_mode=module.check_mode)
    module.no_log_values.difference_update(outcome.shown)
    for warning in outcome.warnings:
        module.warn(warning)
    if outcome.message is not None:
        extra = {'exception': outcome.exception} if outcome.exception else {}
        module.fail_json(msg=outcome.message, **extra, **outcome.result)
    module.exit_json(**outcome.result)


if __name__ == '__main__':
    main()
