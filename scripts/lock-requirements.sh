#!/usr/bin/env bash
# Regenerate the pinned requirement files of requirements/ from their top-level
# requirements, the *.in files next to them:
#
#   run.in              -> run.txt              the runtime set
#   test.in             -> test.txt             the test tooling: "-r run.txt", then only what run.txt
#                                               does not pin; resolved with run.txt's pins as constraints
#   galaxy-importer.in  -> galaxy-importer.txt  galaxy-importer, installed in a virtual environment of its own
#
# Each set is installed from the package index (pip's own configuration applies) into a
# scratch virtual environment made with DIHYA_PYTHON (default python3, the Python the
# checkout runs with), then frozen with pip freeze.  Nothing else is touched: run
# scripts/bootstrap.sh afterwards to install the new pins, and review the diff.
#
#   scripts/lock-requirements.sh [--output DIR] [SET ...]
#
# SET is run, test or galaxy-importer (default: all three; test needs run, which is
# then locked too).  --output DIR writes the files into DIR instead of requirements/:
# a dry run, to compare with `diff -u requirements DIR`.
set -euo pipefail

root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
python="${DIHYA_PYTHON:-python3}"
out="$root/requirements"
sets=()
while [ $# -gt 0 ]; do
  case "$1" in
    --output) out="$(mkdir -p "$2" && cd "$2" && pwd)"; shift 2 ;;
    run|test|galaxy-importer) sets+=("$1"); shift ;;
    *) echo "usage: $0 [--output DIR] [run|test|galaxy-importer ...]" >&2; exit 2 ;;
  esac
done
[ ${#sets[@]} -eq 0 ] && sets=(run test galaxy-importer)
# test is resolved against the runtime pins: lock run first whenever test is asked for.
case " ${sets[*]} " in *" test "*) case " ${sets[*]} " in *" run "*) ;; *) sets=(run "${sets[@]}") ;; esac ;; esac

scratch="$(mktemp -d "${TMPDIR:-/tmp}/dihya-lock.XXXXXX")"
trap 'rm -rf "$scratch"' EXIT
log() { printf '\033[1m==> %s\033[0m\n' "$*" >&2; }

# freeze NAME PIP-INSTALL-ARGS...: install into a new scratch venv, print its pip freeze.
freeze() {
  local venv="$scratch/$1"; shift
  "$python" -m venv "$venv"
  "$venv/bin/python" -m pip install --quiet --disable-pip-version-check --upgrade pip >&2
  "$venv/bin/python" -m pip install --quiet --disable-pip-version-check "$@" >&2
  "$venv/bin/python" -m pip freeze --disable-pip-version-check
}

# The runtime pins in use for the test set: the new run.txt when it is locked in this run.
run_pins="$root/requirements/run.txt"

for set in "${sets[@]}"; do
  log "locking $set (requirements/$set.in)"
  case "$set" in
    run)
      frozen="$(freeze run -r "$root/requirements/run.in")"
      {
        echo "# Pinned runtime set: ansible-core and the libraries the modules and the demo backend use."
        echo "# Regenerate with scripts/lock-requirements.sh (from requirements/run.in)."
        echo "$frozen"
      } > "$out/run.txt"
      run_pins="$out/run.txt"
      ;;
    test)
      frozen="$(freeze test -c "$run_pins" -r "$root/requirements/run.in" -r "$root/requirements/test.in")"
      # Only what run.txt does not pin (names compared the way pip does: case, - _ . alike).
      pinned="$(grep -v '^#' "$run_pins" | sed 's/==.*//' | tr 'A-Z_.' 'a-z--')"
      {
        echo "# Pinned test tooling on top of the runtime set."
        echo "-r run.txt"
        while IFS= read -r line; do
          name="$(printf '%s' "${line%%==*}" | tr 'A-Z_.' 'a-z--')"
          grep -qxF -- "$name" <<<"$pinned" || echo "$line"
        done <<<"$frozen"
      } > "$out/test.txt"
      ;;
    galaxy-importer)
      frozen="$(freeze galaxy-importer -r "$root/requirements/galaxy-importer.in")"
      {
        echo "# Pinned galaxy-importer, in a virtual environment of its own (.cache/galaxy-importer-venv): its pins"
        echo "# conflict with the test tooling. Used by tests/functional/test_build.py; regenerate with scripts/lock-requirements.sh."
        echo "$frozen"
      } > "$out/galaxy-importer.txt"
      ;;
  esac
done
log "written to $out: $(printf '%s.txt ' "${sets[@]}")"
