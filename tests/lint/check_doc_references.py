"""Check that what the documentation names in code spans still exists.

Docs point readers at files (``plugins/module_utils/_rgpd_map.py``), at tests
(``tests/unit/.../test_rgpd_safety.py::test_erase_needs_a_ledger``, or a bare
``test_rgpd_safety.py::test_...`` and ``::test_...`` continuing the file named
last) and at symbols of a file (``_safe_write.py``: ``open_dir``).  A file split
or a test renamed leaves such a reference pointing at nothing; this check finds it.

Checked in every Markdown file of the collection (README.md, docs/, role and
test READMEs), inside backtick code spans only:

- a span that looks like a path of this repository (it starts with one of the
  top-level folders, or is a file name with an extension found in the tree) must
  exist; globs (``*``) must match something; ``...`` in a path matches any
  sub-path;
- ``FILE::NAME`` (and ``::NAME`` after it): FILE is found (by path, or by name
  anywhere in the tree, tests first) and defines NAME as a function, a class or
  a method (``Class::method`` too); a trailing ``*`` matches a prefix;
- a name right after a Python file's span (```_x.py`: `name```, ```_x.py`
  (`Class.method`)``) is defined in that file.

Paths outside the repository (``/var/lib/...``, ``~/.ansible``), URLs and
placeholders (``<root>/etc``) are not checked.  Run from the collection root;
exits non-zero and names each broken reference with its file and line.
"""

from __future__ import annotations

import ast
import fnmatch
import pathlib
import re
import subprocess
import sys
from collections.abc import Iterator

ROOT = pathlib.Path.cwd()
TOP_LEVEL = ("plugins/", "roles/", "playbooks/", "inventories/", "tests/", "molecule/", "docs/", "scripts/", "benchmarks/", "awx/",
             "meta/", "changelogs/", "requirements/", ".ci/")
EXTENSIONS = (".py", ".yml", ".yaml", ".md", ".j2", ".sh", ".txt", ".cfg", ".toml", ".ini", ".json")
SPAN = re.compile(r"(?<!`)`([^`\n]+)`(?!`)")
# A reference to tests or symbols of a file: FILE::NAME[::NAME], or ::NAME continuing the previous FILE.
TEST_REF = re.compile(r"^(?P<file>[\w./-]*\.py)?::(?P<names>[\w*]+(?:::[\w*]+)*)$")
FENCE = re.compile(r"^\s*(```|~~~)")
SEPARATOR = re.compile(r"\s*[:,(]\s*")
SYMBOL = re.compile(r"[A-Za-z_]\w*(?:\.[A-Za-z_]\w*)?")


def tracked_files() -> list[pathlib.Path]:
    """Files of the checkout (git ls-files when it is a repository, else a walk without caches)."""
    try:
        out = subprocess.run(["git", "ls-files", "-co", "--exclude-standard"], cwd=ROOT, capture_output=True, text=True,
                             check=True).stdout
        return [pathlib.Path(line) for line in out.splitlines() if line and (ROOT / line).exists()]
    except (OSError, subprocess.CalledProcessError):
        skip = {".git", ".venv", ".cache", "tests/output"}
        return [p.relative_to(ROOT) for p in ROOT.rglob("*")
                if p.is_file() and not any(str(p.relative_to(ROOT)).startswith(s) for s in skip)]


class Tree:
    """What the checkout holds: files by path and by name, and the names each Python file defines."""

    def __init__(self, files: list[pathlib.Path]) -> None:
        self.paths = {str(p) for p in files}
        self.dirs = {str(parent) for p in files for parent in p.parents if str(parent) != "."}
        self.by_name: dict[str, list[str]] = {}
        for p in files:
            self.by_name.setdefault(p.name, []).append(str(p))
        self._defs: dict[str, set[str]] = {}

    def exists(self, path: str) -> bool:
        path = path.rstrip("/")
        if "..." in path:
            pattern = re.escape(path).replace(re.escape("..."), ".*")
            return any(re.fullmatch(pattern, p) for p in self.paths | self.dirs)
        if any(c in path for c in "*?["):
            return any(fnmatch.fnmatchcase(p, path) for p in self.paths | self.dirs)
        return path in self.paths or path in self.dirs

    def resolve(self, name: str) -> list[str]:
        """The files a reference means: its path when it is one, else the files of that name (tests first)."""
        if name in self.paths:
            return [name]
        if "..." in name or "/" in name:
            pattern = re.escape(name).replace(re.escape("..."), ".*")
            return sorted(p for p in self.paths if re.fullmatch(pattern, p) or p.endswith("/" + name))
        found = self.by_name.get(name, [])
        tests = [p for p in found if p.startswith("tests/")]
        return sorted(tests or found)

    def defines(self, path: str) -> set[str]:
        """Functions, classes and Class::method names defined in a Python file (any depth)."""
        if path not in self._defs:
            names: set[str] = set()
            try:
                tree = ast.parse((ROOT / path).read_text(encoding="utf-8"))
            except (OSError, SyntaxError, UnicodeDecodeError):
                tree = ast.Module(body=[], type_ignores=[])
            for node in ast.walk(tree):
                if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef, ast.ClassDef)):
                    names.add(node.name)
                if isinstance(node, ast.ClassDef):
                    names.update(f"{node.name}::{item.name}" for item in node.body
                                 if isinstance(item, (ast.FunctionDef, ast.AsyncFunctionDef, ast.ClassDef)))
                if isinstance(node, (ast.Assign, ast.AnnAssign)):
                    targets = node.targets if isinstance(node, ast.Assign) else [node.target]
                    names.update(t.id for t in targets if isinstance(t, ast.Name))
            self._defs[path] = names
        return self._defs[path]


def spans(text: str) -> Iterator[tuple[int, str, str]]:
    """Code spans of a Markdown text with their line numbers and the span before them on the line, outside fenced blocks.

    The span before is given only when nothing but a colon, a comma or an opening parenthesis separates them.
    """
    fenced = False
    for number, line in enumerate(text.splitlines(), 1):
        if FENCE.match(line):
            fenced = not fenced
            continue
        if not fenced:
            previous: re.Match[str] | None = None
            for match in SPAN.finditer(line):
                adjacent = previous is not None and SEPARATOR.fullmatch(line[previous.end():match.start()]) is not None
                yield number, match.group(1).strip(), previous.group(1).strip() if previous and adjacent else ""
                previous = match


def looks_like_path(span: str, tree: Tree) -> bool:
    if " " in span or span.startswith(("/", "~", "$", "http:", "https:")) or "<" in span or "{" in span or "=" in span:
        return False
    if span.startswith(TOP_LEVEL):
        return True
    # A bare file name counts when a file of that extension could be meant: name.ext with a known extension.
    return "/" not in span and span.endswith(EXTENSIONS) and bool(re.fullmatch(r"[\w.-]+", span)) and span in tree.by_name


def check_file(doc: pathlib.Path, tree: Tree) -> Iterator[str]:
    current: str | None = None
    for line, span, before in spans(doc.read_text(encoding="utf-8")):
        if before.endswith(".py") and SYMBOL.fullmatch(span) and not span.endswith(EXTENSIONS):
            files = tree.resolve(before)
            name = span.replace(".", "::")
            if files and not any(name in tree.defines(f) for f in files):
                yield f"{doc}:{line}: `{span}` is not defined in {', '.join(files)}"
            continue
        ref = TEST_REF.match(span)
        if ref:
            if ref.group("file"):
                current = ref.group("file")
            if current is None:
                yield f"{doc}:{line}: `{span}`: no file named before it"
                continue
            files = tree.resolve(current)
            if not files:
                yield f"{doc}:{line}: `{span}`: no file {current}"
                continue
            names = ref.group("names")
            defined = set().union(*(tree.defines(f) for f in files))
            if not (any(d.startswith(names[:-1]) for d in defined) if names.endswith("*") else names in defined):
                yield f"{doc}:{line}: `{span}`: {names} is not defined in {', '.join(files)}"
            continue
        if looks_like_path(span, tree):
            path = span.split("::", 1)[0].split(":", 1)[0] if span.count(":") else span
            if path.endswith(".py"):
                current = path
            beside = str(doc.parent.relative_to(ROOT) / path)
            if not tree.exists(path) and not tree.exists(beside) and not tree.resolve(path):
                yield f"{doc}:{line}: `{span}`: no such file or folder in the collection"


def main() -> int:
    files = tracked_files()
    tree = Tree(files)
    docs = [p for p in files if p.suffix == ".md" and not str(p).startswith(("changelogs/", "tests/output/", "LICENSES/"))]
    problems = [problem for doc in sorted(docs) for problem in check_file(ROOT / doc, tree)]
    for problem in problems:
        print(str(problem).replace(str(ROOT) + "/", ""))
    if problems:
        print(f"{len(problems)} documentation references point at nothing")
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
