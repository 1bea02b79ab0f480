# Copyright (c) Dihya ops maintainers
# GNU General Public License v3.0+ (see LICENSES/GPL-3.0-or-later.txt or https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later

"""Tests of the vulnerability gate, with published OSV records (tests/fixtures/osv) as fixtures."""

from __future__ import annotations

import datetime
import json
import os
import pathlib
import stat

import pytest

from ansible_collections.dihya.ops.plugins.module_utils._advisories import (
    AdvisoryError,
    affects,
    gate,
    load_osv_dir,
    match_osv,
    parse_ignores,
    parse_osv,
    parse_pip_audit,
    run_pip_audit,
)

OSV = pathlib.Path(__file__).resolve().parents[3] / 'fixtures' / 'osv'
TODAY = datetime.date(2026, 11, 25)


@pytest.fixture(scope='module')
def advisories():
    found, errors = load_osv_dir(str(OSV))
    assert errors == []
    return {advisory.id: advisory for advisory in found}


def test_published_records_load(advisories):
    assert sorted(advisories) == ['GHSA-2g68-c3qc-8985', 'GHSA-h5c8-rqwp-cp95', 'GHSA-w3h3-4rj7-4ph4', 'PYSEC-2023-62']
    flask = advisories['PYSEC-2023-62']
    assert flask.package == 'flask' and flask.aliases == ('CVE-2023-30861', 'GHSA-m2qf-hxjv-5gpq')
    # The GIT range (commit hashes) is not used, only the ECOSYSTEM one.
    assert flask.ranges == ((('introduced', '0'), ('fixed', '2.2.5'), ('introduced', '2.3.0'), ('fixed', '2.3.2')),)
    assert flask.fixed == ['2.2.5', '2.3.2']
    assert advisories['GHSA-2g68-c3qc-8985'].package == 'werkzeug'


@pytest.mark.parametrize('advisory, version, expected', [
    ('PYSEC-2023-62', '0.12', True),
    ('PYSEC-2023-62', '2.2.4', True),
    ('PYSEC-2023-62', '2.2.5', False),
    ('PYSEC-2023-62', '2.2.6', False),      # between the two ranges: not in the versions list either
    ('PYSEC-2023-62', '2.3.0', True),
    ('PYSEC-2023-62', '2.3.1', True),
    ('PYSEC-2023-62', '2.3.2', False),
    ('PYSEC-2023-62', '3.1.3', False),
    ('PYSEC-2023-62', '2.0.0rc1', True),
    ('GHSA-2g68-c3qc-8985', '3.0.2', True),
    ('GHSA-2g68-c3qc-8985', '3.0.3', False),
    ('GHSA-2g68-c3qc-8985', '3.0.3.post1', False),
    ('GHSA-2g68-c3qc-8985', '3.0.3rc1', True),  # a pre-release of the fix is still before it (PEP 440)
    ('GHSA-2g68-c3qc-8985', '3.1.9', False),
    ('GHSA-h5c8-rqwp-cp95', '3.1.2', True),
    ('GHSA-h5c8-rqwp-cp95', '3.1.6', False),
    ('GHSA-w3h3-4rj7-4ph4', '21.2.0', True),   # last_affected is inclusive
    ('GHSA-w3h3-4rj7-4ph4', '22.0.0', False),
    ('GHSA-w3h3-4rj7-4ph4', '27.0.1', False),
    ('GHSA-w3h3-4rj7-4ph4', 'not-a-version', False),
])
def test_published_ranges(advisories, advisory, version, expected):
    assert affects(advisories[advisory], version) is expected


def test_versions_list_and_odd_events():
    record = {'id': 'X-1', 'affected': [
        {'package': {'ecosystem': 'PyPI', 'name': 'Pkg_A'}, 'versions': ['1.0', 'weird'],
         'ranges': [{'type': 'ECOSYSTEM', 'events': [{'introduced': '2.0'}, {'limit': '9'}, {'fixed': 'bad version'}]},
                    {'type': 'SEMVER', 'events': [{'introduced': '0'}]}]},
        {'package': {'ecosystem': 'npm', 'name': 'left-pad'}},
        'junk',
    ]}
    advisories = parse_osv(record, 'x.json')
    assert len(advisories) == 1 and advisories[0].package == 'pkg-a'
    advisory = advisories[0]
    assert affects(advisory, '1.0.0')          # equal to a listed version under PEP 440
    assert affects(advisory, 'weird')          # listed verbatim
    assert not affects(advisory, '1.5')
    assert affects(advisory, '3.0')            # introduced 2.0, the unparsable fix is skipped
    assert parse_osv({'id': 'W', 'withdrawn': '2024-01-01T00:00:00Z', 'affected': []}) == []
    with pytest.raises(AdvisoryError, match='not an OSV record'):
        parse_osv({'affected': []}, 'bad.json')


def test_unreadable_files_are_reported(tmp_path):
    (tmp_path / 'sub').mkdir()
    (tmp_path / 'sub' / 'broken.json').write_text('{not json')
    (tmp_path / 'notes.txt').write_text('ignored')
    (tmp_path / 'list.json').write_text('[]')
    found, errors = load_osv_dir(str(tmp_path))
    assert found == [] and len(errors) == 2
    with pytest.raises(AdvisoryError, match='does not exist'):
        load_osv_dir(str(tmp_path / 'missing'))


def test_ignores_are_validated():
    ignores = parse_ignores([
        {'package': 'Flask', 'id': 'CVE-2023-30861', 'until': '2026-12-31', 'reason': 'not behind a caching proxy'},
        {'package': 'jinja2', 'until': datetime.date(2026, 1, 1)},
        {'package': 'werkzeug', 'until': datetime.datetime(2026, 1, 1, 12, 0)},
    ])
    assert ignores[0].package == 'flask' and ignores[0].until == datetime.date(2026, 12, 31)
    assert ignores[1].describe() == 'every advisory of jinja2 until 2026-01-01'
    assert parse_ignores(None) == []
    for bad, message in [
        ('x', 'must be a list'),
        ([{'id': 'X'}], 'needs a package'),
        ([{'package': 'a'}], 'expiry date'),
        ([{'package': 'a', 'until': '31/12/2026'}], 'expiry date'),
        ([{'package': 'a', 'until': '2026-12-31', 'id': 'x; rm -rf /'}], 'invalid advisory id'),
        ([{'package': 'a', 'until': '2026-12-31', 'other': 1}], 'unknown keys'),
    ]:
        with pytest.raises(AdvisoryError, match=message):
            parse_ignores(bad)


def test_gate_with_ignores_and_expiry():
    packages = {'Flask': '2.2.4', 'Jinja2': '3.1.2', 'Werkzeug': '3.1.9', 'gunicorn': '21.2.0'}
    result = gate(packages, osv_dirs=[str(OSV)], pip_audit='never', today=TODAY)
    assert [(finding.package, finding.id) for finding in result.findings] == [
        ('Flask', 'PYSEC-2023-62'), ('gunicorn', 'GHSA-w3h3-4rj7-4ph4'), ('Jinja2', 'GHSA-h5c8-rqwp-cp95')]
    assert not result.passed and len(result.blocking) == 3 and 'update blocked' in result.message()
    ignores = parse_ignores([
        {'package': 'flask', 'id': 'GHSA-m2qf-hxjv-5gpq', 'until': '2026-11-25'},     # alias, last valid day
        {'package': 'gunicorn', 'until': '2026-11-24', 'reason': 'expired yesterday'},
        {'package': 'jinja2', 'id': 'GHSA-0000-0000-0000', 'until': '2027-01-01'},    # another advisory
    ])
    result = gate(packages, osv_dirs=[str(OSV)], ignores=ignores, pip_audit='never', today=TODAY)
    flask, gunicorn, jinja = result.findings
    assert flask.ignored and 'GHSA-m2qf-hxjv-5gpq of flask until 2026-11-25' in flask.ignore
    assert not gunicorn.ignored and gunicorn.expired_ignore == 'every advisory of gunicorn until 2026-11-24'
    assert not jinja.ignored
    assert result.notes == ['the ignore of every advisory of gunicorn until 2026-11-24 expired; GHSA-w3h3-4rj7-4ph4 of gunicorn is not ignored']
    assert [finding.package for finding in result.blocking] == ['gunicorn', 'Jinja2']
    warned = gate(packages, osv_dirs=[str(OSV)], ignores=ignores, policy='warn', pip_audit='never', today=TODAY)
    assert warned.passed and 'allowed with warnings' in warned.message()
    clean = gate({'Flask': '3.1.3', 'Werkzeug': '3.1.9'}, osv_dirs=[str(OSV)], pip_audit='never')
    assert clean.passed and clean.findings == [] and clean.message() == 'no unignored advisory affects the 2 packages checked'


def test_gate_refuses_bad_settings():
    with pytest.raises(AdvisoryError, match='policy'):
        gate({}, osv_dirs=[str(OSV)], policy='maybe')
    with pytest.raises(AdvisoryError, match='pip_audit'):
        gate({}, osv_dirs=[str(OSV)], pip_audit='sometimes')
    with pytest.raises(AdvisoryError, match='no advisory source'):
        gate({'flask': '1.0'}, pip_audit='auto', pip_audit_executable='/nonexistent/pip-audit')
    with pytest.raises(AdvisoryError, match='not installed'):
        gate({'flask': '1.0'}, pip_audit='always', pip_audit_executable='pip-audit-not-here')


PIP_AUDIT_JSON = {'dependencies': [
    {'name': 'flask', 'version': '2.2.4', 'vulns': [
        {'id': 'GHSA-m2qf-hxjv-5gpq', 'fix_versions': ['2.2.5', '2.3.2'], 'aliases': ['CVE-2023-30861', 'PYSEC-2023-62'],
         'description': 'Flask vulnerable to possible disclosure of permanent session cookie due to missing Vary: Cookie header'}]},
    {'name': 'click', 'version': '8.5.1', 'vulns': []},
    'junk',
], 'fixes': []}


def fake_pip_audit(tmp_path, body: str, rc: int) -> str:
    """A real executable standing in for pip-audit: checks its arguments, prints ``body``, exits ``rc``."""
    script = tmp_path / 'pip-audit'
    script.write_text(
        '#!/bin/sh\n'
        'case "$*" in *"--no-deps --disable-pip --format json"*) ;; *) echo "bad args: $*" >&2; exit 9;; esac\n'
        f"cat <<'EOF'\n{body}\nEOF\n"
        f'exit {rc}\n'
    )
    script.chmod(script.stat().st_mode | stat.S_IXUSR)
    return str(script)


def test_pip_audit_findings_merge_with_osv(tmp_path, monkeypatch):
    executable = fake_pip_audit(tmp_path, json.dumps(PIP_AUDIT_JSON), 1)
    monkeypatch.setenv('PATH', f'{tmp_path}{os.pathsep}{os.environ["PATH"]}')
    result = gate({'flask': '2.2.4', 'click': '8.5.1'}, osv_dirs=[str(OSV)], today=TODAY)
    assert result.sources == [f'osv:{OSV}', 'pip-audit']
    assert len(result.findings) == 1
    finding = result.findings[0]
    assert finding.id == 'PYSEC-2023-62' and finding.sources == ['osv', 'pip-audit']
    assert 'GHSA-m2qf-hxjv-5gpq' in finding.aliases and finding.fixed == ['2.2.5', '2.3.2']
    assert run_pip_audit({'flask': '2.2.4'}, executable)[0].id == 'GHSA-m2qf-hxjv-5gpq'
    assert parse_pip_audit([])[:1] == []


def test_pip_audit_failure_is_a_note_or_an_error(tmp_path):
    broken = fake_pip_audit(tmp_path, 'ConnectionError: pypi.org unreachable', 2)
    result = gate({'flask': '3.1.3'}, osv_dirs=[str(OSV)], pip_audit_executable=broken)
    assert result.passed and result.sources == [f'osv:{OSV}']
    assert 'pip-audit failed (rc=2)' in result.notes[0] and 'only the OSV folders were checked' in result.notes[0]
    with pytest.raises(AdvisoryError, match='pip-audit failed'):
        gate({'flask': '3.1.3'}, pip_audit='always', pip_audit_executable=broken)
    garbage = tmp_path / 'garbage'
    garbage.mkdir()
    with pytest.raises(AdvisoryError, match='did not print JSON'):
        run_pip_audit({'flask': '3.1.3'}, fake_pip_audit(garbage, 'not json', 0))
    with pytest.raises(AdvisoryError, match='no dependencies list'):
        parse_pip_audit({'fixes': []})


def test_match_osv_uses_normalised_names(advisories):
    findings = match_osv({'WERKZEUG': '2.0.0', 'jinja2': '3.1.6'}, advisories.values())
    assert [(finding.package, finding.id) for finding in findings] == [('WERKZEUG', 'GHSA-2g68-c3qc-8985')]
    assert findings[0].describe() == 'WERKZEUG 2.0.0: GHSA-2g68-c3qc-8985, fixed in 3.0.3'
