#!/usr/bin/env bash
# `make run`: three fake backends on 127.0.0.1:9001-9003 and bin/lb with
# config/lb.conf in front of them. Ctrl-C stops everything.
set -u
cd "$(dirname "$0")/.."

pids=()
cleanup() {
    trap - INT TERM EXIT
    # Ctrl-C reached lb already (same process group): give it a moment to
    # drain by itself, so it is not told twice (a second signal cuts at once)
    if [ -n "${lb_pid:-}" ]; then
        for _ in $(seq 20); do
            kill -0 "$lb_pid" 2>/dev/null || break
            sleep 0.1
        done
    fi
    for p in "${pids[@]}"; do kill "$p" 2>/dev/null; done
    wait 2>/dev/null
}
trap cleanup INT TERM EXIT

start_backend() { # name port zone
    bin/lb-backend --listen "127.0.0.1:$2" --name "$1" --zone "$3" &
    pids+=($!)
}
start_backend b1 9001 zone-a
start_backend b2 9002 zone-a
start_backend b3 9003 zone-b

# wait (bounded) for the backends to accept
for port in 9001 9002 9003; do
    for _ in $(seq 50); do
        (exec 3<>"/dev/tcp/127.0.0.1/$port") 2>/dev/null && break
        sleep 0.1
    done
done

bin/lb -c config/lb.conf &
lb_pid=$!
pids+=($lb_pid)
for _ in $(seq 50); do
    (exec 3<>/dev/tcp/127.0.0.1/8080) 2>/dev/null && break
    kill -0 "$lb_pid" 2>/dev/null || { echo "lb did not start (see above)"; exit 1; }
    sleep 0.1
done

# the admin token of the demo file, so the drain example below works as printed
token=$(sed -n 's/^[[:space:]]*token[[:space:]]*=[[:space:]]*"\([^"]*\)".*/\1/p' config/lb.conf | head -1)

cat <<MSG

  proxy:       http://127.0.0.1:8080/          (try: curl -i http://127.0.0.1:8080/echo)
  stats page:  http://127.0.0.1:9900/stats
  stats JSON:  http://127.0.0.1:9900/stats.json
  metrics:     http://127.0.0.1:9900/metrics
  admin token: ${token:-none (admin.token is not set: the admin API is read-only)}

  drain b1, then bring it back (watch the stats page meanwhile):
    curl -H 'Authorization: Bearer ${token:-TOKEN}' -d drain http://127.0.0.1:9900/api/pools/api/backends/b1/state
    curl -H 'Authorization: Bearer ${token:-TOKEN}' -d active http://127.0.0.1:9900/api/pools/api/backends/b1/state

  Ctrl-C stops the proxy and the backends.

MSG
wait "$lb_pid"
