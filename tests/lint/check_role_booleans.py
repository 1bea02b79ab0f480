"""Check that every boolean role variable is read through ``| bool``.

A variable given on the command line as ``-e NAME=false`` is the string ``'false'``:
role argument validation accepts it as a boolean but does not convert the variable,
so ``{% if NAME %}`` in a template is true and ``NAME`` passed as a module argument
or an ``include_role`` variable stays a string.  Every read of a boolean variable must
therefore go through the ``bool`` filter (``NAME | bool``, or ``NAME | default(x) | bool``).

The boolean variables are the options of ``type: bool`` of every entry point of every
role's ``meta/argument_specs.yml``, and the boolean values of ``defaults/main.yml``.
Scanned: tasks, handlers, vars and defaults of every role, its templates, the
playbooks, and the demo fleet's and Molecule's playbooks.  In YAML, the values of ``when``, ``changed_when``, ``failed_when``, ``until``
and ``that`` are bare Jinja expressions; every other string is a template.  Expressions
are parsed with Jinja2 (not matched with regular expressions), so ``not NAME``,
``NAME and other``, ``a if NAME else b``, ``{{ NAME }}`` and ``{% if NAME %}`` are all
found.  Reads that are not uses of the value (``NAME is defined``) are allowed.

Run from the collection root; exits non-zero and names each unconverted read with its
file and line.
"""

from __future__ import annotations

import pathlib
import sys
from collections.abc import Iterable, Iterator

import jinja2
from jinja2 import nodes
import yaml

# Keys whose value is a bare Jinja expression (or a list of them) rather than a template.
CONDITIONAL_KEYS = frozenset(("when", "changed_when", "failed_when", "until", "that"))
# Filters that may sit between a variable and ``bool`` (they do not read the value as a truth).
PASS_THROUGH_FILTERS = frozenset(("default", "d"))
# Tests that look at a variable without reading its truth.
HARMLESS_TESTS = frozenset(("defined", "undefined", "none", "boolean", "string"))
YAML_GLOBS = ("tasks/**/*.yml", "tasks/**/*.yaml", "handlers/**/*.yml", "vars/**/*.yml", "defaults/**/*.yml")
TEMPLATE_GLOBS = ("templates/**/*.j2",)

_ENV = jinja2.Environment(extensions=["jinja2.ext.do", "jinja2.ext.loopcontrols"])


def role_dirs(root: pathlib.Path) -> list[pathlib.Path]:
    roles = sorted(p for p in (root / "roles").glob("*") if p.is_dir())
    roles += sorted(p for p in (root / "tests" / "demo_backend" / "roles").glob("*") if p.is_dir())
    return roles


def boolean_variables(roles: Iterable[pathlib.Path]) -> dict[str, str]:
    """Boolean variable name -> role that declares it (argument_specs ``type: bool``, or a boolean default)."""
    found: dict[str, str] = {}
    for role in roles:
        specs = role / "meta" / "argument_specs.yml"
        if specs.is_file():
            data = yaml.safe_load(specs.read_text(encoding="utf-8")) or {}
            for entry in (data.get("argument_specs") or {}).values():
                for name, spec in ((entry or {}).get("options") or {}).items():
                    if isinstance(spec, dict) and spec.get("type") == "bool":
                        found[name] = role.name
        defaults = role / "defaults" / "main.yml"
        if defaults.is_file():
            for name, value in (yaml.safe_load(defaults.read_text(encoding="utf-8")) or {}).items():
                if isinstance(value, bool):
                    found[name] = role.name
    return found


def _parents(node: nodes.Node, parent: nodes.Node | None = None) -> Iterator[tuple[nodes.Node, nodes.Node | None]]:
    yield node, parent
    for child in node.iter_child_nodes():
        yield from _parents(child, node)


def unconverted(source: str, names: set[str] | frozenset[str]) -> list[tuple[str, int]]:
    """(name, line in ``source``) of each read of a boolean variable without ``| bool`` in a Jinja template.

    Raises ``jinja2.TemplateSyntaxError`` when the source does not parse.
    """
    tree = _ENV.parse(source)
    parent_of: dict[int, nodes.Node | None] = {}
    wanted: list[nodes.Name] = []
    for node, parent in _parents(tree):
        parent_of[id(node)] = parent
        if isinstance(node, nodes.Name) and node.ctx == "load" and node.name in names:
            wanted.append(node)
    bad = []
    for name_node in wanted:
        current: nodes.Node = name_node
        parent = parent_of[id(current)]
        # Climb through default() filters applied to the variable itself.
        while isinstance(parent, nodes.Filter) and parent.node is current and parent.name in PASS_THROUGH_FILTERS:
            current, parent = parent, parent_of[id(parent)]
        if isinstance(parent, nodes.Filter) and parent.node is current and parent.name == "bool":
            continue
        if isinstance(parent, nodes.Test) and parent.node is current and parent.name in HARMLESS_TESTS:
            continue
        bad.append((name_node.name, name_node.lineno))
    return bad


def _scalar_sources(node: yaml.Node, key: str | None = None) -> Iterator[tuple[int, str]]:
    """(line, Jinja source) of every string of a composed YAML document."""
    if isinstance(node, yaml.MappingNode):
        for key_node, value_node in node.value:
            yield from _scalar_sources(value_node, key_node.value if isinstance(key_node, yaml.ScalarNode) else None)
    elif isinstance(node, yaml.SequenceNode):
        for item in node.value:
            yield from _scalar_sources(item, key)
    elif isinstance(node, yaml.ScalarNode) and isinstance(node.value, str) and node.tag == "tag:yaml.org,2002:str":
        line = node.start_mark.line + 1
        if key in CONDITIONAL_KEYS and "{{" not in node.value and "{%" not in node.value:
            yield line, "{{ " + node.value + " }}"
        elif "{{" in node.value or "{%" in node.value:
            yield line, node.value


def check_yaml(path: pathlib.Path, names: set[str], root: pathlib.Path) -> list[str]:
    problems: list[str] = []
    try:
        # Composing only: tags such as !vault need no constructor.
        documents = list(yaml.compose_all(path.read_text(encoding="utf-8"), Loader=yaml.SafeLoader))
    except yaml.YAMLError as exc:
        return [f"{path.relative_to(root)}: not valid YAML: {exc}"]
    for document in documents:
        if document is None:
            continue
        for line, source in _scalar_sources(document):
            problems.extend(_check_source(path, line, source, names, root))
    return problems


def check_template(path: pathlib.Path, names: set[str], root: pathlib.Path) -> list[str]:
    return _check_source(path, None, path.read_text(encoding="utf-8"), names, root)


def _check_source(path: pathlib.Path, line: int | None, source: str, names: set[str], root: pathlib.Path) -> list[str]:
    start = line or 1
    try:
        bad = unconverted(source, names)
    except jinja2.TemplateSyntaxError as exc:
        return [f"{path.relative_to(root)}:{start}: Jinja does not parse ({exc.message}); cannot check its booleans"]
    return [f"{path.relative_to(root)}:{start + lineno - 1}: boolean variable {name} is read without '| bool'"
            f" ('-e {name}=false' would be a true string)" for name, lineno in dict.fromkeys(bad)]


def files_to_check(root: pathlib.Path, roles: Iterable[pathlib.Path]) -> tuple[list[pathlib.Path], list[pathlib.Path]]:
    yaml_files: list[pathlib.Path] = []
    templates: list[pathlib.Path] = []
    for role in roles:
        for pattern in YAML_GLOBS:
            yaml_files.extend(sorted(role.glob(pattern)))
        for pattern in TEMPLATE_GLOBS:
            templates.extend(sorted(role.glob(pattern)))
    for pattern in ("playbooks/*.yml", "tests/demo_backend/*.yml", "molecule/*/*.yml"):
        yaml_files.extend(sorted(root.glob(pattern)))
    return list(dict.fromkeys(yaml_files)), list(dict.fromkeys(templates))


def check(root: pathlib.Path) -> tuple[dict[str, str], int, list[str]]:
    roles = role_dirs(root)
    names = boolean_variables(roles)
    yaml_files, templates = files_to_check(root, roles)
    problems: list[str] = []
    for path in yaml_files:
        problems.extend(check_yaml(path, set(names), root))
    for path in templates:
        problems.extend(check_template(path, set(names), root))
    return names, len(yaml_files) + len(templates), problems


def main() -> int:
    names, count, problems = check(pathlib.Path.cwd())
    for problem in problems:
        print(problem)
    print(f"role booleans: {len(names)} boolean variables, {count} files checked, {len(problems)} unconverted reads")
    return 1 if problems else 0


if __name__ == "__main__":
    sys.exit(main())
