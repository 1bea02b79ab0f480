# Copyright (c) Dihya ops maintainers
# GNU General Public License v3.0+ (see LICENSES/GPL-3.0-or-later.txt or https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later

# This plugin utility is PRIVATE to the collection. It can change at any time.

"""Vault values in the texts the audit callback records: finding them, whole, in part or encoded, and withholding those texts.

The callback records task and play names and failure messages. Any of them may show a value decrypted
from Ansible Vault; :class:`SecretFilter` recognises such a value (see its documentation for what is
caught), :func:`vault_plaintexts` gathers the values the run knows, and :func:`safe_message` turns a
failure message into what may be recorded.
"""

from __future__ import annotations

import base64
import binascii
import contextlib
import functools
import json
import typing as t
from urllib.parse import quote, quote_plus

from ansible.module_utils.common.text.converters import to_text
from ansible.parsing.vault import EncryptedString, VaultHelper, is_encrypted_file

MSG_LIMIT = 512
SECRET_MIN_LENGTH = 4
# A Vault value at least this long is withheld when any run of this many of its characters shows, or a common encoding of such a run.
SECRET_WINDOW = 8
SEEN_LIMIT = 4096
WITHHELD = "(message withheld: it contains a Vault value)"


def safe_message(message: t.Any, secrets: SecretFilter | t.Iterable[str], limit: int = MSG_LIMIT) -> str | None:
    """The failure message as text, truncated, or WITHHELD when a known Vault value (or a part or an encoding of one) appears in it."""
    if message is None:
        return None
    if VaultHelper.get_ciphertext(message, with_tags=False) is not None:
        return WITHHELD
    text = message if isinstance(message, str) else to_text(message, errors="surrogate_or_replace")
    shown = text if len(text) <= limit else text[:limit - 3] + "..."
    # Only what is recorded matters; the margin covers an encoded run that the cut would split.
    if contains_secret(text[:limit + 4 * SECRET_WINDOW], secrets):
        return WITHHELD
    return shown


class SecretFilter:
    """Finds Vault values, whole or in part, plain or encoded, in a text. Built once per set of values.

    For a value of at least SECRET_WINDOW characters, a text is caught when it contains any run of SECRET_WINDOW
    characters of the value, or of the value reversed, in any letter case (upper, lower, swapped: compared case-folded),
    JSON-escaped, Python-escaped (repr) or URL-encoded; any run of 2 * SECRET_WINDOW hexadecimal digits (either case) of
    its UTF-8 bytes; or any run of SECRET_WINDOW characters of its base64 encoding (standard or URL-safe, padding or
    not) starting at any of the 3 byte alignments, which is what the base64 of any slice of it, alone or inside a longer
    text (``user:secret``), contains. A shorter value is caught only whole: the value itself, or its base64, hex, JSON,
    URL encoding of the whole value. Everything is computed once per value; a search is one pass over the text per
    window length, with set look-ups.
    """

    def __init__(self, secrets: t.Iterable[str]) -> None:
        folded: set[str] = set()
        hexed: set[str] = set()
        based: set[str] = set()
        exact: set[str] = set()
        for secret in secrets:
            patterns = _secret_patterns(secret)
            folded |= patterns[0]
            hexed |= patterns[1]
            based |= patterns[2]
            exact |= patterns[3]
        self._folded = frozenset(folded)
        self._hexed = frozenset(hexed)
        self._based = frozenset(based)
        self._exact = tuple(sorted(exact, key=len))
        # Task names come back for every host: remember the answers for the texts seen last.
        self._seen: dict[str, bool] = {}

    def search(self, text: str) -> bool:
        """Whether ``text`` shows a Vault value (or a part or an encoding of one)."""
        if not text:
            return False
        found = self._seen.get(text)
        if found is None:
            found = self._search(text)
            if len(self._seen) >= SEEN_LIMIT:
                self._seen.clear()
            self._seen[text] = found
        return found

    def _search(self, text: str) -> bool:
        if any(value in text for value in self._exact):
            return True
        if not self._folded or len(text) < SECRET_WINDOW:
            return False
        if _any_window(text, SECRET_WINDOW, self._based):
            return True
        folded_text = text.casefold()
        return _any_window(folded_text, SECRET_WINDOW, self._folded) or _any_window(folded_text, 2 * SECRET_WINDOW, self._hexed)


def _any_window(text: str, width: int, windows: frozenset[str]) -> bool:
    """Whether one of the ``width``-character slices of ``text`` is in ``windows`` (the loop runs in C: map, slice, isdisjoint)."""
    count = len(text) - width + 1
    if count <= 0 or not windows:
        return False
    return not windows.isdisjoint(map(text.__getitem__, map(slice, range(count), range(width, width + count))))


def _windows(text: str, width: int) -> set[str]:
    return {text[start:start + width] for start in range(len(text) - width + 1)}


def _text_forms(secret: str) -> list[str]:
    """The value as it may be written in a text: plain, escaped for JSON, Python or a URL."""
    forms = [secret, json.dumps(secret)[1:-1], json.dumps(secret, ensure_ascii=False)[1:-1], repr(secret)[1:-1]]
    for encode in (functools.partial(quote, safe=""), quote, quote_plus):
        with contextlib.suppress(UnicodeEncodeError, TypeError):
            forms.append(encode(secret))
    return forms


def _base64_forms(data: bytes) -> list[str]:
    forms = []
    for encoded in (base64.b64encode(data), base64.urlsafe_b64encode(data)):
        forms.append(encoded.decode("ascii").rstrip("="))
    return forms


@functools.lru_cache(maxsize=4096)
def _secret_patterns(secret: str) -> tuple[frozenset[str], frozenset[str], frozenset[str], frozenset[str]]:
    """(case-folded text windows, case-folded hex windows, base64 windows, exact forms) of one Vault value."""
    data = secret.encode("utf-8", "surrogatepass")
    if len(secret) < SECRET_WINDOW:
        exact = {form for form in _text_forms(secret) if form}
        exact.update(_base64_forms(data))
        exact.update((binascii.hexlify(data).decode("ascii"), binascii.hexlify(data).decode("ascii").upper()))
        return frozenset(), frozenset(), frozenset(), frozenset(exact)
    folded: set[str] = set()
    for form in _text_forms(secret) + _text_forms(secret[::-1]):
        folded |= _windows(form.casefold(), SECRET_WINDOW)
    hexed = _windows(binascii.hexlify(data).decode("ascii"), 2 * SECRET_WINDOW)
    based: set[str] = set()
    for alignment in range(3):
        shifted = data[alignment:]
        whole = len(shifted) - len(shifted) % 3  # the last, partial group depends on what follows
        for form in _base64_forms(shifted[:whole]):
            based |= _windows(form, SECRET_WINDOW)
    return frozenset(folded), frozenset(hexed), frozenset(based), frozenset()


@functools.lru_cache(maxsize=16)
def filter_of(secrets: frozenset[str]) -> SecretFilter:
    """The :class:`SecretFilter` of ``secrets``, built once for the last few sets of values."""
    return SecretFilter(secrets)


def contains_secret(text: str, secrets: SecretFilter | t.Iterable[str]) -> bool:
    """Whether ``text`` shows one of ``secrets`` (Vault values), whole or in part, plain or encoded (see SecretFilter)."""
    matcher = secrets if isinstance(secrets, SecretFilter) else filter_of(frozenset(secrets))
    return matcher.search(text)


def vault_plaintexts(file_cache: t.Mapping[str, t.Any], extra_sources: t.Iterable[t.Any] = ()) -> frozenset[str]:
    """Decrypted Vault values known to the run.

    Every string of a file that is Vault-encrypted as a whole (the loader's cache keeps its parsed content), and every inline
    C(!vault) value in the cached files and in ``extra_sources`` (inventory variables). Strings shorter than SECRET_MIN_LENGTH
    are not kept: they would match ordinary words.
    """
    found: set[str] = set()
    for path, data in file_cache.items():
        _collect(data, found, everything=_encrypted_file(path))
    for data in extra_sources:
        _collect(data, found, everything=False)
    return frozenset(secret for secret in found if len(secret) >= SECRET_MIN_LENGTH)


def _collect(data: t.Any, found: set[str], everything: bool, depth: int = 0) -> None:
    if depth > 64:
        return
    if isinstance(data, EncryptedString):
        # An undecryptable value is no plaintext to hide.
        with contextlib.suppress(Exception):  # pylint: disable=broad-exception-caught
            found.add(str(data))
    elif isinstance(data, str):
        if everything:
            found.add(str(data))
    elif isinstance(data, t.Mapping):
        for value in data.values():
            _collect(value, found, everything, depth + 1)
    elif isinstance(data, (list, tuple, set, frozenset)):
        for value in data:
            _collect(value, found, everything, depth + 1)


def _encrypted_file(path: str) -> bool:
    try:
        with open(path, "rb") as handle:
            return bool(is_encrypted_file(handle))
    except (OSError, TypeError):
        return False
