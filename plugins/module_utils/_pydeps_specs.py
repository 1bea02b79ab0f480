# Copyright (c) Dihya ops maintainers
# GNU General Public License v3.0+ (see LICENSES/GPL-3.0-or-later.txt or https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later

# This module utility is PRIVATE to the collection. It can change at any time.

"""What pip is given and what it answers, checked and parsed: package specifications, sources, versions,
``pip freeze`` lines, pip's installation report and wheel file names. Nothing here runs pip.

Versions are compared with the ``packaging`` library (PEP 440). The module runs under the managed
host's Ansible interpreter, not under the virtual environment's, so pip's vendored copy
(``pip._vendor.packaging``) is not importable from here, and it is a private part of pip that may be
removed or changed at any release; ``packaging`` is the public, maintained library and is imported
as an optional dependency (see :data:`HAS_PACKAGING`).
"""

from __future__ import annotations

import dataclasses
import os
import re
import traceback
import typing as t
import urllib.parse

try:
    from packaging.requirements import InvalidRequirement, Requirement
    from packaging.utils import InvalidWheelFilename, parse_wheel_filename
    from packaging.version import InvalidVersion, Version
except ImportError:
    HAS_PACKAGING = False
    PACKAGING_IMPORT_ERROR: str | None = traceback.format_exc()
else:
    HAS_PACKAGING = True
    PACKAGING_IMPORT_ERROR = None


# Characters a package specification never needs; refusing them keeps specs from smuggling
# environment markers, options or shell syntax into anything that reads them later.
FORBIDDEN_CHARACTERS = frozenset(';|&$`\'"\\\n\r\t{}()#%')
_NAME_CANON = re.compile(r'[-_.]+')
_PIN = re.compile(r'^([A-Za-z0-9][A-Za-z0-9._-]*)==([^=\s;]+)$')
# pip reads an argument ending like this as a local archive file (relative to its working directory)
# when such a file exists, and builds it: names and versions never end like this.
ARCHIVE_SUFFIXES = ('.whl', '.zip', '.tar', '.tar.gz', '.tgz', '.tar.bz2', '.tbz', '.tbz2', '.tar.xz', '.txz', '.tar.lz', '.tlz',
                    '.tar.lzma', '.tar.zst', '.egg', '.exe', '.msi', '.pybundle')


class PyDepsError(Exception):
    """Bad input, or a pip command that failed; the message is meant for the user."""


def canonical_name(name: str) -> str:
    """PEP 503 normalised name (``Flask_Login`` -> ``flask-login``)."""
    return _NAME_CANON.sub('-', name).lower()


def require_packaging() -> None:
    if not HAS_PACKAGING:
        raise PyDepsError('the Python library "packaging" is required on the managed host')


def parse_version(value: str) -> t.Any:
    """A :class:`packaging.version.Version`, or ``None`` when ``value`` is not a PEP 440 version."""
    require_packaging()
    try:
        return Version(value)
    except InvalidVersion:
        return None


def compare_versions(old: str, new: str) -> str:
    """``upgrade``, ``downgrade`` or ``reinstall``; ``change`` when either side is not PEP 440."""
    old_v, new_v = parse_version(old), parse_version(new)
    if old_v is None or new_v is None:
        return 'reinstall' if old == new else 'change'
    if new_v > old_v:
        return 'upgrade'
    if new_v < old_v:
        return 'downgrade'
    return 'reinstall'


def validate_spec(spec: t.Any, allow_urls: bool = False) -> str:
    """Check one package specification and return it in its canonical PEP 508 form, as pip gets it.

    Accepted: a distribution name, optional extras, and version specifiers with PEP 440 versions
    (``flask``, ``Flask[async]>=3.1,<4``, ``dihya-demo-ext==1.1.*``). Refused: anything that is not a
    string, options (``-r``, ``-e``, ``--index-url``), shell metacharacters and whitespace inside a
    name, environment markers, local paths, anything that ends like an archive or wheel file name
    (``evilpkg-1.0.tar.gz``, which pip would read as a file), arbitrary equality (``===``) and, unless
    ``allow_urls``, direct references (``name @ URL``). With ``allow_urls``, only ``https://`` or
    ``http://`` URLs of wheels are accepted: a source archive would have to be built.
    """
    require_packaging()
    if not isinstance(spec, str) or not spec.strip():
        raise PyDepsError(f'package specification {spec!r} is not a non-empty string')
    text = spec.strip()
    bad = sorted(set(text) & FORBIDDEN_CHARACTERS)
    if bad:
        raise PyDepsError(f'package specification {text!r} holds forbidden characters {"".join(bad)!r}')
    if text.startswith('-'):
        raise PyDepsError(f'package specification {text!r} looks like a pip option; options are not accepted')
    if '://' in text.split('@', 1)[0] or text.lower().startswith(('git+', 'hg+', 'svn+', 'bzr+', 'file:')):
        raise PyDepsError(f'package specification {text!r} is a URL; use "name @ URL" with allow_urls, or better a name and version')
    if text.startswith(('.', '/', '~')) or '\\' in text or ('/' in text and '@' not in text):
        raise PyDepsError(f'package specification {text!r} looks like a path; only package names and versions are accepted')
    if '@' not in text and text.lower().endswith(ARCHIVE_SUFFIXES):
        raise PyDepsError(f'package specification {text!r} looks like an archive or wheel file name; '
                          'give the package name and version (name==1.0) and the folder in find_links')
    try:
        requirement = Requirement(text)
    except InvalidRequirement as exc:
        raise PyDepsError(f'package specification {text!r} is not a valid PEP 508 requirement: {exc}') from None
    if requirement.marker is not None:
        raise PyDepsError(f'package specification {text!r} has an environment marker; markers are not accepted')
    for specifier in requirement.specifier:
        if specifier.operator == '===':
            raise PyDepsError(f'package specification {text!r} uses arbitrary equality (===); use == with a PEP 440 version')
        version = specifier.version[:-2] if specifier.version.endswith('.*') else specifier.version
        if parse_version(version) is None:
            raise PyDepsError(f'package specification {text!r} has {specifier.version!r}, which is not a PEP 440 version')
    if requirement.url:
        if not allow_urls:
            raise PyDepsError(f'package specification {text!r} is a URL; set allow_urls to install from URLs')
        url = urllib.parse.urlsplit(requirement.url)
        if url.scheme not in ('https', 'http') or not url.netloc or not url.path.lower().endswith('.whl'):
            raise PyDepsError(f'package specification {text!r}: only http:// or https:// URLs of wheels (.whl) are accepted; '
                              'nothing is ever built from source')
    canonical = str(requirement)
    if canonical.lower().endswith(ARCHIVE_SUFFIXES) and not requirement.url:  # pragma: no cover - refused above
        raise PyDepsError(f'package specification {text!r} looks like an archive or wheel file name')
    return canonical


def validate_source(value: t.Any, what: str) -> str:
    """An index URL or find-links entry: an absolute local path, or a file, http or https URL."""
    if not isinstance(value, str) or not value or value != value.strip() or any(char in value for char in '\n\r\t '):
        raise PyDepsError(f'{what} {value!r} is not a valid absolute path or URL')
    if value.startswith(('http://', 'https://', 'file://')) or (value.startswith('/') and '\x00' not in value):
        return value
    raise PyDepsError(f'{what} {value!r} must be an absolute path or a file://, http:// or https:// URL')


@dataclasses.dataclass(frozen=True)
class Sources:
    """Where pip finds packages: an index, find-links folders or pages, or no index at all."""

    index_url: str | None = None
    find_links: tuple[str, ...] = ()
    no_index: bool = False

    def __post_init__(self) -> None:
        if self.index_url is not None:
            validate_source(self.index_url, 'index URL')
        for item in self.find_links:
            validate_source(item, 'find-links entry')
        if self.no_index and not self.find_links:
            raise PyDepsError('no_index needs at least one find_links entry to install from')

    def argv(self) -> list[str]:
        argv: list[str] = []
        if self.no_index:
            argv.append('--no-index')
        elif self.index_url:
            argv += ['--index-url', self.index_url]
        for item in self.find_links:
            argv += ['--find-links', item]
        return argv


def parse_freeze(lines: t.Iterable[str]) -> dict[str, tuple[str, str]]:
    """``name==version`` lines -> canonical name -> (name, version). Other forms cannot be snapshotted."""
    pins: dict[str, tuple[str, str]] = {}
    for line in lines:
        match = _PIN.match(line.strip())
        if not match:
            raise PyDepsError(
                f'{line.strip()!r} is not a plain name==version pin (editable or direct-URL install): '
                'it cannot be snapshotted for an offline rollback'
            )
        pins[canonical_name(match.group(1))] = (match.group(1), match.group(2))
    return pins


@dataclasses.dataclass(frozen=True)
class Change:
    """One package an install changes.

    ``url`` is set when the package was asked for as a direct reference (``name @ URL``): that URL, where pip
    found the version planned, is then where it is installed from (it may be the only place that has it).
    """

    name: str
    current: str | None
    new: str
    action: str
    requested: bool
    url: str | None = None

    @property
    def pin(self) -> str:
        """What installs exactly this version: ``name==new``, or ``name @ URL`` for a direct reference."""
        return f'{self.name} @ {self.url}' if self.url else f'{self.name}=={self.new}'

    def as_dict(self) -> dict[str, t.Any]:
        return {'name': self.name, 'current': self.current, 'new': self.new, 'action': self.action,
                'requested': self.requested, 'pin': self.pin, 'url': self.url, 'summary': self.summary}

    @property
    def summary(self) -> str:
        return f'{self.name} {self.current} -> {self.new}' if self.current else f'{self.name} (new) -> {self.new}'


def direct_urls(specs: t.Iterable[str]) -> dict[str, str]:
    """Canonical name -> URL of every direct reference (``name @ URL``) among ``specs``, already validated."""
    require_packaging()
    urls: dict[str, str] = {}
    for spec in specs:
        try:
            requirement = Requirement(spec)
        except InvalidRequirement:
            continue
        if requirement.url:
            urls[canonical_name(requirement.name)] = requirement.url
    return urls


def parse_report(report: t.Any, before: dict[str, tuple[str, str]], urls: dict[str, str] | None = None) -> list[Change]:
    """Changes from a ``pip install --report`` document, against the installed versions.

    Entries that would reinstall the version already there are not changes. ``urls`` (see :func:`direct_urls`)
    gives the URL of the packages asked for as direct references; it is kept in their :class:`Change`.
    """
    if not isinstance(report, dict) or not isinstance(report.get('install'), list):
        raise PyDepsError('the pip installation report has no "install" list')
    changes: list[Change] = []
    for entry in report['install']:
        metadata = entry.get('metadata') if isinstance(entry, dict) else None
        if not isinstance(metadata, dict) or not isinstance(metadata.get('name'), str) or not isinstance(metadata.get('version'), str):
            raise PyDepsError('the pip installation report has an entry without metadata name and version')
        name, new = metadata['name'], metadata['version']
        current = before.get(canonical_name(name))
        if current is None:
            action = 'install'
        else:
            action = compare_versions(current[1], new)
            if action == 'reinstall':
                continue
        changes.append(Change(name=name, current=current[1] if current else None, new=new, action=action,
                              requested=bool(entry.get('requested', False)), url=(urls or {}).get(canonical_name(name))))
    return sorted(changes, key=lambda change: canonical_name(change.name))


def wheel_index(folder: str) -> dict[tuple[str, str], str]:
    """(canonical name, normalised version) -> wheel file name, for the wheels in ``folder``."""
    found: dict[tuple[str, str], str] = {}
    for entry in sorted(os.listdir(folder)):
        if not entry.endswith('.whl'):
            continue
        try:
            name, version, dummy_build, dummy_tags = parse_wheel_filename(entry)
        except InvalidWheelFilename:
            continue
        found[(canonical_name(str(name)), str(version))] = entry
    return found


def _normal_version(value: str) -> str:
    parsed = parse_version(value)
    return str(parsed) if parsed is not None else value


def missing_wheels(pins: dict[str, tuple[str, str]], folder: str) -> list[str]:
    index = wheel_index(folder) if os.path.isdir(folder) else {}
    return [f'{name}=={version}' for key, (name, version) in sorted(pins.items())
            if (key, _normal_version(version)) not in index]


def freeze_differences(expected: dict[str, tuple[str, str]], actual: dict[str, tuple[str, str]]) -> list[str]:
    """Human-readable differences between two frozen sets."""
    differences = []
    for key in sorted(set(expected) | set(actual)):
        want, have = expected.get(key), actual.get(key)
        if want is None and have is not None:
            differences.append(f'{have[0]}=={have[1]} is extra')
        elif have is None and want is not None:
            differences.append(f'{want[0]}=={want[1]} is missing')
        elif want is not None and have is not None and want[1] != have[1]:
            differences.append(f'{want[0]} is {have[1]} instead of {want[1]}')
    return differences


def parse_freeze_lenient(lines: t.Iterable[str]) -> dict[str, tuple[str, str]]:
    """Like :func:`parse_freeze`, but a line that is not a pin is kept under its own text (version ``?``)."""
    pins: dict[str, tuple[str, str]] = {}
    for line in lines:
        match = _PIN.match(line.strip())
        if match:
            pins[canonical_name(match.group(1))] = (match.group(1), match.group(2))
        else:
            text = line.strip()
            text = text[3:].strip() if text.startswith('-e ') else text
            name = re.split(r'[\s@=<>!~\[]', text, maxsplit=1)[0] or text
            pins[canonical_name(name)] = (name, '?')
    return pins
