"""The built collection: what its tarball ships, and that Galaxy's importer accepts it.

The tarball holds what a user of the installed collection needs (plugins, roles, playbooks,
docs, meta, the example inventory, README, LICENSES, the changelog) and nothing of the
checkout's own tooling: no tests, demo inventory and its demo secrets, lint or test
configuration, pins or scripts.  galaxy.yml's build_ignore decides; ``ALLOWED`` below is the
allow-list every file of the tarball must match, and every shippable file of the checkout
must be in it.

galaxy-importer (pinned in requirements/galaxy-importer.txt, in the virtual environment
scripts/bootstrap.sh test makes for it) then imports the tarball as Galaxy would, with its
ansible-lint step, offline: any warning or error it logs fails the test.  Needs no fleet.
"""

from __future__ import annotations

import json
import os
import pathlib
import re
import subprocess
import tarfile

import pytest
import yaml

from ansible_collections.dihya.ops.tests.support.fleet import BIN, ROOT, run

IMPORTER_VENV = pathlib.Path(os.environ.get("DIHYA_IMPORTER_VENV", ROOT / ".cache" / "galaxy-importer-venv"))

# Every file of the tarball matches one of these (full match, POSIX paths).
_SEGMENT = r"[^/]+"
_ANY_DIRS = rf"(?:{_SEGMENT}/)*"
ALLOWED = tuple(re.compile(pattern) for pattern in (
    r"MANIFEST\.json",
    r"FILES\.json",
    r"README\.md",
    rf"LICENSES/{_SEGMENT}\.txt",
    r"meta/runtime\.yml",
    r"changelogs/changelog\.yaml",
    rf"plugins/(?:action|callback|doc_fragments|filter|lookup|module_utils|modules|plugin_utils|test)/{_ANY_DIRS}{_SEGMENT}\.py",
    rf"plugins/(?:filter|test)/{_SEGMENT}\.ya?ml",
    rf"roles/{_SEGMENT}/README\.md",
    rf"roles/{_SEGMENT}/meta/(?:main|argument_specs)\.yml",
    rf"roles/{_SEGMENT}/(?:defaults|vars|tasks|handlers)/{_SEGMENT}\.yml",
    rf"roles/{_SEGMENT}/templates/{_ANY_DIRS}{_SEGMENT}\.j2",
    rf"roles/{_SEGMENT}/files/{_ANY_DIRS}{_SEGMENT}",
    rf"playbooks/{_SEGMENT}\.yml",
    rf"docs/{_ANY_DIRS}{_SEGMENT}\.md",
    rf"docs/examples/{_SEGMENT}\.(?:ya?ml|json)",
    r"inventories/example/README\.md",
    rf"inventories/example/{_ANY_DIRS}{_SEGMENT}\.yml",
))

# Files the tarball must hold whatever else changes.
REQUIRED = (
    "README.md", "LICENSES/GPL-3.0-or-later.txt", "meta/runtime.yml", "changelogs/changelog.yaml",
    "plugins/modules/rgpd.py", "plugins/modules/health_check.py", "plugins/callback/audit.py",
    "playbooks/check_health.yml", "playbooks/restart_services.yml", "inventories/example/hosts.yml",
)

# Parts of the checkout that ship whole (less caches), and single files that ship.
SHIPPED_TREES = ("plugins", "roles", "playbooks", "docs", "meta", "LICENSES", "inventories/example")
SHIPPED_FILES = ("README.md", "changelogs/changelog.yaml")
# Files of those trees that stay out (galaxy.yml's build_ignore): the execution environment's definition.
LEFT_OUT_FILES = ("meta/execution-environment.yml",)

ROLES = sorted(path.name for path in (ROOT / "roles").iterdir() if (path / "tasks" / "main.yml").is_file())


def _is_cache(relative: pathlib.PurePosixPath) -> bool:
    return any(part.startswith(".") or part == "__pycache__" for part in relative.parts) or relative.suffix == ".pyc"


def shippable_files() -> set[str]:
    """Files of the checkout that the tarball must hold."""
    found = set(SHIPPED_FILES)
    for tree in SHIPPED_TREES:
        for path in (ROOT / tree).rglob("*"):
            relative = pathlib.PurePosixPath(path.relative_to(ROOT).as_posix())
            if path.is_file() and not _is_cache(relative) and str(relative) not in LEFT_OUT_FILES:
                found.add(str(relative))
    return found


@pytest.fixture(scope="module")
def tarball(tmp_path_factory: pytest.TempPathFactory) -> pathlib.Path:
    out = tmp_path_factory.mktemp("build")
    env = dict(os.environ, ANSIBLE_NOCOLOR="1", ANSIBLE_FORCE_COLOR="0")
    build = run([str(BIN / "ansible-galaxy"), "collection", "build", "--output-path", str(out)], env=env, timeout=300)
    assert build.returncode == 0, build.stdout + build.stderr
    (built,) = out.glob("dihya-ops-*.tar.gz")
    return built


@pytest.fixture(scope="module")
def members(tarball: pathlib.Path) -> dict[str, tarfile.TarInfo]:
    with tarfile.open(tarball) as archive:
        return {member.name.removeprefix("./"): member for member in archive.getmembers()}


def test_tarball_ships_only_allowed_files(members):
    files = sorted(name for name, member in members.items() if not member.isdir())
    unexpected = [name for name in files if not any(pattern.fullmatch(name) for pattern in ALLOWED)]
    assert not unexpected, f"files outside the allow-list of the built collection (see galaxy.yml build_ignore): {unexpected}"
    odd = [name for name, member in members.items() if not (member.isfile() or member.isdir())]
    assert not odd, f"links or special files in the built collection: {odd}"


def test_tarball_leaves_out_the_checkouts_tooling_and_demo_secrets(members):
    left_out = ("tests/", "benchmarks/", "molecule/", "scripts/", "requirements/", "inventories/local/", "changelogs/fragments/",
                ".ci/", ".cache/", ".venv/", "awx/")
    assert not [name for name in members if name.startswith(left_out)]
    for name in ("ansible.cfg", "pytest.ini", "pyproject.toml", ".ansible-lint", ".yamllint", "bindep.txt", "galaxy.yml",
                 "changelogs/config.yaml", *LEFT_OUT_FILES):
        assert name not in members, name
    assert not [name for name in members if name.endswith(("demo-vault-password", ".vault"))]


def test_tarball_holds_every_shippable_file_of_the_checkout(members):
    missing = sorted((set(REQUIRED) | shippable_files() | {f"roles/{role}/README.md" for role in ROLES}) - set(members))
    assert not missing, f"files missing from the built collection: {missing}"
    assert len(ROLES) >= 7, ROLES


@pytest.mark.parametrize("role", ROLES)
def test_role_readme_documents_every_variable(role):
    readme = (ROOT / "roles" / role / "README.md").read_text(encoding="utf-8")
    spec = yaml.safe_load((ROOT / "roles" / role / "meta" / "argument_specs.yml").read_text(encoding="utf-8"))
    options = spec["argument_specs"]["main"].get("options", {})
    undocumented = [name for name in options if f"`{name}`" not in readme]
    assert not undocumented, f"roles/{role}/README.md does not describe {undocumented} (meta/argument_specs.yml)"
    assert f"role: dihya.ops.{role}" in readme, "the example playbook calls the role by its FQCN"
    for heading in ("## Variables", "## Example playbook", "## Check mode", "## License"):
        assert heading in readme, heading


@pytest.mark.parametrize("role", ROLES)
def test_role_readme_example_playbook_is_valid(role, tmp_path):
    readme = (ROOT / "roles" / role / "README.md").read_text(encoding="utf-8")
    example = re.search(r"^```yaml\n(.*?)^```$", readme, re.S | re.M)
    assert example, f"roles/{role}/README.md has no example playbook"
    playbook = tmp_path / "example.yml"
    playbook.write_text("---\n" + example.group(1), encoding="utf-8")
    env = dict(os.environ, ANSIBLE_NOCOLOR="1", ANSIBLE_FORCE_COLOR="0")
    proc = run([str(BIN / "ansible-playbook"), "--syntax-check", "-i", str(ROOT / "inventories" / "example" / "hosts.yml"), str(playbook)],
               env=env, timeout=120)
    assert proc.returncode == 0, proc.stdout + proc.stderr


IMPORTER_CONFIG = """\
[galaxy-importer]
log_level_main = INFO
run_ansible_doc = True
run_ansible_lint = True
offline_ansible_lint = True
run_ansible_test = False
run_flake8 = False
check_required_tags = True
check_changelog = True
require_v1_or_greater = False
ansible_local_tmp = {tmp}/ansible
tmp_root_dir = {tmp}
"""


def test_galaxy_importer_accepts_the_tarball_with_ansible_lint(tarball, tmp_path):
    python = IMPORTER_VENV / "bin" / "python"
    assert python.is_file(), f"galaxy-importer is not installed in {IMPORTER_VENV}: run scripts/bootstrap.sh test"
    (tmp_path / "tmp").mkdir()
    (tmp_path / "home").mkdir()
    config = tmp_path / "galaxy-importer.cfg"
    config.write_text(IMPORTER_CONFIG.format(tmp=tmp_path / "tmp"), encoding="utf-8")
    # A clean environment: the importer's own ansible-lint and ansible-doc first on PATH, nothing of the
    # checkout's (no ANSIBLE_CONFIG, no collections path), and no network: a proxy nobody listens on.
    env = {
        "HOME": str(tmp_path / "home"),
        "PATH": f"{IMPORTER_VENV / 'bin'}:/usr/local/bin:/usr/bin:/bin",
        "LANG": "C.UTF-8",
        "TMPDIR": str(tmp_path / "tmp"),
        "GALAXY_IMPORTER_CONFIG": str(config),
        "http_proxy": "http://127.0.0.1:9", "https_proxy": "http://127.0.0.1:9",
        "HTTP_PROXY": "http://127.0.0.1:9", "HTTPS_PROXY": "http://127.0.0.1:9", "no_proxy": "", "NO_PROXY": "",
        "ANSIBLE_NOCOLOR": "1", "NO_COLOR": "1",
    }
    # Not conftest's run(): that one works in the checkout, and the importer must not see it.
    proc = subprocess.run([str(python), "-m", "galaxy_importer.main", str(tarball)], cwd=tmp_path, env=env,
                          capture_output=True, text=True, timeout=900, check=False)
    output = proc.stdout + proc.stderr
    assert proc.returncode == 0, output
    assert "Traceback" not in output, output
    assert "Importer processing completed successfully" in proc.stdout, output
    # The lint step ran, with the importer's ansible-lint, and found nothing.
    assert "Linting collection via ansible-lint" in proc.stdout and "...ansible-lint run complete" in proc.stdout, output
    assert "ansible-lint not found" not in output and "ansible-doc not found" not in output, output
    problems = [line for line in proc.stdout.splitlines() if line.startswith(("WARNING:", "ERROR:", "CRITICAL:"))]
    assert not problems, "\n".join(problems)

    result = json.loads((tmp_path / "importer_result.json").read_text(encoding="utf-8"))
    runtime = yaml.safe_load((ROOT / "meta" / "runtime.yml").read_text(encoding="utf-8"))
    assert result["requires_ansible"] == runtime["requires_ansible"]
    roles = {item["content_name"]: item for item in result["docs_blob"]["contents"] if item["content_type"] == "role"}
    assert sorted(roles) == ROLES
    assert all(item["readme_file"] == "README.md" and item["readme_html"] for item in roles.values()), roles.keys()
    contents = {(item["content_type"], item["name"]) for item in result["contents"]}
    assert {("module", "rgpd"), ("module", "health_check"), ("callback", "audit"), ("playbook", "check_health.yml")} <= contents
