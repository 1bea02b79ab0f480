# Copyright (c) Dihya ops maintainers
# GNU General Public License v3.0+ (see LICENSES/GPL-3.0-or-later.txt or https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later

# This module utility is PRIVATE to the collection. It can change at any time.

"""Vulnerability gate: match a set of package versions against advisories.

Two sources, used together:

* a local folder of OSV records (https://ossf.github.io/osv-schema/), for sites without internet:
  ``affected[].package`` with ``ecosystem: PyPI``, ``affected[].ranges[]`` of type ``ECOSYSTEM``
  (``introduced``, ``fixed``, ``last_affected`` events, evaluated as the OSV specification says) and
  ``affected[].versions`` (exact versions);
* ``pip-audit``, when the command is installed (its vulnerability services need network access).

Ignores are per package, optionally per advisory id (or alias), and always expire: an ignore whose
``until`` date is past no longer suppresses anything, and says so. Versions are compared with the
``packaging`` library (PEP 440); see :mod:`._pydeps_specs` for why the public library is used.
"""

from __future__ import annotations

import dataclasses
import datetime
import json
import os
import re
import shutil
import tempfile
import typing as t

from ansible_collections.dihya.ops.plugins.module_utils._pydeps import Runner, subprocess_runner
from ansible_collections.dihya.ops.plugins.module_utils._pydeps_specs import PyDepsError, canonical_name, parse_version

POLICIES = ('fail', 'warn')
PIP_AUDIT_MODES = ('auto', 'always', 'never')
_ID = re.compile(r'^[A-Za-z0-9][A-Za-z0-9._:-]{0,127}$')


class AdvisoryError(PyDepsError):
    """Bad gate input, unreadable advisories or a pip-audit that could not run."""


@dataclasses.dataclass(frozen=True)
class Advisory:
    """One OSV record's view of one package."""

    id: str
    aliases: tuple[str, ...]
    summary: str
    package: str
    ranges: tuple[tuple[tuple[str, str], ...], ...]
    versions: frozenset[str]
    source: str

    @property
    def fixed(self) -> list[str]:
        return [value for events in self.ranges for kind, value in events if kind == 'fixed']

    def names(self) -> set[str]:
        return {self.id.upper(), *(alias.upper() for alias in self.aliases)}


def _events(events: t.Any) -> tuple[tuple[str, str], ...]:
    result = []
    for event in events if isinstance(events, list) else []:
        if isinstance(event, dict):
            for kind in ('introduced', 'fixed', 'last_affected', 'limit'):
                if isinstance(event.get(kind), str):
                    result.append((kind, event[kind]))
    return tuple(result)


def parse_osv(record: t.Any, source: str = '') -> list[Advisory]:
    """The PyPI advisories of one OSV record (one per affected package); other ecosystems are skipped."""
    if not isinstance(record, dict) or not isinstance(record.get('id'), str) or not isinstance(record.get('affected', []), list):
        raise AdvisoryError(f'{source or "record"} is not an OSV record (no id or affected list)')
    if record.get('withdrawn'):
        return []
    aliases = tuple(alias for alias in record.get('aliases') or [] if isinstance(alias, str))
    summary = str(record.get('summary') or record.get('details') or '').strip().splitlines()
    advisories = []
    for affected in record.get('affected', []):
        package = affected.get('package') if isinstance(affected, dict) else None
        if not isinstance(package, dict) or package.get('ecosystem') != 'PyPI' or not isinstance(package.get('name'), str):
            continue
        ranges = tuple(_events(item.get('events')) for item in affected.get('ranges') or []
                       if isinstance(item, dict) and item.get('type') == 'ECOSYSTEM')
        versions = frozenset(str(version) for version in affected.get('versions') or [])
        advisories.append(Advisory(id=record['id'], aliases=aliases, summary=summary[0][:300] if summary else '',
                                   package=canonical_name(package['name']), ranges=ranges, versions=versions, source=source))
    return advisories


def load_osv_dir(path: str) -> tuple[list[Advisory], list[str]]:
    """Every advisory of the ``*.json`` files below ``path``; plus one message per file that could not be read."""
    if not os.path.isdir(path):
        raise AdvisoryError(f'advisory folder {path} does not exist')
    advisories: list[Advisory] = []
    errors: list[str] = []
    for root, dirs, files in os.walk(path):
        dirs.sort()
        for name in sorted(files):
            if not name.endswith('.json'):
                continue
            file_path = os.path.join(root, name)
            try:
                with open(file_path, encoding='utf-8') as handle:
                    advisories.extend(parse_osv(json.load(handle), source=file_path))
            except (OSError, ValueError, AdvisoryError) as exc:
                errors.append(f'{file_path}: {exc}')
    return advisories, errors


def _range_affects(events: tuple[tuple[str, str], ...], version: t.Any) -> bool:
    """OSV evaluation of one ECOSYSTEM range: walk the events in version order."""
    parsed = []
    for kind, value in events:
        if kind == 'limit':
            continue
        point = None if value == '0' else parse_version(value)
        if value != '0' and point is None:
            continue
        parsed.append((kind, point))
    # "0" sorts first; at the same version an introduced event comes before the one that closes it.
    order = {'introduced': 0, 'fixed': 1, 'last_affected': 2}
    parsed.sort(key=lambda item: ((0,) if item[1] is None else (1, item[1]), order[item[0]]))
    affected = False
    for kind, point in parsed:
        if kind == 'introduced' and (point is None or version >= point):
            affected = True
        elif point is not None and ((kind == 'fixed' and version >= point) or (kind == 'last_affected' and version > point)):
            affected = False
    return affected


def affects(advisory: Advisory, version: str) -> bool:
    """Whether ``version`` of the advisory's package is affected."""
    if version in advisory.versions:
        return True
    parsed = parse_version(version)
    if parsed is None:
        return False
    if any(parse_version(item) == parsed for item in advisory.versions if parse_version(item) is not None):
        return True
    return any(_range_affects(events, parsed) for events in advisory.ranges)


@dataclasses.dataclass(frozen=True)
class Ignore:
    """Do not block on ``package`` (and ``id``, when given) until ``until`` (inclusive)."""

    package: str
    until: datetime.date
    id: str | None = None
    reason: str = ''

    def describe(self) -> str:
        what = f'{self.id} of {self.package}' if self.id else f'every advisory of {self.package}'
        return f'{what} until {self.until.isoformat()}'


def parse_ignores(items: t.Any) -> list[Ignore]:
    """Validate ignore entries: ``package`` and ``until`` (YYYY-MM-DD) required, ``id`` and ``reason`` optional."""
    if items is None:
        return []
    if not isinstance(items, list):
        raise AdvisoryError('ignores must be a list of {package, id, until, reason} entries')
    ignores = []
    for item in items:
        if not isinstance(item, dict) or not isinstance(item.get('package'), str) or not item['package'].strip():
            raise AdvisoryError(f'ignore {item!r} needs a package name')
        unknown = set(item) - {'package', 'id', 'until', 'reason'}
        if unknown:
            raise AdvisoryError(f'ignore of {item["package"]} has unknown keys {sorted(unknown)}')
        until = item.get('until')
        if isinstance(until, datetime.datetime):
            until = until.date()
        elif isinstance(until, str):
            try:
                until = datetime.date.fromisoformat(until.strip())
            except ValueError:
                until = None
        if not isinstance(until, datetime.date):
            raise AdvisoryError(f'ignore of {item["package"]} needs an expiry date "until" as YYYY-MM-DD (got {item.get("until")!r})')
        advisory_id = item.get('id')
        if advisory_id is not None and (not isinstance(advisory_id, str) or not _ID.match(advisory_id)):
            raise AdvisoryError(f'ignore of {item["package"]} has an invalid advisory id {advisory_id!r}')
        ignores.append(Ignore(package=canonical_name(item['package'].strip()), until=until, id=advisory_id or None,
                              reason=str(item.get('reason') or '')))
    return ignores


@dataclasses.dataclass
class Finding:
    """One advisory that affects one package version of the checked set."""

    package: str
    version: str
    id: str
    aliases: list[str]
    summary: str
    fixed: list[str]
    sources: list[str]
    ignored: bool = False
    ignore: str = ''
    expired_ignore: str = ''

    def names(self) -> set[str]:
        return {self.id.upper(), *(alias.upper() for alias in self.aliases)}

    def as_dict(self) -> dict[str, t.Any]:
        return dataclasses.asdict(self)

    def describe(self) -> str:
        fixed = f', fixed in {", ".join(self.fixed)}' if self.fixed else ''
        return f'{self.package} {self.version}: {self.id}{fixed}'


def _add(findings: list[Finding], finding: Finding) -> None:
    """Merge a finding into the list: the same advisory (by id or alias) of the same package counts once."""
    for known in findings:
        if known.package == finding.package and known.version == finding.version and known.names() & finding.names():
            known.aliases = sorted(set(known.aliases) | (finding.names() - {known.id.upper()}) - {known.id})
            known.sources = sorted(set(known.sources) | set(finding.sources))
            known.fixed = sorted(set(known.fixed) | set(finding.fixed))
            return
    findings.append(finding)


def match_osv(packages: t.Mapping[str, str], advisories: t.Iterable[Advisory]) -> list[Finding]:
    """Findings of the OSV advisories against ``packages`` (name -> version)."""
    by_name = {canonical_name(name): (name, version) for name, version in packages.items()}
    findings: list[Finding] = []
    for advisory in advisories:
        if advisory.package not in by_name:
            continue
        name, version = by_name[advisory.package]
        if affects(advisory, version):
            _add(findings, Finding(package=name, version=version, id=advisory.id, aliases=sorted(advisory.aliases),
                                   summary=advisory.summary, fixed=advisory.fixed, sources=['osv']))
    return findings


def parse_pip_audit(document: t.Any) -> list[Finding]:
    """Findings of a ``pip-audit --format json`` document."""
    dependencies = document.get('dependencies') if isinstance(document, dict) else document
    if not isinstance(dependencies, list):
        raise AdvisoryError('pip-audit output has no dependencies list')
    findings: list[Finding] = []
    for dependency in dependencies:
        if not isinstance(dependency, dict):
            continue
        for vuln in dependency.get('vulns') or []:
            _add(findings, Finding(package=str(dependency.get('name')), version=str(dependency.get('version')),
                                   id=str(vuln.get('id')), aliases=sorted(str(alias) for alias in vuln.get('aliases') or []),
                                   summary=str(vuln.get('description') or '').strip().split('\n', maxsplit=1)[0][:300],
                                   fixed=[str(version) for version in vuln.get('fix_versions') or []], sources=['pip-audit']))
    return findings


def run_pip_audit(packages: t.Mapping[str, str], executable: str, runner: Runner = subprocess_runner,
                  timeout: float = 300) -> list[Finding]:
    """Audit the pinned set with ``pip-audit`` (no dependency resolution, no pip): its findings."""
    workdir = tempfile.mkdtemp(prefix='dihya-audit-')
    try:
        requirements = os.path.join(workdir, 'requirements.txt')
        with open(requirements, 'w', encoding='utf-8') as handle:
            handle.write(''.join(f'{name}=={version}\n' for name, version in sorted(packages.items())))
        rc, out, err = runner([executable, '--requirement', requirements, '--no-deps', '--disable-pip',
                               '--format', 'json', '--progress-spinner', 'off'], timeout)
    finally:
        shutil.rmtree(workdir, ignore_errors=True)
    if rc not in (0, 1):
        detail = ' | '.join(line for line in err.strip().splitlines()[-3:] if line.strip())
        raise AdvisoryError(f'pip-audit failed (rc={rc}): {detail or "no output"}')
    try:
        return parse_pip_audit(json.loads(out))
    except ValueError:
        raise AdvisoryError('pip-audit did not print JSON') from None


@dataclasses.dataclass
class GateResult:
    """Outcome of the gate."""

    policy: str
    findings: list[Finding]
    notes: list[str]
    sources: list[str]
    checked: int

    @property
    def blocking(self) -> list[Finding]:
        return [finding for finding in self.findings if not finding.ignored]

    @property
    def passed(self) -> bool:
        return not self.blocking or self.policy == 'warn'

    def message(self) -> str:
        blocking = self.blocking
        if not blocking:
            return f'no unignored advisory affects the {self.checked} packages checked'
        verdict = 'blocked' if self.policy == 'fail' else 'allowed with warnings (policy warn)'
        return f'{len(blocking)} advisories affect the packages, update {verdict}: ' + '; '.join(
            finding.describe() for finding in blocking)


def apply_ignores(findings: list[Finding], ignores: t.Sequence[Ignore], today: datetime.date) -> list[str]:
    """Mark ignored findings; return one note per expired ignore that would otherwise have applied."""
    notes = []
    for finding in findings:
        for ignore in ignores:
            if ignore.package != canonical_name(finding.package):
                continue
            if ignore.id and ignore.id.upper() not in finding.names():
                continue
            if today > ignore.until:
                finding.expired_ignore = ignore.describe()
                notes.append(f'the ignore of {ignore.describe()} expired; {finding.id} of {finding.package} is not ignored')
                continue
            finding.ignored = True
            finding.ignore = ignore.describe() + (f' ({ignore.reason})' if ignore.reason else '')
            break
    return notes


def gate(packages: t.Mapping[str, str], osv_dirs: t.Sequence[str] = (), ignores: t.Sequence[Ignore] = (),
         policy: str = 'fail', pip_audit: str = 'auto', pip_audit_executable: str = 'pip-audit',
         today: datetime.date | None = None, runner: Runner = subprocess_runner, timeout: float = 300) -> GateResult:
    """Check ``packages`` (name -> version) against every source and apply the ignores."""
    if policy not in POLICIES:
        raise AdvisoryError(f'policy must be one of {", ".join(POLICIES)} (got {policy!r})')
    if pip_audit not in PIP_AUDIT_MODES:
        raise AdvisoryError(f'pip_audit must be one of {", ".join(PIP_AUDIT_MODES)} (got {pip_audit!r})')
    today = today or datetime.date.today()
    findings: list[Finding] = []
    notes: list[str] = []
    sources: list[str] = []
    for folder in osv_dirs:
        advisories, errors = load_osv_dir(folder)
        notes.extend(f'unreadable advisory file {error}' for error in errors)
        sources.append(f'osv:{folder}')
        for finding in match_osv(packages, advisories):
            _add(findings, finding)
    if pip_audit != 'never':
        found = shutil.which(pip_audit_executable) if not os.path.isabs(pip_audit_executable) else (
            pip_audit_executable if os.access(pip_audit_executable, os.X_OK) else None)
        if found is None:
            if pip_audit == 'always':
                raise AdvisoryError(f'pip-audit ({pip_audit_executable}) is not installed and pip_audit is "always"')
            notes.append(f'pip-audit ({pip_audit_executable}) is not installed: skipped, only the OSV folders were checked')
        else:
            try:
                audited = run_pip_audit(packages, found, runner=runner, timeout=timeout)
            except AdvisoryError as exc:
                if pip_audit == 'always':
                    raise
                notes.append(f'{exc}: skipped (its vulnerability service may be unreachable), only the OSV folders were checked')
            else:
                sources.append('pip-audit')
                for finding in audited:
                    _add(findings, finding)
    if not sources:
        raise AdvisoryError('no advisory source could be checked: give an OSV folder or install pip-audit')
    notes.extend(apply_ignores(findings, ignores, today))
    findings.sort(key=lambda finding: (canonical_name(finding.package), finding.id))
    return GateResult(policy=policy, findings=findings, notes=notes, sources=sources, checked=len(packages))
