#!/usr/bin/env bash
# profile.sh - user-space instructions per request of bin/lb, by function.
#
# Runs bin/lb (one worker, access log off) under valgrind's callgrind in
# front of one bin/lb-backend on 127.0.0.1, sends a bounded load with
# bin/lb-load, and prints the instructions per request and the functions
# that spend them. Counting starts after a warm-up and stops before the
# shutdown, so only the requests are measured.
#
#   loadtest/profile.sh                       # keep-alive, GET /, 20000 requests
#   PROFILE_MODE=newconn loadtest/profile.sh  # a new connection per request
#   PROFILE_MODE=64k loadtest/profile.sh      # GET /bytes/65536, keep-alive
#   PROFILE_REQUESTS=50000 PROFILE_TOP=30 PROFILE_SPLICE=off loadtest/profile.sh
#
# Knobs: PROFILE_MODE (keepalive | newconn | 64k), PROFILE_REQUESTS (20000),
# PROFILE_CONNS (16), PROFILE_TOP (20 functions), PROFILE_SPLICE (auto | off; unset: the default),
# PROFILE_BIN (bin), PROFILE_KEEP=1 keeps the work directory (callgrind.out
# for callgrind_annotate or kcachegrind).
set -euo pipefail
cd "$(dirname "$0")/.."

mode=${PROFILE_MODE:-keepalive}
nreq=${PROFILE_REQUESTS:-20000}
conns=${PROFILE_CONNS:-16}
top=${PROFILE_TOP:-20}
splice=${PROFILE_SPLICE:-}
bin=${PROFILE_BIN:-bin}

for t in valgrind callgrind_control callgrind_annotate; do
    command -v $t >/dev/null || { echo "profile.sh: $t not found (apt-get install valgrind)"; exit 2; }
done
for b in lb lb-backend lb-load; do
    [ -x "$bin/$b" ] || { echo "profile.sh: $bin/$b missing (run make)"; exit 2; }
done

dir=$(mktemp -d /tmp/lb-profile.XXXXXX)
pids=()
cleanup() {
    for p in "${pids[@]}"; do kill -TERM "$p" 2>/dev/null || true; done
    for p in "${pids[@]}"; do wait "$p" 2>/dev/null || true; done
    if [ "${PROFILE_KEEP:-0}" = 1 ]; then echo "work directory kept: $dir"; else rm -rf "$dir"; fi
}
trap cleanup EXIT

free_port() {
    python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])'
}

"$bin/lb-backend" --listen 127.0.0.1:0 --name b1 2>"$dir/backend.err" &
pids+=($!)
be_port=""
for _ in $(seq 100); do
    be_port=$(sed -n 's/.*listening on 127.0.0.1:\([0-9]*\).*/\1/p' "$dir/backend.err" | head -1)
    [ -n "$be_port" ] && break
    sleep 0.05
done
[ -n "$be_port" ] || { echo "profile.sh: the backend did not start"; cat "$dir/backend.err"; exit 1; }

port=$(free_port)
admin=$(free_port)
splice_key=
[ -n "$splice" ] && splice_key=" splice = \"$splice\";"
cat >"$dir/lb.conf" <<EOF
lb: { workers = 1;$splice_key };
log: { level = "warn"; access = "off"; };
admin: { listen = "127.0.0.1:$admin"; };
listeners = ( { name = "web"; listen = "127.0.0.1:$port"; pool = "api"; } );
pools = ( { name = "api"; health = { type = "off"; };
            backends = ( { name = "b1"; address = "127.0.0.1:$be_port"; } ); } );
EOF

valgrind --tool=callgrind --instr-atstart=no --callgrind-out-file="$dir/callgrind.out" \
    "$bin/lb" -c "$dir/lb.conf" >"$dir/lb.out" 2>"$dir/lb.err" &
lbpid=$!
pids+=($lbpid)
ok=0
for _ in $(seq 300); do
    if curl -s -o /dev/null "http://127.0.0.1:$port/" 2>/dev/null; then ok=1; break; fi
    sleep 0.1
done
[ $ok = 1 ] || { echo "profile.sh: lb did not answer"; cat "$dir/lb.err"; exit 1; }

path=/
args=(-c "$conns")
case $mode in
keepalive) ;;
newconn) args+=(--new-conn) ;;
64k) path=/bytes/65536 ;;
*) echo "profile.sh: PROFILE_MODE is keepalive, newconn or 64k"; exit 2 ;;
esac
url="http://127.0.0.1:$port$path"

"$bin/lb-load" "$url" "${args[@]}" -n 2000 >/dev/null # warm-up: buffers, idle upstreams
callgrind_control -i on "$lbpid" >/dev/null
"$bin/lb-load" "$url" "${args[@]}" -n "$nreq" --json >"$dir/load.json"
callgrind_control -i off "$lbpid" >/dev/null
kill -TERM "$lbpid"
wait "$lbpid" || true
pids=("${pids[@]/$lbpid/}")

python3 - "$dir/load.json" "$dir/callgrind.out" "$nreq" "$top" "$mode" "${splice:-default}" <<'EOF'
import json, re, subprocess, sys
load = json.load(open(sys.argv[1]))
out, nreq, top, mode, splice = sys.argv[2], int(sys.argv[3]), int(sys.argv[4]), sys.argv[5], sys.argv[6]
ok = load["status"]["2xx"]
errs = sum(load["errors"].values())
ann = subprocess.run(["callgrind_annotate", "--inclusive=no", "--threshold=100", out],
                     capture_output=True, text=True, check=True).stdout
total, rows = None, []
for line in ann.splitlines():
    s = line.strip()
    if s.endswith("PROGRAM TOTALS"):
        total = int(s.split()[0].replace(",", ""))
    elif total is not None:
        m = re.match(r"([\d,]+)\s+\(\s*[\d.]+%\)\s+(\S.*)$", s)
        if m:
            rows.append((int(m.group(1).replace(",", "")), m.group(2)))
print("lb under callgrind: %s, %d requests (%d 2xx, %d errors), splice %s" % (mode, nreq, ok, errs, splice))
print("instructions per request: %.0f (total %d)" % (total / max(ok, 1), total))
print("%10s %6s  %s" % ("instr/req", "share", "function"))
for n, fn in rows[:top]:
    print("%10.0f %5.1f%%  %s" % (n / max(ok, 1), 100.0 * n / total, fn))
EOF
