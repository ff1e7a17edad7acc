#!/bin/bash
# Peak RSS of the proxy binary while it classifies one unsigned JSON bomb (GitLab note allowed
# unsigned, padded with SIZE bytes of small nested objects), loopback only, bounded in time.
#   scripts/json-bomb-rss.sh [BINARY] [SIZE_BYTES]   (defaults: target/release binary, 24000000)
# Prints the HTTP status and start/peak/after RSS in kB. Needs python3 and curl; ports 14141-14142
# and 19464 must be free.
set -euo pipefail
BIN=${1:-${CARGO_TARGET_DIR:-target}/release/atlantis-lock-proxy}
SIZE=${2:-24000000}
dir=$(mktemp -d)
trap 'kill $P $UP 2>/dev/null || true; rm -rf "$dir"' EXIT
python3 - "$SIZE" > "$dir/bomb.json" <<'PY'
import json, sys
size = int(sys.argv[1])
proj = {"path_with_namespace": "acme/infra", "git_http_url": "https://gitlab.com/acme/infra.git"}
head = {"object_kind": "note", "user": {"username": "m"}, "project": proj,
        "object_attributes": {"noteable_type": "MergeRequest", "note": "atlantis plan -d x"},
        "merge_request": {"iid": 1, "state": "opened", "source": proj}}
s = json.dumps(head)[:-1] + ', "padding": ['
unit = '{"a":[1,2,{"b":[]}]},'
s += unit * max(1, (size - len(s) - 2) // len(unit))
sys.stdout.write(s[:-1] + ']}')
PY
cat > "$dir/cfg.yaml" <<YAML
listen: 127.0.0.1:14141
upstream: {url: "http://127.0.0.1:14142"}
admin: {listen: 127.0.0.1:19464}
atlantis: {allow-unsigned-webhooks: [gitlab]}
server: {max-buffered-bytes: 1GiB}
YAML
python3 -c "
import http.server
class H(http.server.BaseHTTPRequestHandler):
    def do_POST(self):
        self.rfile.read(int(self.headers.get('content-length', 0)))
        self.send_response(200); self.send_header('content-length', '0'); self.end_headers()
    def log_message(self, *a): pass
http.server.HTTPServer(('127.0.0.1', 14142), H).serve_forever()" &
UP=$!
"$BIN" --config "$dir/cfg.yaml" >"$dir/proxy.log" 2>&1 &
P=$!
sleep 1.5
start=$(awk '/VmRSS/ {print $2}' /proc/$P/status)
code=$(timeout 60 curl -s -o /dev/null -w "%{http_code}" -X POST -H 'content-type: application/json' \
  -H 'x-gitlab-event: Note Hook' --data-binary @"$dir/bomb.json" http://127.0.0.1:14141/events)
sleep 0.5
echo "status=$code start_kb=$start peak_kb=$(awk '/VmHWM/ {print $2}' /proc/$P/status) after_kb=$(awk '/VmRSS/ {print $2}' /proc/$P/status)"
