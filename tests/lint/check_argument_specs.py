"""Check that every role's meta/argument_specs.yml matches its defaults.

Each variable in defaults/main.yml must be documented in the ``main`` entry
point with the same default (or, for a templated list of dicts that the docs
schema cannot hold, with the variables it reads named in its description), and every
documented option must have a default (or be marked required).  Booleans are typed: an option
with a boolean default is ``type: bool`` (so role validation refuses ``-e NAME=maybe``), and a
``type: bool`` option has a real boolean default on both sides (not the string ``"false"``);
tests/lint/check_role_booleans.py then checks that each of them is read through ``| bool``.
Run from the collection root; exits non-zero and names each drift.
"""

from __future__ import annotations

import pathlib
import re
import sys
import typing as t

import yaml


def _documented_default(spec: dict[str, t.Any], default: object) -> bool:
    """A templated default that the docs schema cannot hold (a list of dicts) may be described instead.

    The description must then name, as C(...), every variable the default reads.
    Descriptions are templated by Ansible, so they cannot quote the expression itself.
    """
    description = spec.get("description", "")
    text = " ".join(description) if isinstance(description, list) else str(description)
    if not isinstance(default, str) or "{{" not in default:
        return False
    names = re.findall(r"\b(dihya_[a-z0-9_]+)\b", default)
    return bool(names) and all(f"C({name})" in text for name in names)


def check_role(role: pathlib.Path) -> list[str]:
    """Return the drifts found in one role."""
    problems: list[str] = []
    specs_file = role / "meta" / "argument_specs.yml"
    defaults_file = role / "defaults" / "main.yml"
    if not specs_file.is_file():
        return [f"{role.name}: meta/argument_specs.yml is missing"]
    defaults = yaml.safe_load(defaults_file.read_text()) or {} if defaults_file.is_file() else {}
    options = yaml.safe_load(specs_file.read_text())["argument_specs"]["main"].get("options", {})
    for name in sorted(set(defaults) - set(options)):
        problems.append(f"{role.name}: default {name} is not documented in argument_specs")
    for name, spec in sorted(options.items()):
        if not name.startswith(role.name.lstrip("_") + "_"):
            problems.append(f"{role.name}: option {name} lacks the role prefix")
        if name not in defaults:
            if not spec.get("required"):
                problems.append(f"{role.name}: option {name} has no default and is not required")
        elif "default" not in spec and _documented_default(spec, defaults[name]):
            continue
        elif spec.get("default") != defaults[name]:
            problems.append(f"{role.name}: default of {name} differs: defaults {defaults[name]!r} vs spec {spec.get('default')!r}")
        problems.extend(_boolean_drifts(role.name, name, spec, defaults))
    return problems


def _boolean_drifts(role: str, name: str, spec: dict[str, t.Any], defaults: dict[str, t.Any]) -> list[str]:
    """A boolean option is typed bool and its defaults are booleans, not strings that look like them."""
    problems: list[str] = []
    boolean_default = isinstance(spec.get("default"), bool) or isinstance(defaults.get(name), bool)
    if boolean_default and spec.get("type") != "bool":
        problems.append(f"{role}: option {name} has a boolean default but is not type: bool")
    if spec.get("type") == "bool":
        for side, value in (("spec", spec.get("default")), ("defaults", defaults.get(name))):
            if value is not None and not isinstance(value, bool):
                problems.append(f"{role}: default of boolean {name} in {side} is {value!r}, not true or false")
    return problems


def main() -> int:
    roles = sorted(p for p in pathlib.Path("roles").iterdir() if p.is_dir())
    roles += sorted(p for p in pathlib.Path("tests/demo_backend/roles").glob("*") if p.is_dir())
    problems = [problem for role in roles for problem in check_role(role)]
    for problem in problems:
        print(problem)
    print(f"argument_specs: {len(roles)} roles checked, {len(problems)} drifts")
    return 1 if problems else 0


if __name__ == "__main__":
    sys.exit(main())
