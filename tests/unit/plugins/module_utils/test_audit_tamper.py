# Copyright (c) Dihya ops maintainers
# GNU General Public License v3.0+ (see LICENSES/GPL-3.0-or-later.txt or https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later

"""1,000 random tamperings of a real audit log, each found on the right line."""

from __future__ import annotations

import collections
import json
import os
import pathlib
import random
import subprocess
import sys

from ansible_collections.dihya.ops.plugins.module_utils._audit import verify
from ansible_collections.dihya.ops.tests.unit.plugins.module_utils.audit_utils import COLLECTIONS, KEY, memory_folder, stop, write

RECORDS = 200
MUTATIONS = 1000


def line_of(data: bytes, offset: int) -> int:
    """The 1-based line holding byte ``offset`` (a newline belongs to the line it ends)."""
    return data.count(b'\n', 0, offset) + 1


def edit_byte(rng, data, lines):
    offset = rng.randrange(len(data))
    new = rng.choice([rng.randrange(256), ord('\n'), ord(' '), ord('0'), ord('"'), ord('}')])
    if new == data[offset]:
        new = (new + 1) % 256
    return data[:offset] + bytes([new]) + data[offset + 1:], line_of(data, offset)


def delete_line(rng, data, lines):
    index = rng.randrange(len(lines))
    return b''.join(lines[:index] + lines[index + 1:]), index + 1


def insert_line(rng, data, lines):
    index = rng.randrange(len(lines) + 1)
    kind = rng.randrange(3)
    if kind == 0:
        # A genuine record copied from elsewhere (not the one that follows, which would just be a duplicate of it).
        source = rng.choice([number for number in range(len(lines)) if number != index])
        new = lines[source]
    elif kind == 1:
        new = b'{"event":{"action":"forged"},"dihya":{"audit":{"seq":%d}}}\n' % (index + 1)
    else:
        new = bytes(rng.choice(b'{}[]":,abc 0123\x00\xff') for dummy in range(rng.randrange(1, 80))) + b'\n'
    return b''.join([*lines[:index], new, *lines[index:]]), index + 1


def swap_lines(rng, data, lines):
    first, second = sorted(rng.sample(range(len(lines)), 2))
    swapped = list(lines)
    swapped[first], swapped[second] = swapped[second], swapped[first]
    return b''.join(swapped), first + 1


def truncate(rng, data, lines):
    offset = rng.randrange(len(data))
    # Cut just before a newline, the record before it is whole: what is missing starts on the next line.
    return data[:offset], line_of(data, offset + 1)


MUTATORS = (edit_byte, delete_line, insert_line, swap_lines, truncate)


def mutations(data, lines):
    """The MUTATIONS tampered copies of ``data``, always the same: (attempt, mutator name, tampered bytes, expected line)."""
    rng = random.Random(20261125)
    for attempt in range(MUTATIONS):
        mutator = MUTATORS[attempt % len(MUTATORS)]
        tampered, expected = mutator(rng, data, lines)
        assert tampered != data
        yield attempt, mutator.__name__, tampered, expected


def verify_share(original, folder, share, shares):
    """Verify the tampered copies ``attempt % shares == share`` of the log ``original``; one result per copy.

    A new file each time: rewriting a file in place makes ext4 flush it to disk on close.
    min_last_seq is the last sequence number known from an earlier verification, which is what reveals a cut end.
    """
    data = pathlib.Path(original).read_bytes()
    lines = data.splitlines(keepends=True)
    path = pathlib.Path(folder) / f'audit-{share}.log'
    results = []
    for attempt, name, tampered, expected in mutations(data, lines):
        if attempt % shares != share:
            continue
        path.unlink(missing_ok=True)
        path.write_bytes(tampered)
        report = verify(str(path), KEY, min_last_seq=RECORDS)
        results.append({'attempt': attempt, 'mutator': name, 'expected': expected, 'ok': report.ok, 'error': report.error,
                        'path': str(path)})
    return results


# The verifications run in SHARES child processes, untraced by coverage and on both cores; the
# parent verifies a few of the same copies itself, so the coverage of the verifier stays measured.
SHARES = 2
IN_PROCESS = 25
CHILD = """
import json, sys
from ansible_collections.dihya.ops.tests.unit.plugins.module_utils import test_audit_tamper as tamper
json.dump(tamper.verify_share(sys.argv[1], sys.argv[2], int(sys.argv[3]), int(sys.argv[4])), sys.stdout)
"""


def same_file(result):
    """``result`` as if every copy had been verified under one name."""
    error = result['error'] and {**result['error'], 'file': None, 'reason': result['error']['reason'].replace(result['path'], 'LOG')}
    return {**result, 'path': None, 'error': error}


def check(result):
    assert not result['ok'], result
    assert result['error']['file'] == result['path'], result
    assert result['error']['line'] == result['expected'], result
    return result['error']['reason'].split(':')[0].split(' (')[0]


def test_random_tampering_is_found_on_the_right_line(tmp_path):
    with memory_folder(tmp_path) as folder:
        original = folder / 'original.log'
        write(original, RECORDS, batch=50)
        data = original.read_bytes()
        assert len(data.splitlines()) == RECORDS and verify(str(original), KEY, min_last_seq=RECORDS).ok

        env = dict(os.environ, PYTHONPATH=COLLECTIONS)
        children = [subprocess.Popen([sys.executable, '-c', CHILD, str(original), str(folder), str(share), str(SHARES)],
                                     env=env, stdout=subprocess.PIPE, text=True) for share in range(SHARES)]
        try:
            # The same copies, verified here too: the child processes must agree with the parent.
            mine = verify_share(original, folder, SHARES, SHARES + IN_PROCESS)
            outputs = [child.communicate(timeout=300)[0] for child in children]
        finally:
            for child in children:
                stop(child)
        assert [child.returncode for child in children] == [0] * SHARES
    results = sorted((result for output in outputs for result in json.loads(output)), key=lambda result: result['attempt'])
    assert [result['attempt'] for result in results] == list(range(MUTATIONS))
    by_attempt = {result['attempt']: same_file(result) for result in results}
    assert mine and all(same_file(result) == by_attempt[result['attempt']] for result in mine)
    assert all(check(result) for result in mine)
    found = collections.Counter(check(result) for result in results)
    assert sum(found.values()) == MUTATIONS
    # Every kind of finding shows up.
    assert {'HMAC mismatch', 'chain broken', 'not a valid audit record', 'not an audit record',
            f'the log ends at seq {RECORDS - 1}, before the expected seq {RECORDS}'} <= set(found) | {
        reason for reason in found if reason.startswith('the log ends')}
