#!/usr/bin/env bash
# Prepare this checkout to run: a virtual environment with the pinned Python
# packages, the Debian packages listed in bindep.txt, and the collection made
# visible to Ansible as dihya.ops.  Safe and fast to run again.
# The test profile also creates .cache/galaxy-importer-venv, galaxy-importer
# with its own pins (requirements/galaxy-importer.txt), for the publishing test,
# and .cache/awx-collections, the awx.awx collection of the AWX configuration.
#
#   scripts/bootstrap.sh [run|test]     (default: run)
set -euo pipefail

profile="${1:-run}"
case "$profile" in run|test) ;; *) echo "usage: $0 [run|test]" >&2; exit 2 ;; esac

root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
venv="${DIHYA_VENV:-$root/.venv}"
python="${DIHYA_PYTHON:-python3}"
req="$root/requirements/$profile.txt"

# One bootstrap at a time per checkout: two pip runs into one environment would corrupt it.
mkdir -p "$root/.cache"
exec 9>"$root/.cache/bootstrap.lock"
flock 9

log() { printf '\033[1m==> %s\033[0m\n' "$*" >&2; }
# pipq VENV ARGS...: a quiet pip install into VENV.
pipq() {
  local target="$1"; shift
  "$target/bin/python" -m pip install --quiet --disable-pip-version-check "$@" 2> >(grep -v "is ignored: it is neither a file nor a directory" >&2)
}

# 1. Python virtual environment with pinned packages.  A stamp holding the
#    hash of the requirement files skips pip when nothing changed.
if [ ! -x "$venv/bin/python" ]; then
  log "creating virtual environment $venv"
  "$python" -m venv "$venv"
fi
stamp="$venv/.dihya-$profile.sha256"
want="$(cat "$root"/requirements/run.txt "$root"/requirements/test.txt "$req" | sha256sum | cut -d' ' -f1)"
if [ "$(cat "$stamp" 2>/dev/null)" != "$want" ]; then
  log "installing pinned Python packages ($profile)"
  pipq "$venv" --upgrade pip
  pipq "$venv" -r "$req"
  echo "$want" > "$stamp"
fi

# 1b. galaxy-importer (test profile) in a virtual environment of its own: its
#     pins conflict with the test tooling's.  Same stamp logic.
if [ "$profile" = test ]; then
  importer_venv="${DIHYA_IMPORTER_VENV:-$root/.cache/galaxy-importer-venv}"
  importer_req="$root/requirements/galaxy-importer.txt"
  if [ ! -x "$importer_venv/bin/python" ]; then
    log "creating virtual environment $importer_venv"
    "$python" -m venv "$importer_venv"
  fi
  importer_stamp="$importer_venv/.dihya-importer.sha256"
  importer_want="$(sha256sum < "$importer_req" | cut -d' ' -f1)"
  if [ "$(cat "$importer_stamp" 2>/dev/null)" != "$importer_want" ]; then
    log "installing pinned galaxy-importer"
    pipq "$importer_venv" --upgrade pip
    pipq "$importer_venv" -r "$importer_req"
    echo "$importer_want" > "$importer_stamp"
  fi
fi

# 1c. dihya-ops (runops/): run_ops and its command line, on the pinned packages
#     above (--no-deps: nothing outside requirements/ is resolved).  Editable, so
#     the checkout's code is what runs; reinstalled when the checkout moved.
if [ "$("$venv/bin/python" -c 'import dihya_ops_run, pathlib; print(pathlib.Path(dihya_ops_run.__file__).resolve().parents[2])' 2>/dev/null)" != "$root/runops" ]; then
  log "installing dihya-ops (runops/)"
  pipq "$venv" --no-deps -e "$root/runops"
fi

# 2. Debian packages from bindep.txt that are missing.
bindep_profile=()
[ "$profile" = test ] && bindep_profile=(test)
missing="$("$venv/bin/bindep" -b -f "$root/bindep.txt" "${bindep_profile[@]}" || true)"
if [ -n "$missing" ]; then
  log "installing Debian packages: $(echo $missing)"
  sudo=()
  [ "$(id -u)" -ne 0 ] && sudo=(sudo)
  export DEBIAN_FRONTEND=noninteractive
  # Packaged daemons (the prometheus server comes with promtool) must not
  # start on install: a temporary policy-rc.d forbids it where none exists.
  policy=/usr/sbin/policy-rc.d
  own_policy=
  if [ ! -e "$policy" ]; then
    printf '#!/bin/sh\nexit 101\n' | "${sudo[@]}" tee "$policy" >/dev/null
    "${sudo[@]}" chmod 0755 "$policy"
    own_policy=1
  fi
  "${sudo[@]}" apt-get update -qq
  # shellcheck disable=SC2086
  "${sudo[@]}" apt-get install -y -qq --no-install-recommends $missing >/dev/null
  [ -n "$own_policy" ] && "${sudo[@]}" rm -f "$policy"
fi

# 2b. The independent IPFS implementations the export tests compare CIDs with
#     (test profile): the npm packages pinned by tests/ipfs/package-lock.json,
#     installed without install scripts into .cache/npm-ipfs.  Same stamp logic.
if [ "$profile" = test ]; then
  command -v npm >/dev/null || { echo "npm is missing: install Node.js 20 with npm (bindep.txt: nodejs)" >&2; exit 1; }
  npm_dir="$root/.cache/npm-ipfs"
  npm_want="$(cat "$root/tests/ipfs/package.json" "$root/tests/ipfs/package-lock.json" | sha256sum | cut -d' ' -f1)"
  if [ "$(cat "$npm_dir/.dihya-npm.sha256" 2>/dev/null)" != "$npm_want" ]; then
    log "installing pinned npm packages (tests/ipfs/package-lock.json)"
    mkdir -p "$npm_dir"
    cp "$root/tests/ipfs/package.json" "$root/tests/ipfs/package-lock.json" "$npm_dir/"
    (cd "$npm_dir" && npm ci --ignore-scripts --no-audit --no-fund --loglevel=error)
    echo "$npm_want" > "$npm_dir/.dihya-npm.sha256"
  fi
fi

# 2c. awx.awx (test profile), the collection of the AWX configuration (awx/configure.yml) that ansible-lint and
#     the tests resolve its modules in: only its folder, unpacked from the PyPI package ansible (pinned by its
#     sha256; Galaxy is not needed) into .cache/awx-collections, which no other tool's collection path names.
if [ "$profile" = test ]; then
  awx_ansible=12.3.0
  awx_sha256=cd156f82fa87f7a899212b0efa9f7ca3a24d609212de9f78428a572eb01e5414
  awx_dir="$root/.cache/awx-collections"
  if [ "$(cat "$awx_dir/.dihya-awx.sha256" 2>/dev/null)" != "$awx_sha256" ]; then
    log "unpacking awx.awx from the PyPI package ansible $awx_ansible"
    awx_tmp="$(mktemp -d)"
    "$venv/bin/python" -m pip download --quiet --disable-pip-version-check --no-deps --only-binary :all: \
      --dest "$awx_tmp" "ansible==$awx_ansible" 2> >(grep -v "is ignored: it is neither a file nor a directory" >&2)
    awx_wheel="$awx_tmp/ansible-$awx_ansible-py3-none-any.whl"
    echo "$awx_sha256  $awx_wheel" | sha256sum --check --quiet - || { echo "ansible $awx_ansible: unexpected sha256" >&2; exit 1; }
    rm -rf "$awx_dir"
    "$venv/bin/python" - "$awx_wheel" "$awx_dir" <<'PY'
import sys, zipfile
prefix = 'ansible_collections/awx/awx/'
with zipfile.ZipFile(sys.argv[1]) as wheel:
    wheel.extractall(sys.argv[2], [name for name in wheel.namelist() if name.startswith(prefix)])
PY
    rm -rf "$awx_tmp"
    echo "$awx_sha256" > "$awx_dir/.dihya-awx.sha256"
  fi
fi

# 3. Make the checkout importable as the dihya.ops collection.
coll="$root/.cache/collections/ansible_collections/dihya"
mkdir -p "$coll"
ln -sfn "$root" "$coll/ops"

log "ready: $venv ($profile)"
