#!/usr/bin/env bash
# The main job on the embedded default: deploy the sandboxed demo backend
# fleet (three Flask instances under gunicorn and supervisord on localhost),
# check its health, restart it host by host behind the health gate, and print
# a summary.  Installs what it needs first (scripts/bootstrap.sh run).
#
#   scripts/demo.sh [extra ansible-playbook arguments, e.g. --check]
#   scripts/demo.sh --stop      stop the demo fleet and remove its sandbox
#
# DIHYA_DEMO_SANDBOX (default /tmp/dihya-ops-demo) and DIHYA_DEMO_BASE_PORT
# (default 18080; instances listen on +1..+3) move the fleet.
set -euo pipefail

root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$root"
"$root/scripts/bootstrap.sh" run
export PATH="${DIHYA_VENV:-$root/.venv}/bin:$PATH"

if [ "${1:-}" = "--stop" ]; then
  exec ansible-playbook tests/demo_backend/teardown.yml -e demo_backend_purge=true
fi
ansible-playbook tests/demo_backend/demo.yml "$@"
summary="${DIHYA_DEMO_SANDBOX:-/tmp/dihya-ops-demo}/last-run.txt"
if [ -f "$summary" ]; then
  printf '\n'
  cat "$summary"
fi
