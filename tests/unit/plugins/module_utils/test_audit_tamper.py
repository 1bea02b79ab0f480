# Copyright (c) Dihya ops maintainers
# GNU General Public License v3.0+ (see LICENSES/GPL-3.0-or-later.txt or https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later

"""1,000 random tamperings of a real audit log, each found on the right line."""

from __future__ import annotations

import collections
import random

from ansible_collections.dihya.ops.plugins.module_utils._audit import verify
from ansible_collections.dihya.ops.tests.unit.plugins.module_utils.audit_utils import KEY, write

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
    return b''.join(lines[:index] + [new] + lines[index:]), index + 1


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


def test_random_tampering_is_found_on_the_right_line(tmp_path):
    original = tmp_path / 'original.log'
    write(original, RECORDS, batch=50)
    data = original.read_bytes()
    lines = data.splitlines(keepends=True)
    assert len(lines) == RECORDS and verify(str(original), KEY, min_last_seq=RECORDS).ok

    rng = random.Random(20261125)
    path = tmp_path / 'audit.log'
    found = collections.Counter()
    for attempt in range(MUTATIONS):
        mutator = MUTATORS[attempt % len(MUTATORS)]
        tampered, expected = mutator(rng, data, lines)
        assert tampered != data
        path.write_bytes(tampered)
        # min_last_seq: the last sequence number known from an earlier verification, which is what reveals a cut end.
        report = verify(str(path), KEY, min_last_seq=RECORDS)
        assert not report.ok, (attempt, mutator.__name__, expected)
        assert report.error['file'] == str(path)
        assert report.error['line'] == expected, (attempt, mutator.__name__, report.error)
        found[report.error['reason'].split(':')[0].split(' (')[0]] += 1
    assert sum(found.values()) == MUTATIONS
    # Every kind of finding shows up.
    assert {'HMAC mismatch', 'chain broken', 'not a valid audit record', 'not an audit record',
            'the log ends at seq %d, before the expected seq %d' % (RECORDS - 1, RECORDS)} <= set(found) | {
        reason for reason in found if reason.startswith('the log ends')}
