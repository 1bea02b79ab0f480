# Copyright (c) Dihya ops maintainers
# GNU General Public License v3.0+ (see LICENSES/GPL-3.0-or-later.txt or https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later

"""A :class:`~dihya_ops_run.RunResult` as JUnit XML: one test case per host and operation, as GitLab CI, GitHub Actions and Jenkins read it."""

from __future__ import annotations

import pathlib
import xml.etree.ElementTree as ET

from ._results import RunResult


def junit_xml(result: RunResult) -> str:
    """The JUnit document of a run. A failed host's case has a ``failure`` (its failing task and message); a run that
    failed before any host ran (bad input, an error of Ansible) is one ``error`` case named after the operation."""
    name = f'dihya.ops.{result.operation}' + (' (check mode)' if result.check else '')
    suites = ET.Element('testsuites', name='dihya-ops')
    suite = ET.SubElement(suites, 'testsuite', name=name, timestamp=result.start, time=f'{result.duration:.3f}')
    cases = failures = errors = 0
    for host in sorted(result.hosts):
        cases += 1
        stats = result.hosts[host]
        case = ET.SubElement(suite, 'testcase', classname=name, name=f'{host}: {result.operation}', time=f'{result.duration:.3f}')
        failure = result.failure(host)
        if failure is not None or stats.get('failures') or stats.get('dark'):
            failures += 1
            task = failure.task if failure else 'unknown task'
            message = failure.message if failure else 'the host failed'
            kind = 'unreachable' if (failure and failure.unreachable) or stats.get('dark') else result.status
            node = ET.SubElement(case, 'failure', message=f'{task}: {message}', type=kind)
            node.text = f'host {host}\ntask: {task}\nmodule: {failure.action if failure else ""}\nmessage: {message}\ntrace id: {result.trace_id}'
        else:
            out = ET.SubElement(case, 'system-out')
            out.text = ' '.join(f'{k}={v}' for k, v in sorted(stats.items()))
    if not result.hosts or (result.status not in ('successful', 'failed') and not failures):
        cases += 1
        case = ET.SubElement(suite, 'testcase', classname=name, name=f'{result.operation}: run', time=f'{result.duration:.3f}')
        if result.status != 'successful':
            errors += 1
            node = ET.SubElement(case, 'error', message=result.message or result.status, type=result.status)
            node.text = f'status: {result.status}\nmessage: {result.message}\ntrace id: {result.trace_id}'
    suite.set('tests', str(cases))
    suite.set('failures', str(failures))
    suite.set('errors', str(errors))
    suites.set('tests', str(cases))
    suites.set('failures', str(failures))
    suites.set('errors', str(errors))
    ET.indent(suites)
    return '<?xml version="1.0" encoding="UTF-8"?>\n' + ET.tostring(suites, encoding='unicode') + '\n'


def write_junit(result: RunResult, path: str | pathlib.Path) -> None:
    pathlib.Path(path).write_text(junit_xml(result), encoding='utf-8')
