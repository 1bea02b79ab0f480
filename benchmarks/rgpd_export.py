"""Benchmark: a data-subject export by the RGPD engine against the database's own client, in one run.

Builds a database of the demo schema (users, posts, messages, follows, consents, orders, order lines...)
holding ``--rows`` rows in all (default 2,000,000), of which one subject owns ``--subject-rows``
(default 100,000) and a second subject of the same tenant a fifth of that, spread over every table.
Then, for each database:

* the engine exports each subject (``operation: export``, as the module runs it, in a child Python
  process without Ansible's start-up) into a zip archive; the archive's manifest is checked against
  the rows the builder gave the subject, so a wrong export is never reported as a timing;
* the database's own client selects the same rows into files: ``sqlite3 -json`` with the engine's
  SELECTs, or ``psql`` with one ``\\copy (SELECT ...) TO`` per table;
* the engine's peak memory (its own VmHWM) is read for both subjects: it must not grow with the rows.

The SQLite file is cached between runs (keyed by the parameters and the schema) under ``--cache-dir``;
PostgreSQL is a throw-away cluster on 127.0.0.1 in a temporary folder, the one the unit tests start.

    .venv/bin/python benchmarks/rgpd_export.py [--rows 2000000] [--subject-rows 100000] [--db sqlite|postgresql|both] [--quick]

Not a test: it exits 0 whatever the figures are, and 1 only when a run fails or exports wrong rows.
"""

from __future__ import annotations

import argparse
import dataclasses
import functools
import hashlib
import importlib.util
import json
import os
import pathlib
import resource
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
import typing as t
import zipfile

ROOT = pathlib.Path(__file__).resolve().parents[1]
COLLECTIONS = ROOT / '.cache' / 'collections'
BUILDER_VERSION = 1
RATIO_GOAL = 2.0
MEMORY_GOAL_MIB = 150
TENANT = 'acme'
OTHER_TENANT = 'globex'

# Share of a subject's rows per table (the rest of its rows are posts), and of everybody else's.
SUBJECT_SHARE = {
    'messages_sent': 0.15, 'messages_received': 0.15, 'follows_out': 0.05, 'follows_in': 0.05,
    'consents': 0.10, 'orders': 0.08, 'order_items': 0.12,
}
OTHER_SHARE = {'posts': 0.28, 'messages': 0.30, 'follows': 0.12, 'consents': 0.12, 'orders': 0.07, 'order_items': 0.11}
CONSENT_PURPOSES = ('marketing_email', 'newsletter', 'analytics', 'personalisation', 'third_party_sharing')


DATA_MAP = ROOT / 'docs' / 'examples' / 'rgpd-datamap-demo.yml'
PSEUDONYM_KEY = 'benchmark-pseudonym-key-0123456789'

# The export as the module runs it: load the map, open the database, check it, stream the archive.
# It reports its own time and peak RSS (VmHWM starts afresh at exec, so it is the export's alone).
ENGINE = """
import json, sys, time
started = time.monotonic()
from ansible_collections.dihya.ops.plugins.module_utils._rgpd_map import load_data_map_file
from ansible_collections.dihya.ops.plugins.module_utils._rgpd_db import open_database
from ansible_collections.dihya.ops.plugins.module_utils._rgpd import Engine
job = json.loads(sys.argv[1])
with open_database(path=job.get('path'), dsn=job.get('dsn')) as db:
    engine = Engine(db, load_data_map_file(job['data_map']), pseudonym_key=job['key'].encode())
    result = engine.export(job['tenant'], job['subject'], job['dest'])
seconds = time.monotonic() - started
hwm = [line.split()[1] for line in open('/proc/self/status') if line.startswith('VmHWM:')][0]
print(json.dumps({'seconds': seconds, 'peak_kib': int(hwm), 'tables': result['tables'], 'sha256': result['archive']['sha256']}))
"""


class BenchmarkError(Exception):
    """A run failed or exported the wrong rows: its time must not be reported."""


# ---------------------------------------------------------------------------
# The data set
# ---------------------------------------------------------------------------

@dataclasses.dataclass(frozen=True)
class Subject:
    user_id: int
    rows: dict[str, int]

    @property
    def total(self) -> int:
        return sum(self.rows.values())


@dataclasses.dataclass(frozen=True)
class Layout:
    """How many rows of what the builder writes; every count is known before a row is written."""

    users: int
    subjects: tuple[Subject, ...]
    others: dict[str, int]

    @property
    def half(self) -> int:
        return self.users // 2

    @property
    def pool(self) -> int:
        """Users of each tenant that are not subjects (ids 3..half in acme, half+1.. in globex)."""
        return self.half - 2

    @property
    def total(self) -> int:
        return 2 + 24 + self.users + sum(subject.total - 1 for subject in self.subjects) + sum(self.others.values())


def subject_rows(user_id: int, total: int, pool: int) -> Subject:
    rows = {name: int(total * share) for name, share in SUBJECT_SHARE.items()}
    rows['follows_out'] = min(rows['follows_out'], pool)
    rows['follows_in'] = min(rows['follows_in'], pool)
    rows['orders'] = max(rows['orders'], 1)
    rows['users'] = 1
    rows['posts'] = total - sum(rows.values())
    if rows['posts'] < 0:
        raise SystemExit(f'--subject-rows {total} is too small')
    return Subject(user_id, rows)


def plan(rows: int, subject: int) -> Layout:
    users = max(1000, rows // 40) // 2 * 2
    pool = users // 2 - 2
    subjects = (subject_rows(1, subject, pool), subject_rows(2, max(subject // 5, 100), pool))
    rest = rows - 2 - 24 - users - sum(item.total - 1 for item in subjects)
    if rest < 1000:
        raise SystemExit(f'--rows {rows} leaves too few rows for the other users ({rest}); raise it or lower --subject-rows')
    others = {name: int(rest * share) for name, share in OTHER_SHARE.items()}
    others['posts'] += rest - sum(others.values())
    return Layout(users, subjects, others)


class Dialect:
    """SQL of one database for the generated rows: a series of integers x and a time stamp from it."""

    name = ''

    def series(self, count: int, insert: str, select: str) -> str:
        raise NotImplementedError

    def stamp(self, expr: str) -> str:
        raise NotImplementedError


class SQLiteDialect(Dialect):
    name = 'sqlite'

    def series(self, count: int, insert: str, select: str) -> str:
        return f'{insert} WITH RECURSIVE s(x) AS (SELECT 0 UNION ALL SELECT x + 1 FROM s WHERE x < {count - 1}) {select} FROM s'

    def stamp(self, expr: str) -> str:
        return f"strftime('%Y-%m-%dT%H:%M:%SZ', {expr}, 'unixepoch')"


class PostgresDialect(Dialect):
    name = 'postgresql'

    def series(self, count: int, insert: str, select: str) -> str:
        return f'{insert} {select} FROM generate_series(0, {count - 1}) AS s(x)'

    def stamp(self, expr: str) -> str:
        return f"to_char(to_timestamp({expr}) AT TIME ZONE 'UTC', 'YYYY-MM-DD\"T\"HH24:MI:SS\"Z\"')"


def statements(layout: Layout, dialect: Dialect) -> t.Iterator[tuple[str, int]]:
    """(SQL, rows) pairs that fill an empty database of the demo schema."""
    half, pool = layout.half, layout.pool
    stamp = dialect.stamp

    def series(count: int, table: str, columns: str, select: str) -> t.Iterator[tuple[str, int]]:
        if count > 0:
            yield dialect.series(count, f'INSERT INTO {table} ({columns})', f'SELECT {select}'), count

    # Another user of tenant acme (x % 2 = 0) or globex: ids 3..half+? and half+1..half+pool.
    def member(index: str, tenant_bit: str) -> str:
        return f'(CASE WHEN {tenant_bit} = 0 THEN 3 ELSE {half + 1} END + ({index}) % {pool})'

    yield (f"INSERT INTO tenants (id, slug, name, created_at) VALUES (1, '{TENANT}', 'Acme Corporation', '2022-01-05T09:00:00Z'), "
           f"(2, '{OTHER_TENANT}', 'Globex Corporation', '2022-02-07T10:00:00Z')"), 2
    yield from series(24, 'products', 'id, tenant_id, sku, name, unit_price_cents',
                      "x + 1, 1 + x / 12, 'SKU-' || (x + 1), 'Product ' || (x + 1), 1000 + 100 * x")
    yield from series(layout.users, 'users', 'id, tenant_id, name, email, phone, address, last_login_ip, last_login_at, created_at',
                      f"x + 1, CASE WHEN x < {half} THEN 1 ELSE 2 END, 'User ' || (x + 1), 'user' || (x + 1) || '@example.com', "
                      f"'+33 6 39 98 ' || (10 + x % 90) || ' ' || (10 + x % 89), (1 + x % 179) || ' rue des Lilas, 75001 Paris, FR', "
                      f"'192.0.2.' || (1 + x % 254), {stamp('1700000000 + x * 61')}, {stamp('1640000000 + x * 59')}")

    purpose = f"(CASE x % 5 {' '.join(f'WHEN {index} THEN {chr(39)}{name}{chr(39)}' for index, name in enumerate(CONSENT_PURPOSES))} END)"
    order_base = 0
    for subject in layout.subjects:
        uid, rows = subject.user_id, subject.rows
        yield from series(rows['posts'], 'posts', 'author_id, title, body, created_at',
                          f"{uid}, 'Weekly digest ' || x, 'We rolled this out to a first group of customers last week. "
                          f"Feedback so far has been positive, with a few rough edges. #' || x, {stamp('1650000000 + x * 7')}")
        yield from series(rows['messages_sent'], 'messages', 'sender_id, recipient_id, body, sent_at, read_at',
                          f"{uid}, 3 + x % {pool}, 'Can you send me the latest invoice? #' || x, {stamp('1650000000 + x * 11')}, NULL")
        yield from series(rows['messages_received'], 'messages', 'sender_id, recipient_id, body, sent_at, read_at',
                          f"3 + x % {pool}, {uid}, 'Thanks for the quick answer! #' || x, {stamp('1650000000 + x * 13')}, "
                          f"{stamp('1650000100 + x * 13')}")
        yield from series(rows['follows_out'], 'follows', 'follower_id, followee_id, created_at', f"{uid}, 3 + x, {stamp('1650000000 + x * 17')}")
        yield from series(rows['follows_in'], 'follows', 'follower_id, followee_id, created_at', f"3 + x, {uid}, {stamp('1650000000 + x * 19')}")
        yield from series(rows['consents'], 'consents', 'user_id, purpose, granted, source, at',
                          f"{uid}, {purpose}, "
                          f"x % 2, 'preference_center', {stamp('1650000000 + x * 23')}")
        yield from series(rows['orders'], 'orders', 'id, tenant_id, user_id, status, currency, shipping_address, created_at',
                          f"{order_base + 1} + x, 1, {uid}, 'delivered', 'EUR', '12 rue des Lilas, 75001 Paris, FR', {stamp('1650000000 + x * 29')}")
        yield from series(rows['order_items'], 'order_items', 'order_id, product_id, quantity, unit_price_cents',
                          f"{order_base + 1} + x % {rows['orders']}, 1 + x % 12, 1 + x % 3, 1000 + 100 * (x % 12)")
        order_base += rows['orders']

    others = layout.others
    pair_a, pair_b = f'(x / 2) % {pool}', f'((x / 2) % {pool} + 1 + ((x / 2) / {pool}) % {pool - 1})'
    yield from series(others['posts'], 'posts', 'author_id, title, body, created_at',
                      f"{member('x / 2', 'x % 2')}, 'Release notes ' || x, 'Exports are available in CSV and JSON. "
                      f"Remember to review your notification settings. #' || x, {stamp('1650000000 + x * 3')}")
    yield from series(others['messages'], 'messages', 'sender_id, recipient_id, body, sent_at, read_at',
                      f"{member(pair_a, 'x % 2')}, {member(pair_b, 'x % 2')}, 'Are we still on for tomorrow at 10? #' || x, "
                      f"{stamp('1650000000 + x * 5')}, NULL")
    yield from series(others['follows'], 'follows', 'follower_id, followee_id, created_at',
                      f"{member(pair_a, 'x % 2')}, {member(pair_b, 'x % 2')}, {stamp('1650000000 + x * 7')}")
    yield from series(others['consents'], 'consents', 'user_id, purpose, granted, source, at',
                      f"{member('x / 2', 'x % 2')}, {purpose}, "
                      f"x % 2, 'signup_form', {stamp('1650000000 + x * 9')}")
    yield from series(others['orders'], 'orders', 'id, tenant_id, user_id, status, currency, shipping_address, created_at',
                      f"{order_base + 1} + x, 1 + x % 2, {member('x / 2', 'x % 2')}, 'paid', 'EUR', '1 Station Road, E1 6AN London, GB', "
                      f"{stamp('1650000000 + x * 31')}")
    yield from series(others['order_items'], 'order_items', 'order_id, product_id, quantity, unit_price_cents',
                      f"{order_base + 1} + x % {max(others['orders'], 1)}, 1 + x % 24, 1 + x % 3, 1000 + 100 * (x % 24)")


def demo_schema() -> str:
    """The demo backend's SQLite schema (tests/demo_backend/app/dihya_demo/db.py)."""
    sys.path.insert(0, str(ROOT / 'tests' / 'demo_backend' / 'app'))
    from dihya_demo.db import SCHEMA  # pylint: disable=import-outside-toplevel,import-error
    return SCHEMA


def build_sqlite(path: pathlib.Path, layout: Layout, schema: str) -> float:
    """Write the database next to ``path`` and rename it into place; return the seconds it took."""
    import sqlite3  # pylint: disable=import-outside-toplevel

    started = time.monotonic()
    partial = path.with_name(f'.{path.name}.{os.getpid()}.partial')
    partial.unlink(missing_ok=True)
    conn = sqlite3.connect(partial, isolation_level=None)
    try:
        conn.execute('PRAGMA journal_mode = OFF')
        conn.execute('PRAGMA synchronous = OFF')
        conn.execute('PRAGMA foreign_keys = ON')
        conn.executescript(schema)
        conn.execute('BEGIN')
        for sql, dummy in statements(layout, SQLiteDialect()):
            conn.execute(sql)
        conn.execute('COMMIT')
        problems = conn.execute('PRAGMA foreign_key_check').fetchmany(5)
        if problems:
            raise BenchmarkError(f'the generated rows break foreign keys: {problems}')
        conn.execute('ANALYZE')
    except BaseException:
        conn.close()
        partial.unlink(missing_ok=True)
        raise
    conn.close()
    os.replace(partial, path)
    return time.monotonic() - started


def cached_sqlite(cache_dir: pathlib.Path, layout: Layout, schema: str) -> tuple[pathlib.Path, str]:
    """The cached database for this layout and schema, built when missing."""
    key = hashlib.sha256(json.dumps([BUILDER_VERSION, dataclasses.asdict(layout), schema], sort_keys=True).encode()).hexdigest()[:16]
    cache_dir.mkdir(parents=True, exist_ok=True)
    prefix = f'rgpd-{layout.total}-{layout.subjects[0].total}-'
    path = cache_dir / f'{prefix}{key}.db'
    if path.exists():
        return path, 'cached'
    for stale in cache_dir.glob(f'{prefix}*.db'):  # the same sizes from an older builder or schema
        stale.unlink()
    seconds = build_sqlite(path, layout, schema)
    return path, f'built in {seconds:.1f} s'


# ---------------------------------------------------------------------------
# PostgreSQL: the unit tests' throw-away cluster on loopback
# ---------------------------------------------------------------------------

def postgres_class() -> t.Any:
    """The ``Postgres`` helper of tests/unit/conftest.py (initdb, postgres on 127.0.0.1, stop by PID)."""
    return load_file(ROOT / 'tests' / 'unit' / 'conftest.py', 'dihya_unit_conftest').Postgres


def build_postgres(dsn: str, layout: Layout, schema: str) -> float:
    import psycopg  # pylint: disable=import-outside-toplevel

    started = time.monotonic()
    with psycopg.connect(dsn, autocommit=True) as conn:
        conn.execute(schema)
        with conn.transaction():
            # The same rows pass every foreign key and trigger on SQLite (build_sqlite checks them); skipping
            # the per-row trigger calls here divides the load time by several.
            conn.execute('SET LOCAL session_replication_role = replica')
            for sql, dummy in statements(layout, PostgresDialect()):
                conn.execute(sql)
        conn.execute('ANALYZE')
    return time.monotonic() - started


# ---------------------------------------------------------------------------
# The database's own client
# ---------------------------------------------------------------------------

def children_cpu() -> float:
    usage = resource.getrusage(resource.RUSAGE_CHILDREN)
    return usage.ru_utime + usage.ru_stime


def timed(argv: list[str], stdin: str | None = None, stdout: t.Any = subprocess.PIPE, env: dict[str, str] | None = None) -> tuple[float, float, str]:
    """Run argv; return its wall seconds, its CPU seconds (user + system) and its standard output (unless redirected)."""
    cpu = children_cpu()
    started = time.monotonic()
    completed = subprocess.run(argv, input=stdin.encode() if stdin is not None else None, stdout=stdout, stderr=subprocess.PIPE,
                               env=env, timeout=900, check=False)
    elapsed = time.monotonic() - started
    if completed.returncode != 0:
        raise BenchmarkError(f'{argv[0]} failed with exit code {completed.returncode}: {completed.stderr.decode()[-1500:]}')
    return elapsed, children_cpu() - cpu, completed.stdout.decode() if completed.stdout else ''


def inline(sql: str, params: t.Sequence[t.Any]) -> str:
    """The SELECT with its parameters written in (integers and quoted strings only), for a command-line client."""
    parts = sql.replace('%s', '?').split('?')
    if len(parts) != len(params) + 1:
        raise BenchmarkError(f'cannot inline {len(params)} parameters into {sql!r}')
    literals = [str(value) if isinstance(value, int) else "'" + str(value).replace("'", "''") + "'" for value in params]
    return parts[0] + ''.join(literal + part for literal, part in zip(literals, parts[1:], strict=True))


def sqlite_client(path: pathlib.Path, selects: dict[str, tuple[str, list[t.Any]]], out: pathlib.Path) -> tuple[float, float, int]:
    """``sqlite3 -json`` running the SELECTs into one file; wall and CPU seconds, bytes written."""
    script = ''.join(f'{inline(sql, params)};\n' for sql, params in selects.values())
    with open(out, 'wb') as handle:
        elapsed, cpu, dummy = timed(['sqlite3', '-json', '-readonly', str(path)], stdin=script, stdout=handle)
    return elapsed, cpu, out.stat().st_size


def psql_client(dsn: str, selects: dict[str, tuple[str, list[t.Any]]], out: pathlib.Path) -> tuple[float, float, int]:
    """``psql`` with one ``\\copy (SELECT ...) TO 'file' CSV HEADER`` per table; wall and CPU seconds (psql's, not the server's), bytes written."""
    out.mkdir(parents=True, exist_ok=True)
    script = ''.join(
        f"\\copy ({' '.join(inline(sql, params).split())}) TO '{out / table}.csv' WITH (FORMAT csv, HEADER)\n"
        for table, (sql, params) in selects.items()
    )
    elapsed, cpu, dummy = timed(['psql', '-X', '-q', '-v', 'ON_ERROR_STOP=1', '-d', dsn], stdin=script, stdout=subprocess.DEVNULL)
    return elapsed, cpu, sum(path.stat().st_size for path in out.iterdir())


def engine_modules() -> tuple[t.Any, t.Any, t.Any, t.Any]:
    """The engine's modules, imported from the collection as the module imports them."""
    if str(COLLECTIONS) not in sys.path:
        sys.path.insert(0, str(COLLECTIONS))
    # pylint: disable=import-outside-toplevel,import-error
    from ansible_collections.dihya.ops.plugins.module_utils import _rgpd, _rgpd_db, _rgpd_map, _rgpd_schema
    return _rgpd, _rgpd_db, _rgpd_map, _rgpd_schema


def client_selects(target: dict[str, str], user_id: int) -> dict[str, tuple[str, list[t.Any]]]:
    """The SELECT of every mapped table exactly as the engine's export runs it (same WHERE, same ORDER BY)."""
    rgpd, rgpd_db, rgpd_map, rgpd_schema = engine_modules()
    data_map = rgpd_map.load_data_map_file(str(DATA_MAP))
    with rgpd_db.open_database(path=target.get('path'), dsn=target.get('dsn'), read_only=True) as db:
        engine = rgpd.Engine(db, data_map, pseudonym_key=PSEUDONYM_KEY.encode())
        subject = engine.subject(TENANT, user_id)
        selects = {}
        for name, table in data_map.tables.items():
            columns = ', '.join(f't0.{rgpd_db.quote(column)}' for column in engine.info[name].columns)
            where, params = engine.query.match(table, subject)
            order = ', '.join(f't0.{rgpd_db.quote(column)}' for column in rgpd_schema.table_key(table, engine.info))
            selects[name] = (f'SELECT {columns} FROM {db.table(name)} t0 WHERE {where} ORDER BY {order}', params)
    return selects


def sqlite_schema() -> str:
    """The demo schema's SQLite DDL, from the unit-test fixtures when they hold it, else from the demo backend."""
    fixtures = ROOT / 'tests' / 'unit' / 'plugins' / 'rgpd_fixtures.py'
    if fixtures.is_file():
        module = load_file(fixtures, 'dihya_rgpd_fixtures')
        for name in ('SQLITE_SCHEMA', 'SQLITE_DDL', 'SCHEMA_SQLITE'):
            found = getattr(module, name, None)
            if isinstance(found, str):
                return found
    return demo_schema()


def postgres_schema() -> str:
    """The demo schema's PostgreSQL DDL, from the unit-test fixtures."""
    module = load_file(ROOT / 'tests' / 'unit' / 'plugins' / 'rgpd_fixtures.py', 'dihya_rgpd_fixtures')
    for name in ('POSTGRES_SCHEMA', 'POSTGRES_DDL', 'SCHEMA_POSTGRES', 'PG_SCHEMA', 'PG_DDL'):
        found = getattr(module, name, None)
        if isinstance(found, str):
            return found
    raise BenchmarkError('tests/unit/plugins/rgpd_fixtures.py holds no PostgreSQL schema')


def load_file(path: pathlib.Path, name: str) -> t.Any:
    # The test fixtures import the collection's test helpers by their collection name.
    if str(COLLECTIONS) not in sys.path:
        sys.path.insert(0, str(COLLECTIONS))
    spec = importlib.util.spec_from_file_location(name, path)
    if spec is None or spec.loader is None:
        raise BenchmarkError(f'{path} cannot be loaded')
    module = importlib.util.module_from_spec(spec)
    sys.modules[name] = module  # dataclasses look their module up there
    spec.loader.exec_module(module)
    return module


# ---------------------------------------------------------------------------
# Runs
# ---------------------------------------------------------------------------

@dataclasses.dataclass
class Figures:
    database: str
    subject: Subject
    engine: list[float]
    client: list[float]
    peak_kib: int
    archive_bytes: int
    client_bytes: int
    engine_cpu: list[float]
    client_cpu: list[float]

    @property
    def ratio(self) -> float:
        return statistics.median(self.engine) / statistics.median(self.client)


def expected_counts(subject: Subject) -> dict[str, int]:
    rows = subject.rows
    return {
        'users': rows['users'], 'posts': rows['posts'], 'messages': rows['messages_sent'] + rows['messages_received'],
        'follows': rows['follows_out'] + rows['follows_in'], 'consents': rows['consents'], 'orders': rows['orders'],
        'order_items': rows['order_items'], 'uploads': 0,
    }


def verify_archive(path: pathlib.Path, expected: dict[str, int], report: dict[str, t.Any]) -> None:
    """The archive holds the rows the builder gave the subject, and every file matches the manifest's checksum."""
    digest = hashlib.sha256()
    with open(path, 'rb') as handle:
        for chunk in iter(lambda: handle.read(1 << 20), b''):
            digest.update(chunk)
    if digest.hexdigest() != report['sha256']:
        raise BenchmarkError(f'{path}: the archive does not match the checksum the engine returned')
    counts = {name: entry['rows'] for name, entry in report['tables'].items()}
    if counts != expected:
        raise BenchmarkError(f'the engine exported {counts}, the subject owns {expected}')
    with zipfile.ZipFile(path) as archive:
        manifest = json.loads(archive.read('manifest.json'))
        if {name: entry['rows'] for name, entry in manifest['tables'].items()} != expected:
            raise BenchmarkError(f'{path}: the manifest counts differ from the rows of the subject')
        for name, entry in manifest['files'].items():
            member = hashlib.sha256()
            with archive.open(name) as handle:
                for chunk in iter(functools.partial(handle.read, 1 << 20), b''):
                    member.update(chunk)
            if member.hexdigest() != entry['sha256']:
                raise BenchmarkError(f'{path}: {name} does not match its checksum in the manifest')


def engine_export(target: dict[str, str], subject: Subject, work: pathlib.Path) -> tuple[float, dict[str, t.Any]]:
    """One export by the engine in a child process: wall seconds and what the child reports."""
    dest = work / f'export-{subject.user_id}.zip'
    job = {**target, 'subject': str(subject.user_id), 'tenant': TENANT, 'dest': str(dest), 'data_map': str(DATA_MAP), 'key': PSEUDONYM_KEY}
    elapsed, cpu, output = timed([sys.executable, '-c', ENGINE, json.dumps(job)], env=dict(os.environ, PYTHONPATH=str(COLLECTIONS)))
    report = json.loads(output)
    report['cpu'] = cpu
    verify_archive(dest, expected_counts(subject), report)
    report['archive_bytes'] = dest.stat().st_size
    dest.unlink()
    return elapsed, report


def measure(database: str, target: dict[str, str], subject: Subject, client: t.Callable[[pathlib.Path], tuple[float, float, int]],
            work: pathlib.Path, repeat: int) -> Figures:
    """Engine and client runs, interleaved, after one unrecorded run of each (which warms the caches)."""
    client(work / 'client-warm-up')
    engine_export(target, subject, work)
    figures = Figures(database, subject, [], [], 0, 0, 0, [], [])
    for index in range(repeat):
        seconds, cpu, size = client(work / f'client-{index}')
        figures.client.append(seconds)
        figures.client_cpu.append(cpu)
        figures.client_bytes = size
        seconds, report = engine_export(target, subject, work)
        figures.engine.append(seconds)
        figures.engine_cpu.append(report['cpu'])
        figures.peak_kib = max(figures.peak_kib, report['peak_kib'])
        figures.archive_bytes = report['archive_bytes']
    for path in work.glob('client-*'):
        if path.is_dir():
            shutil.rmtree(path)
        else:
            path.unlink()
    return figures


def run_sqlite(layout: Layout, args: argparse.Namespace, work: pathlib.Path) -> list[Figures]:
    path, how = cached_sqlite(pathlib.Path(args.cache_dir), layout, sqlite_schema())
    print(f'sqlite: {layout.total:,} rows, {path.stat().st_size / 2**20:.0f} MiB, {how}: {path}', flush=True)
    results = []
    for subject in layout.subjects:
        selects = client_selects({'path': str(path)}, subject.user_id)
        results.append(measure('sqlite', {'path': str(path)}, subject,
                               functools.partial(sqlite_client, path, selects), work, args.repeat))
    return results


def run_postgres(layout: Layout, args: argparse.Namespace, work: pathlib.Path) -> list[Figures]:
    postgres = postgres_class().start()
    try:
        dsn = postgres.dsn()
        seconds = build_postgres(dsn, layout, postgres_schema())
        print(f'postgresql: {layout.total:,} rows built in {seconds:.1f} s on 127.0.0.1:{postgres.port}', flush=True)
        results = []
        for subject in layout.subjects:
            selects = client_selects({'dsn': dsn}, subject.user_id)
            results.append(measure('postgresql', {'dsn': dsn}, subject,
                                   functools.partial(psql_client, dsn, selects), work, args.repeat))
        return results
    finally:
        postgres.stop()


def report(results: list[Figures], layout: Layout) -> None:
    median = statistics.median
    print(f'\nexport of one subject: the RGPD engine vs the database client selecting the same rows; {layout.total:,} rows in all; '
          f'medians of {len(results[0].engine)} runs, each a child process (start-up included)')
    print(f"{'':12}{'subject':>10}{'engine':>9}{'client':>9}{'ratio':>8}{'goal':>7}{'engine':>9}{'client':>9}"
          f"{'ratio':>8}{'archive':>10}{'client':>10}{'engine':>11}")
    print(f"{'database':12}{'rows':>10}{'wall':>9}{'wall':>9}{'wall':>8}{'':>7}{'CPU':>9}{'CPU':>9}{'CPU':>8}{'(zip)':>10}{'output':>10}{'peak RSS':>11}")
    for item in results:
        print(f'{item.database:12}{item.subject.total:>10,}{median(item.engine):>7.2f} s{median(item.client):>7.2f} s{item.ratio:>7.2f}x'
              f'{"<=" + str(RATIO_GOAL) + "x":>7}{median(item.engine_cpu):>7.2f} s{median(item.client_cpu):>7.2f} s'
              f'{median(item.engine_cpu) / max(median(item.client_cpu), 0.001):>7.2f}x'
              f'{item.archive_bytes / 2**20:>6.1f} MiB{item.client_bytes / 2**20:>6.1f} MiB{item.peak_kib / 1024:>7.1f} MiB')
    for database in dict.fromkeys(item.database for item in results):
        rows = [item for item in results if item.database == database]
        big, small = rows[0], rows[-1]
        time_goal = 'met' if big.ratio <= RATIO_GOAL else 'NOT met'
        memory_goal = 'met' if max(item.peak_kib for item in rows) / 1024 < MEMORY_GOAL_MIB else 'NOT met'
        print(f'{database}: time goal (<= {RATIO_GOAL}x the client, wall, {big.subject.total:,} rows) {time_goal} ({big.ratio:.2f}x); '
              f'peak memory {small.peak_kib / 1024:.1f} MiB for {small.subject.total:,} rows and {big.peak_kib / 1024:.1f} MiB for '
              f'{big.subject.total:,} (goal < {MEMORY_GOAL_MIB} MiB, flat) {memory_goal}')
    print('CPU: user + system time of the child processes; the PostgreSQL server\'s own work is in neither column.')
    load = os.getloadavg()
    print(f'load average at the end: {load[0]:.2f} {load[1]:.2f} {load[2]:.2f}')


def parse_args(argv: t.Sequence[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=(__doc__ or '').split('\n', 1)[0])
    parser.add_argument('--rows', type=int, default=2_000_000, help='rows in the whole database (default %(default)s)')
    parser.add_argument('--subject-rows', type=int, default=100_000, help='rows of the big subject; the small one has a fifth (default %(default)s)')
    parser.add_argument('--db', choices=('sqlite', 'postgresql', 'both'), default='both')
    parser.add_argument('--repeat', type=int, default=3, help='measured runs of each tool (default %(default)s)')
    parser.add_argument('--quick', action='store_true', help='a smoke run: 50,000 rows, 5,000 subject rows, one measured run')
    parser.add_argument('--cache-dir', default=os.path.join(tempfile.gettempdir(), 'dihya-bench-rgpd-cache'),
                        help='where the SQLite database is kept between runs (default %(default)s)')
    parser.add_argument('--dir', default=tempfile.gettempdir(), help='where the archives and client outputs are written')
    args = parser.parse_args(argv)
    if args.quick:
        args.rows, args.subject_rows, args.repeat = 50_000, 5_000, 1
    return args


def main(argv: t.Sequence[str] | None = None) -> int:
    args = parse_args(argv)
    layout = plan(args.rows, args.subject_rows)
    load = os.getloadavg()
    print(f'load average at the start: {load[0]:.2f} {load[1]:.2f} {load[2]:.2f}', flush=True)
    work = pathlib.Path(tempfile.mkdtemp(prefix='dihya-bench-rgpd-', dir=args.dir))
    results: list[Figures] = []
    try:
        if args.db in ('sqlite', 'both'):
            results += run_sqlite(layout, args, work)
        if args.db in ('postgresql', 'both'):
            results += run_postgres(layout, args, work)
    except (BenchmarkError, subprocess.TimeoutExpired, OSError) as exc:
        print(f'benchmark failed: {exc}', file=sys.stderr)
        return 1
    finally:
        shutil.rmtree(work, ignore_errors=True)
    report(results, layout)
    return 0


if __name__ == '__main__':
    sys.exit(main())
