#!/usr/bin/env bash
# The main job on the embedded default: deploy the sandboxed demo backend
# fleet (three Flask instances under gunicorn and supervisord on localhost),
# check its health, restart it host by host behind the health gate, and print
# a summary.  Installs what it needs first (scripts/bootstrap.sh run).
#
#   scripts/demo.sh [extra ansible-playbook arguments, e.g. --check]
#   scripts/demo.sh --stop      stop the demo fleet and remove its instances (the run
#                               reports and the controller audit log stay in the sandbox)
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
sandbox="${DIHYA_DEMO_SANDBOX:-/tmp/dihya-ops-demo}"
# The run itself is audited on the controller by the dihya.ops.audit callback,
# its key in the demo Vault; the hosts' events carry the same trace id.
export ANSIBLE_CALLBACKS_ENABLED="dihya.ops.audit${ANSIBLE_CALLBACKS_ENABLED:+,$ANSIBLE_CALLBACKS_ENABLED}"
export DIHYA_AUDIT_KEY_FILE="${DIHYA_AUDIT_KEY_FILE:-$root/inventories/local/controller-audit-key.vault}"
export DIHYA_AUDIT_LOG_PATH="${DIHYA_AUDIT_LOG_PATH:-$sandbox/controller-audit.log}"
# The playbook's last task prints the summary (kept in $sandbox/last-run.txt).
# A request loop through HAProxy (the fleet's base port), one GET every 20 ms from the
# moment HAProxy answers until the playbook ends, counts what the rolling restart lost.
base_port="${DIHYA_DEMO_BASE_PORT:-18080}"
mkdir -p "$sandbox"
loop_out="$sandbox/request-loop.txt"
coproc LOOP { python "$root/tests/support/request_loop.py" "http://127.0.0.1:$base_port/healthz" 900 > "$loop_out"; }
status=0
ansible-playbook tests/demo_backend/demo.yml "$@" || status=$?
exec {LOOP[1]}>&-
wait "$LOOP_PID" || true
printf 'through HAProxy 127.0.0.1:%s during the run: %s\n' "$base_port" "$(cat "$loop_out")"
# The authorisation policy's decisions of this run (inventories/local/policy.yml, docs/policy.md), as the
# controller's audit log records them.
python - "$DIHYA_AUDIT_LOG_PATH" <<'PY' || true
import json, sys
try:
    events = [json.loads(line) for line in open(sys.argv[1], encoding="utf-8")]
except (OSError, ValueError):
    sys.exit(0)
starts = [index for index, event in enumerate(events) if event["event"]["action"] == "ansible.run.start"]
trace = events[starts[-1]]["trace"]["id"] if starts else None
for event in events[starts[-1] if starts else 0:]:
    if event["event"]["action"] == "dihya.ops.authorise" and event["trace"]["id"] == trace:
        print("authorised  " + event["event"]["outcome"] + ": " + event["dihya"]["details"]["reason"])
PY
exit "$status"
