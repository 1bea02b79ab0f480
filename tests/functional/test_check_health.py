"""The check_health playbook and the health_check module against the real fleet."""

from __future__ import annotations

import json
import shutil
import stat
import subprocess
import pathlib
import sys
import typing as t

import pytest

from ansible_collections.dihya.ops.tests.support.fleet import BIN, HOSTS, ROOT, run
from ansible_collections.dihya.ops.tests.support.login_page import login_page_server

if t.TYPE_CHECKING:
    from ansible_collections.dihya.ops.tests.support.fleet import Fleet


def promtool_check(path: pathlib.Path) -> subprocess.CompletedProcess[str]:
    promtool = shutil.which("promtool")
    assert promtool, "promtool is missing: install the Debian package 'prometheus' (bindep.txt)"
    with open(path, "rb") as metrics:
        return subprocess.run([promtool, "check", "metrics"], stdin=metrics, capture_output=True, text=True, check=False)


@pytest.fixture(scope="module")
def login_url() -> t.Iterator[str]:
    """The URL of a login page served on loopback by a real HTTP server of this process."""
    with login_page_server() as base:
        yield f"{base}/login"


def html_app(tmp_path: pathlib.Path, login_url: str) -> tuple[pathlib.Path, pathlib.Path]:
    """An inventory of one host described only by documented model variables (no JSON health field), and a playbook
    running the check_health role on it; return the playbook and the (missing) metrics folder."""
    root = tmp_path / "html-app"
    root.mkdir()
    metrics = root / "var" / "metrics"
    (tmp_path / "hosts.yml").write_text(json.dumps({"dihya_backend": {"hosts": {"html-app": {
        "ansible_connection": "local",
        "ansible_python_interpreter": sys.executable,
        "dihya_backend_root": str(root),
        "dihya_backend_health_url": login_url,
        "dihya_backend_metrics_dir": str(metrics),
    }}}}))
    playbook = tmp_path / "check.yml"
    playbook.write_text("- name: Check the HTML app\n  hosts: dihya_backend\n  gather_facts: false\n"
                        "  roles:\n    - role: dihya.ops.check_health\n")
    return playbook, metrics


def words(text: str) -> str:
    """The output with its line wrapping undone."""
    return " ".join(text.split())


def test_an_html_health_page_is_healthy_with_the_defaults(fleet: Fleet, tmp_path: pathlib.Path, login_url: str) -> None:
    playbook, metrics = html_app(tmp_path, login_url)
    inventory = str(tmp_path / "hosts.yml")
    # Check mode: healthy, says it would create the metrics folder, and creates nothing.
    checked = fleet.playbook("-i", inventory, str(playbook), "--check")
    assert checked.returncode == 0, checked.stdout + checked.stderr
    assert f"2/2 checks healthy; the metrics folder {metrics} would be created" in words(checked.stdout), checked.stdout
    assert not metrics.parent.exists()
    # The real run creates it (0755: node_exporter, another user, reads it) and writes the metrics.
    proc = fleet.playbook("-i", inventory, str(playbook))
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert "would be created" not in proc.stdout
    assert stat.S_IMODE(metrics.stat().st_mode) == 0o755
    text = (metrics / "dihya_health.prom").read_text()
    assert 'dihya_health_check_up{check="http_health",tenant="all",type="http"} 1.0' in text
    # An existing folder is left as it is.
    metrics.chmod(0o750)
    again = fleet.playbook("-i", inventory, str(playbook))
    assert again.returncode == 0, again.stdout + again.stderr
    assert stat.S_IMODE(metrics.stat().st_mode) == 0o750


@pytest.mark.parametrize(("model", "expected"), [
    ({"dihya_backend_health_body_regex": "Welcome back"}, "http_health (HTTP 200 but the body does not match 'Welcome back')"),
    ({"dihya_backend_health_json_field": "status"}, "http_health (HTTP 200 but the body is not valid JSON)"),
    ({"dihya_backend_health_expected_status": [204]}, "http_health (HTTP 200 not in [204])"),
], ids=["body-regex", "json-field", "status"])
def test_a_page_that_does_not_match_the_model_fails_clearly(fleet: Fleet, tmp_path: pathlib.Path, login_url: str,
                                                            model: dict[str, t.Any], expected: str) -> None:
    playbook, _metrics = html_app(tmp_path, login_url)
    proc = fleet.playbook("-i", str(tmp_path / "hosts.yml"), str(playbook), "-e", json.dumps(model))
    output = words(proc.stdout + proc.stderr)
    assert proc.returncode != 0, output
    # The HTTP check fails; the disk check of the root passes.
    assert f"html-app is unhealthy: 1/2 checks healthy; failed: {expected}" in output, output
    assert "Traceback" not in output


def test_a_matching_body_regex_is_healthy(fleet: Fleet, tmp_path: pathlib.Path, login_url: str) -> None:
    playbook, _metrics = html_app(tmp_path, login_url)
    proc = fleet.playbook("-i", str(tmp_path / "hosts.yml"), str(playbook), "-e", "dihya_backend_health_body_regex=<title>Sign in</title>")
    assert proc.returncode == 0, proc.stdout + proc.stderr


def test_check_mode_on_the_fleet_reports_a_missing_metrics_folder(fleet: Fleet) -> None:
    host = "dihya-demo-3"
    metrics = fleet.root(host) / "metrics"
    shutil.rmtree(metrics, ignore_errors=True)
    proc = fleet.playbook("playbooks/check_health.yml", "--limit", host, "--check")
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert f"the metrics folder {metrics} would be created" in words(proc.stdout)
    assert not metrics.exists()
    proc = fleet.playbook("playbooks/check_health.yml", "--limit", host)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert (metrics / "dihya_health.prom").is_file()


def test_check_mode_runs_checks_and_writes_no_metrics(fleet: Fleet) -> None:
    for host in HOSTS:
        (fleet.root(host) / "metrics" / "dihya_health.prom").unlink(missing_ok=True)
    proc = fleet.playbook("playbooks/check_health.yml", "--check")
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert "checks healthy" in proc.stdout
    for host in HOSTS:
        assert not (fleet.root(host) / "metrics" / "dihya_health.prom").exists()


def test_check_health_writes_valid_metrics_for_every_host(fleet: Fleet) -> None:
    proc = fleet.playbook("playbooks/check_health.yml")
    assert proc.returncode == 0, proc.stdout + proc.stderr
    for host in HOSTS:
        metrics = fleet.root(host) / "metrics" / "dihya_health.prom"
        text = metrics.read_text()
        assert 'dihya_health_check_up{check="http_health"' in text
        assert 'dihya_health_check_up{check="process_web"' in text
        assert 'dihya_health_check_up{check="database"' in text
        # The demo hosts serve two tenants (dihya_backend_tenants: acme, globex): one endpoint answers for all.
        assert 'dihya_health_check_healthy{tenant="all"} 1.0' in text
        checked = promtool_check(metrics)
        assert checked.returncode == 0, checked.stdout + checked.stderr


def test_a_host_of_one_tenant_labels_its_metrics_with_that_tenant(fleet: Fleet) -> None:
    host = "dihya-demo-2"
    proc = fleet.playbook("playbooks/check_health.yml", "--limit", host, "-e", '{"dihya_backend_tenants": ["globex"]}')
    assert proc.returncode == 0, proc.stdout + proc.stderr
    text = (fleet.root(host) / "metrics" / "dihya_health.prom").read_text()
    assert 'dihya_health_check_healthy{tenant="globex"} 1.0' in text
    assert 'dihya_health_check_up{check="database",tenant="globex",type="sql"} 1.0' in text
    assert 'tenant="all"' not in text


def test_unhealthy_host_fails_with_the_failing_check(fleet: Fleet) -> None:
    proc = fleet.playbook("playbooks/check_health.yml", "--limit", "dihya-demo-3",
                          "-e", "check_health_url=http://127.0.0.1:9/healthz")
    output = proc.stdout + proc.stderr
    assert proc.returncode != 0
    assert "dihya-demo-3 is unhealthy" in output and "http_health" in output
    assert "Traceback" not in output


@pytest.mark.parametrize(
    ("module_args", "expected"),
    [
        ({"checks": [{"name": "x", "type": "gopher", "url": "http://127.0.0.1:1/"}]}, "value of type must be one of"),
        ({"checks": [{"name": "x", "type": "http", "url": "http://127.0.0.1:1/"}], "timeout": -1}, "timeout"),
    ],
    ids=["unknown-type", "negative-timeout"],
)
def test_bad_module_input_fails_cleanly(fleet: Fleet, module_args: dict[str, t.Any], expected: str) -> None:
    result = fleet.adhoc("dihya.ops.health_check", module_args)
    assert result.get("failed") is True
    assert expected in result["msg"]


def test_malformed_url_and_unreachable_host_are_reported_per_check(fleet: Fleet) -> None:
    result = fleet.adhoc("dihya.ops.health_check", {"checks": [
        {"name": "malformed", "type": "http", "url": "http//127.0.0.1:8080/healthz"},
        {"name": "refused", "type": "tcp", "host": "127.0.0.1", "port": 9},
        {"name": "live", "type": "http", "url": f"http://127.0.0.1:{fleet.port('dihya-demo-1')}/healthz"},
    ]})
    assert result.get("failed") is not True, result
    checks = {check["name"]: check for check in result["checks"]}
    assert result["healthy"] is False
    assert checks["malformed"]["status"] == "error"
    assert checks["refused"]["status"] == "failed" and "refused" in checks["refused"]["message"]
    assert checks["live"]["healthy"] is True


def test_built_collection_installs_and_runs_playbooks_by_fqcn(fleet: Fleet, tmp_path: pathlib.Path) -> None:
    build = run([str(BIN / "ansible-galaxy"), "collection", "build", "--output-path", str(tmp_path)], env=fleet.env, timeout=300)
    assert build.returncode == 0, build.stdout + build.stderr
    tarball = next(tmp_path.glob("dihya-ops-*.tar.gz"))
    listing = subprocess.run(["tar", "-tzf", str(tarball)], capture_output=True, text=True, check=True).stdout.split()
    assert "plugins/modules/health_check.py" in listing and "playbooks/restart_services.yml" in listing
    assert not [name for name in listing if name.startswith(("tests/", "benchmarks/", "molecule/", ".venv"))]
    install_dir = tmp_path / "collections"
    # Only the installed copy is visible: no ansible.cfg, no checkout on the collections path.
    env = dict(fleet.env, ANSIBLE_COLLECTIONS_PATH=str(install_dir), ANSIBLE_CONFIG=str(tmp_path / "none.cfg"))
    install = run([str(BIN / "ansible-galaxy"), "collection", "install", "--offline", "-p", str(install_dir), str(tarball)],
                  env=env, timeout=300)
    assert install.returncode == 0, install.stdout + install.stderr
    assert (install_dir / "ansible_collections" / "dihya" / "ops" / "playbooks" / "check_health.yml").is_file()
    proc = run([str(BIN / "ansible-playbook"), "-i", str(ROOT / "inventories" / "local" / "hosts.yml"),
                "-e", f"ansible_python_interpreter={sys.executable}", "dihya.ops.check_health", "--check"],
               env=env, timeout=300)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    listed = run([str(BIN / "ansible-galaxy"), "collection", "list", "dihya.ops"], env=env, timeout=120)
    assert str(install_dir) in listed.stdout, listed.stdout + listed.stderr
