#!/usr/bin/env bash
# Run the whole test suite of dihya.ops on this machine:
#   lint      ansible-lint (production profile), changelog fragments, plugin and role docs, argument_specs vs defaults, mypy, ruff
#   unit      pytest, the tests that need no service (no supervisord, PostgreSQL, rsyslog, venv with pip, ansible-playbook), with coverage (>= 90 %)
#   integration  pytest, the tests marked services, against the same real services; coverage of both tiers together (>= 90 %)
#   sanity    ansible-test sanity, offline, with no ignore file
#   functional  playbooks against a real demo fleet (gunicorn + supervisord), built-collection install
#   molecule  check -> converge -> idempotence -> verify against the demo fleet
# Installs what it needs first (scripts/bootstrap.sh test).  Stages can be
# picked: scripts/test.sh unit sanity
set -uo pipefail

root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$root"
"$root/scripts/bootstrap.sh" test || { echo "bootstrap failed" >&2; exit 1; }

venv="${DIHYA_VENV:-$root/.venv}"
export PATH="$venv/bin:$PATH"
export PIP_CACHE_DIR="${PIP_CACHE_DIR:-${HOME:-/root}/.cache/pip}"
# ansible-test, ansible-lint and molecule write under ~/.ansible and ~/.cache:
# keep them in a scratch home inside the checkout.
export HOME="$root/.cache/test-home"
mkdir -p "$HOME"
# Only the checkout may provide dihya.ops: drop any copy a tool installed there.
rm -rf "$HOME/.ansible/collections/ansible_collections/dihya"
export ANSIBLE_LOCAL_TEMP="$root/.cache/ansible-tmp"
export PY_COLORS=0 ANSIBLE_FORCE_COLOR=0 ANSIBLE_NOCOLOR=1
# Each suite deploys its own demo fleet, away from the one of scripts/demo.sh,
# under a short path: supervisord's unix socket path must stay under 108 bytes.
export DIHYA_TEST_SANDBOX="${DIHYA_TEST_SANDBOX:-${TMPDIR:-/tmp}/dihya-ops-test-$(id -u)}"

stage_lint() {
  # Every check runs, so that one report lists all of them; the stage fails if any failed.
  # mypy (strict) and ruff take their configuration, and mypy its list of packages, from pyproject.toml.
  # ansible-lint also resolves the awx.awx modules of awx/configure.yml, in the folder scripts/bootstrap.sh unpacked
  # them into (.cache/awx-collections): on its collection path only, no other tool sees that collection.
  local check failed=()
  local collections="$root/.cache/collections:$root/.cache/awx-collections"
  local checks=(
    "env ANSIBLE_COLLECTIONS_PATH=$collections ansible-lint --strict"
    "antsibull-changelog lint"
    "antsibull-docs lint-collection-docs --plugin-docs ."
    "python tests/lint/check_argument_specs.py"
    "python tests/lint/check_role_booleans.py"
    "python tests/lint/check_doc_references.py"
    "mypy"
    "mypy --config-file runops/pyproject.toml"
    "ruff check --no-fix --output-format concise ."
  )
  for check in "${checks[@]}"; do
    printf -- '--- %s\n' "$check"
    $check || failed+=("$check")
  done
  [ ${#failed[@]} -eq 0 ] || { printf 'lint: failed: %s\n' "${failed[@]}" >&2; return 1; }
}

stage_unit() {
  # Four pytest-xdist workers, on two cores too: much of the tier's time is the deadline tests waiting on
  # silent loopback peers. Coverage is combined by pytest-cov into the tier's own data file.
  # --tier unit: the tests not marked services (-m "not services"); one that starts a service anyway fails.
  # The unit tier alone covers >= 90 % of plugins/; the integration stage checks both tiers together.
  rm -f "$root/.cache/coverage-unit"
  COVERAGE_FILE="$root/.cache/coverage-unit" python -m pytest -p no:pytest-ansible -p no:cacheprovider -n 4 --dist worksteal \
    --tier unit --durations=5 --cov=ansible_collections.dihya.ops.plugins --cov-report= --cov-fail-under=90 tests/unit
}

stage_integration() {
  # The tests marked services (PostgreSQL and supervisord started once per session, rsyslog and virtual
  # environments by their fixtures). The coverage threshold applies to both tiers together: the unit
  # stage's data file (when it ran) combined with this one's.
  local unit="$root/.cache/coverage-unit" own="$root/.cache/coverage-integration" all="$root/.cache/coverage-all"
  rm -f "$own" "$all"
  COVERAGE_FILE="$own" python -m pytest -p no:pytest-ansible -p no:cacheprovider -n 2 --dist worksteal \
    --tier integration --durations=5 --cov=ansible_collections.dihya.ops.plugins --cov-report= tests/unit || return 1
  if [ -f "$unit" ]; then
    coverage combine --keep --quiet --data-file="$all" "$unit" "$own" &&
      coverage report --data-file="$all" --show-missing --skip-covered --fail-under=90
  else
    echo "integration: no unit coverage data ($unit): run the unit stage first for the >= 90 % check" >&2
    coverage report --data-file="$own" --skip-covered
  fi
}

stage_sanity() {
  # Outside the checkout: inside it, ansible-test would list files through git.
  # runops/ (run_ops and dihya-ops) is a Python package of its own, not collection content: left out.
  local dest="${TMPDIR:-/tmp}/dihya-ops-sanity-$(id -u)/ansible_collections/dihya/ops"
  rm -rf "$dest" && mkdir -p "$dest"
  tar -C "$root" --exclude=./.git --exclude=./.cache --exclude=./.venv --exclude=./runops --exclude='__pycache__' \
    --exclude=./tests/output -cf - . | tar -C "$dest" -xf -
  # ansible-test downloads get-pip.py; the offline stand-in is used instead.
  mkdir -p "$HOME/.ansible/test/cache"
  cp tests/sanity/get_pip_offline.py "$HOME/.ansible/test/cache/get_pip_24_2.py"
  (cd "$dest" && ansible-test sanity --venv --python 3.11 --color no)
}

stage_functional() {
  # Two workers, each with its own demo fleet; a file's tests stay together and in order. The files are handed
  # out longest first (tests/functional/conftest.py orders them; xdist would order them by test count).
  python -m pytest -p no:pytest-ansible -p no:cacheprovider -n 2 --dist loadfile --no-loadscope-reorder --durations=10 \
    -o testpaths=tests/functional tests/functional
}

stage_molecule() {
  # Start from a clean scenario state: a left-over "prepared" flag would skip the fleet's deployment.
  molecule reset --all >/dev/null &&
    DIHYA_DEMO_SANDBOX="$DIHYA_TEST_SANDBOX/molecule" DIHYA_DEMO_BASE_PORT=19280 molecule test --all
}

stages=("$@")
[ ${#stages[@]} -eq 0 ] && stages=(lint unit integration sanity functional molecule)

passed=0 failed=0 failures=()
for stage in "${stages[@]}"; do
  printf '\n===== %s =====\n' "$stage"
  start=$SECONDS
  if "stage_$stage"; then
    passed=$((passed + 1)); printf '===== %s: passed in %ss =====\n' "$stage" $((SECONDS - start))
  else
    failed=$((failed + 1)); failures+=("$stage"); printf '===== %s: FAILED in %ss =====\n' "$stage" $((SECONDS - start))
  fi
done

echo
[ $failed -gt 0 ] && echo "failed stages: ${failures[*]}"
echo "stages: $passed passed, $failed failed"
[ $failed -eq 0 ]
