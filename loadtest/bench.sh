#!/usr/bin/env bash
# `make bench`: bin/lb side by side with HAProxy and nginx, on the same two
# backends (bin/lb-backend) and the same client (wrk, one thread), each proxy
# with one worker. For every workload the proxies run in turn, round after
# round (lb haproxy nginx lb haproxy nginx ...), each started fresh for each
# measurement; the report gives the medians, the proxy's CPU time per request
# and the ratios to HAProxy. See loadtest/README.md, "make bench".
#
# Knobs (environment):
#   BENCH_ROUNDS=3        measurements per proxy and workload
#   BENCH_DURATION=5      seconds per measurement (after BENCH_WARMUP=1 s of warm-up)
#   BENCH_CONNS=50        wrk connections
#   BENCH_WORKLOADS=keepalive,newconn,64k
#   BENCH_PROXIES=lb,haproxy,nginx
#   BENCH_PORT=18400      first port tried; the ports used are the first free ones from there
#   BENCH_PIN=1           proxy on CPU 1, wrk and backends on CPU 0 (0: no pinning)
#   BENCH_NICE=-10       nice value of proxies, wrk and backends alike (when allowed;
#                         0: unchanged): less noise from other work on a busy machine
#   BENCH_PEER_HEADERS=1 HAProxy and nginx add X-Forwarded-For/-Proto and X-Request-Id
#                         as bin/lb does (0: plain proxying, less work for them)
#   BENCH_BACKEND=lb-backend   (nginx: a stand-in, only to debug the bench itself)
#   BENCH_KEEP=1          keep the work directory (configs, logs, raw runs)
#   BENCH_TEMPLATES=DIR   config templates and report.lua (default loadtest/bench), for experiments
set -euo pipefail
cd "$(dirname "$0")/.."
ROOT=$PWD

ROUNDS=${BENCH_ROUNDS:-3}
DURATION=${BENCH_DURATION:-5}
WARMUP=${BENCH_WARMUP:-1}
CONNS=${BENCH_CONNS:-50}
WORKLOADS=${BENCH_WORKLOADS:-keepalive,newconn,64k}
PROXIES=${BENCH_PROXIES:-lb,haproxy,nginx}
BASE_PORT=${BENCH_PORT:-18400}
PIN=${BENCH_PIN:-1}
BACKEND=${BENCH_BACKEND:-lb-backend}
PEER_HEADERS=${BENCH_PEER_HEADERS:-1}
HELPER=$ROOT/loadtest/bench/bench.py
TEMPLATES=${BENCH_TEMPLATES:-$ROOT/loadtest/bench}
RESULTS=$ROOT/loadtest/results

die() { echo "bench: $*" >&2; exit 1; }
log() { echo "bench: $*" >&2; }

for v in ROUNDS DURATION WARMUP CONNS BASE_PORT; do
    [[ ${!v} =~ ^[0-9]+$ && ${!v} -ge 1 ]] || die "BENCH_$v must be a positive integer (is '${!v}')"
done
[[ $ROUNDS -le 20 && $DURATION -le 120 ]] || die "BENCH_ROUNDS <= 20 and BENCH_DURATION <= 120, please"

# --- prerequisites -----------------------------------------------------------
need() { command -v "$1" >/dev/null 2>&1 || die "$1 not found ($2)"; }
need wrk "apt-get install wrk"
need python3 "apt-get install python3"
need timeout "coreutils"
[[ -x bin/lb ]] || die "bin/lb missing: run make"
IFS=, read -r -a WL <<<"$WORKLOADS"
IFS=, read -r -a PX <<<"$PROXIES"
for w in "${WL[@]}"; do
    case $w in keepalive | newconn | 64k) ;; *) die "unknown workload '$w' (keepalive, newconn, 64k)" ;; esac
done
for p in "${PX[@]}"; do
    case $p in
    lb) ;;
    haproxy) need haproxy "apt-get install haproxy" ;;
    nginx) need nginx "apt-get install nginx-light" ;;
    *) die "unknown proxy '$p' (lb, haproxy, nginx)" ;;
    esac
done
case $BACKEND in
lb-backend) [[ -x bin/lb-backend ]] || die "bin/lb-backend missing: run make" ;;
nginx) need nginx "apt-get install nginx-light"; log "WARNING: nginx stand-in backends (BENCH_BACKEND=nginx), not lb-backend" ;;
*) die "BENCH_BACKEND is lb-backend or nginx" ;;
esac

# Pinning: the proxy under test alone on CPU 1; wrk and the two backends share
# CPU 0. The same for every proxy.
if [[ $PIN == 1 ]]; then
    need taskset "apt-get install util-linux"
    [[ $(nproc) -ge 2 ]] || die "pinning needs 2 CPUs (nproc is $(nproc)); set BENCH_PIN=0"
    export BENCH_PIN_DESC="proxy on CPU 1, wrk+backends on CPU 0"
else
    export BENCH_PIN_DESC="no pinning"
fi

# Priority: on a shared machine, other work on the proxy's CPU shows up as
# noise. Everything the bench starts gets the same nice value, if allowed.
# With the kernel's autogroup scheduling (the default on most distributions),
# a nice value only counts within a session, so each process is started in
# a session of its own (setsid) whose autogroup gets the nice value; the
# caller's session is never touched.
NICE=${BENCH_NICE:--10}
[[ $NICE =~ ^-?[0-9]+$ ]] || die "BENCH_NICE must be an integer"
BOOST=0
if [[ $NICE != 0 ]]; then
    if [[ $(nice -n "$NICE" nice 2>/dev/null) == "$((NICE + $(nice)))" ]] && command -v setsid >/dev/null; then
        BOOST=1
        BENCH_PIN_DESC+=", nice $NICE"
    else
        log "note: cannot set nice $NICE (not root?); running at normal priority"
    fi
fi
AUTOGROUP=0
[[ $BOOST == 1 && $(cat /proc/sys/kernel/sched_autogroup_enabled 2>/dev/null) == 1 ]] && AUTOGROUP=1

SPAWNED=
spawn() { # cpu logfile command...: start it in the background; sets SPAWNED
    local cpu=$1 logf=$2 pre=() s
    shift 2
    [[ $PIN == 1 ]] && pre=(taskset -c "$cpu")
    [[ $BOOST == 1 ]] && pre=(setsid nice -n "$NICE" "${pre[@]}")
    "${pre[@]}" "$@" >>"$logf" 2>&1 &
    SPAWNED=$!
    PIDS+=("$SPAWNED")
    if [[ $AUTOGROUP == 1 ]]; then
        # only once it leads its own session, so that the autogroup is its own
        for _ in $(seq 100); do
            s=$(cut -d' ' -f6 "/proc/$SPAWNED/stat" 2>/dev/null) || return 0
            [[ $s == "$SPAWNED" ]] && { echo "$NICE" >"/proc/$SPAWNED/autogroup"; } 2>/dev/null && return 0
            sleep 0.01
        done
    fi
    return 0
}

# CPU time of a process, in ns: the sum of /proc/PID/task/*/schedstat (time
# on CPU, every thread, ns resolution); without schedstat, utime+stime of
# /proc/PID/stat (all threads, clock ticks).
CLK_TCK=$(getconf CLK_TCK)
if [[ -r /proc/self/schedstat ]]; then CPU_SOURCE=schedstat; else CPU_SOURCE=stat; fi
export BENCH_CPU_SOURCE=$CPU_SOURCE
cpu_ns() { # pid -> "ON_CPU_NS RUNQUEUE_WAIT_NS" (the wait is 0 without schedstat)
    local total=0 waited=0 f v w rest s
    if [[ $CPU_SOURCE == schedstat ]]; then
        for f in /proc/"$1"/task/*/schedstat; do
            [[ -r $f ]] && read -r v w rest <"$f" 2>/dev/null && total=$((total + v)) && waited=$((waited + w))
        done
    else
        s=$(<"/proc/$1/stat")
        s=${s##*) }
        read -r -a f <<<"$s"
        total=$(((f[11] + f[12]) * 1000000000 / CLK_TCK))
    fi
    echo "$total $waited"
}

# --- work directory and cleanup ------------------------------------------------
WORK=$(mktemp -d /tmp/lb-bench.XXXXXX)
PIDS=()
OK=0
cleanup() {
    local rc=$? p
    trap - EXIT INT TERM
    for p in "${PIDS[@]}"; do kill -TERM "$p" 2>/dev/null || true; done
    for _ in $(seq 30); do
        local alive=0
        for p in "${PIDS[@]}"; do kill -0 "$p" 2>/dev/null && alive=1; done
        [[ $alive == 0 ]] && break
        sleep 0.1
    done
    for p in "${PIDS[@]}"; do kill -KILL "$p" 2>/dev/null || true; done
    wait 2>/dev/null || true
    if [[ $OK == 1 && ${BENCH_KEEP:-0} != 1 ]]; then
        rm -rf "$WORK"
    else
        echo "bench: work directory kept: $WORK" >&2
    fi
    exit "$rc"
}
trap cleanup EXIT
trap 'echo "bench: interrupted" >&2; exit 130' INT TERM

forget_pid() { # pid
    local p keep=()
    for p in "${PIDS[@]}"; do [[ $p == "$1" ]] || keep+=("$p"); done
    PIDS=("${keep[@]}")
}

# The binaries, copied: a rebuild during the bench does not mix two versions.
mkdir -p "$WORK/bin"
cp bin/lb "$WORK/bin/lb"
[[ $BACKEND == lb-backend ]] && cp bin/lb-backend "$WORK/bin/lb-backend"
LB=$WORK/bin/lb
export BENCH_LB_BIN=$LB

# Ports: backends, proxy listener, lb admin port.
read -r B1 B2 PORT APORT <<<"$(python3 "$HELPER" ports "$BASE_PORT" 4)"

render() { # template output
    local strip=()
    [[ $PEER_HEADERS == 1 ]] || strip=(-e '/# hdr$/d')
    sed "${strip[@]}" -e "s|@DIR@|$WORK|g" -e "s|@PORT@|$PORT|g" -e "s|@ADMIN_PORT@|$APORT|g" \
        -e "s|@B1@|$B1|g" -e "s|@B2@|$B2|g" "$1" >"$2"
}

accepts() { (exec 3<>"/dev/tcp/127.0.0.1/$1") 2>/dev/null; }

wait_accepting() { # pid port what logfile
    for _ in $(seq 100); do
        accepts "$2" && return 0
        kill -0 "$1" 2>/dev/null || { tail -n 20 "$4" >&2 2>/dev/null; die "$3 exited before accepting on port $2 (log: $4)"; }
        sleep 0.05
    done
    tail -n 20 "$4" >&2 2>/dev/null
    die "$3 not accepting on port $2 after 5 s (log: $4)"
}

stop() { # pid
    kill -TERM "$1" 2>/dev/null || true
    for _ in $(seq 50); do
        kill -0 "$1" 2>/dev/null || break
        sleep 0.1
    done
    if kill -0 "$1" 2>/dev/null; then
        log "pid $1 still running 5 s after SIGTERM; killing it"
        kill -KILL "$1" 2>/dev/null || true
    fi
    wait "$1" 2>/dev/null || true
    forget_pid "$1"
}

# --- backends ------------------------------------------------------------------
mkdir -p "$WORK/www/bytes" "$WORK/nginx-tmp" "$WORK/backend-tmp"
if [[ $BACKEND == lb-backend ]]; then
    for b in 1 2; do
        port_var=B$b
        spawn 0 "$WORK/backend-b$b.log" "$WORK/bin/lb-backend" --listen "127.0.0.1:${!port_var}" --name "b$b"
        wait_accepting "$SPAWNED" "${!port_var}" "lb-backend b$b" "$WORK/backend-b$b.log"
    done
else
    head -c 65536 /dev/zero | tr '\0' x >"$WORK/www/bytes/65536"
    render "$TEMPLATES/nginx-backend.conf.in" "$WORK/backend-nginx.conf"
    spawn 0 "$WORK/backend-nginx.log" nginx -e "$WORK/backend-nginx-error.log" -p "$WORK" -c "$WORK/backend-nginx.conf"
    wait_accepting "$SPAWNED" "$B1" "nginx backend" "$WORK/backend-nginx.log"
    wait_accepting "$SPAWNED" "$B2" "nginx backend" "$WORK/backend-nginx.log"
fi

# --- proxies ---------------------------------------------------------------------
render "$TEMPLATES/lb.conf.in" "$WORK/lb.conf"
render "$TEMPLATES/haproxy.cfg.in" "$WORK/haproxy.cfg"
render "$TEMPLATES/nginx.conf.in" "$WORK/nginx.conf"
for p in "${PX[@]}"; do # check each config once, clearly
    case $p in
    lb) "$LB" -t -c "$WORK/lb.conf" >"$WORK/check-lb.log" 2>&1 ||
        { cat "$WORK/check-lb.log" >&2; die "bin/lb rejects the bench config"; } ;;
    haproxy) haproxy -c -q -f "$WORK/haproxy.cfg" >"$WORK/check-haproxy.log" 2>&1 ||
        { cat "$WORK/check-haproxy.log" >&2; die "haproxy rejects the bench config"; } ;;
    nginx) nginx -t -q -e "$WORK/nginx-error.log" -p "$WORK" -c "$WORK/nginx.conf" >"$WORK/check-nginx.log" 2>&1 ||
        { cat "$WORK/check-nginx.log" >&2; die "nginx rejects the bench config"; } ;;
    esac
done

PROXY_PID=
start_proxy() { # name; sets PROXY_PID
    local logf="$WORK/$1.log"
    case $1 in
    lb) spawn 1 "$logf" "$LB" -c "$WORK/lb.conf" ;;
    haproxy) spawn 1 "$logf" haproxy -db -f "$WORK/haproxy.cfg" ;;
    nginx) spawn 1 "$logf" nginx -e "$WORK/nginx-error.log" -p "$WORK" -c "$WORK/nginx.conf" ;;
    esac
    PROXY_PID=$SPAWNED
    wait_accepting "$PROXY_PID" "$PORT" "$1" "$logf"
}

# --- workloads -------------------------------------------------------------------
wrk_args() { # workload
    case $1 in
    keepalive) echo "http://127.0.0.1:$PORT/" ;;
    newconn) echo "-H Connection:close http://127.0.0.1:$PORT/" ;;
    64k) echo "http://127.0.0.1:$PORT/bytes/65536" ;;
    esac
}

run_wrk() { # seconds workload outfile
    # In the background and waited for, so that a signal to bench.sh is
    # handled at once (and wrk is stopped by the cleanup), not after wrk ends.
    local pid rc=0
    : >"$3"
    # shellcheck disable=SC2046
    spawn 0 "$3" timeout -k 2 $(($1 + 15)) wrk -t1 -c"$CONNS" -d"$1"s --latency \
        -s "$TEMPLATES/report.lua" $(wrk_args "$2")
    pid=$SPAWNED
    wait "$pid" || rc=$?
    forget_pid "$pid"
    return "$rc"
}

# Connections and requests the two backends have accepted so far (from
# lb-backend's /__stats): tells whether the proxy reuses backend connections.
backend_counts() { # -> "CONNECTIONS REQUESTS", or "-1 -1"
    local port body c=0 q=0 v
    if [[ $BACKEND != lb-backend ]]; then echo "-1 -1"; return; fi
    for port in "$B1" "$B2"; do
        body=$( (exec 3<>"/dev/tcp/127.0.0.1/$port" &&
            printf 'GET /__stats HTTP/1.1\r\nHost: bench\r\nConnection: close\r\n\r\n' >&3 &&
            timeout 2 cat <&3) 2>/dev/null) || { echo "-1 -1"; return; }
        v=$(grep -o '"connections": *[0-9]*' <<<"$body" | grep -o '[0-9]*$') || { echo "-1 -1"; return; }
        c=$((c + v))
        v=$(grep -o '"requests": *[0-9]*' <<<"$body" | head -n1 | grep -o '[0-9]*$') || { echo "-1 -1"; return; }
        q=$((q + v))
    done
    echo "$c $q"
}

RUNS=$WORK/runs.jsonl
: >"$RUNS"
START=$(date +%s)
export BENCH_START_ISO BENCH_STAMP
BENCH_START_ISO=$(date +%Y-%m-%dT%H:%M:%S%z)
BENCH_STAMP=$(date +%Y%m%d-%H%M%S)
n_total=$((${#WL[@]} * ROUNDS * ${#PX[@]}))
n=0
read -r load1 _ </proc/loadavg
if awk -v l="$load1" -v n="$(nproc)" 'BEGIN { exit !(l > n / 2) }'; then
    log "WARNING: load average $load1 on $(nproc) CPUs before starting: other work will skew the numbers"
fi
log "$n_total runs of ${DURATION}s (+${WARMUP}s warm-up): workloads ${WORKLOADS}; proxies ${PROXIES}; $ROUNDS rounds; $BENCH_PIN_DESC"
for w in "${WL[@]}"; do
    for r in $(seq "$ROUNDS"); do
        for p in "${PX[@]}"; do
            n=$((n + 1))
            start_proxy "$p"
            out=$WORK/wrk-$w-$p-$r.txt
            run_wrk "$WARMUP" "$w" "$out.warmup" || { cat "$out.warmup" >&2; die "wrk warm-up failed ($w, $p)"; }
            read -r bc0 bq0 <<<"$(backend_counts)"
            read -r c0 q0 <<<"$(cpu_ns "$PROXY_PID")"
            run_wrk "$DURATION" "$w" "$out" || { cat "$out" >&2; die "wrk failed ($w, $p)"; }
            read -r c1 q1 <<<"$(cpu_ns "$PROXY_PID")"
            read -r bc1 bq1 <<<"$(backend_counts)"
            if [[ $bc0 -ge 0 && $bc1 -ge 0 ]]; then
                bconn=$((bc1 - bc0 - 2)) breq=$((bq1 - bq0)) # less the 2 /__stats connections
            else
                bconn=-1 breq=-1
            fi
            kill -0 "$PROXY_PID" 2>/dev/null || die "$p died during the run (log: $WORK/$p.log)"
            line=$(grep -m1 '^BENCH ' "$out") || { cat "$out" >&2; die "no result line from wrk ($w, $p)"; }
            stop "$PROXY_PID"
            printf '{"workload": "%s", "proxy": "%s", "round": %d, "cpu_ns": %d, "runq_wait_ns": %d, "cpu_source": "%s", "loadavg": %s, "backend_conns": %d, "backend_reqs": %d, "wrk": %s}\n' \
                "$w" "$p" "$r" $((c1 - c0)) $((q1 - q0)) "$CPU_SOURCE" "$(cut -d' ' -f1 /proc/loadavg)" "$bconn" "$breq" "${line#BENCH }" >>"$RUNS"
            python3 - "$RUNS" "$n" "$n_total" <<'PY' >&2
import json, sys
r = json.loads(open(sys.argv[1]).read().splitlines()[-1]); w = r["wrk"]
rps = w["requests"] / (w["duration_us"] / 1e6)
errs = {k: v for k, v in w["errors"].items() if v}
print(f"bench: [{sys.argv[2]}/{sys.argv[3]}] {r['workload']:<9} {r['proxy']:<7} round {r['round']}: "
      f"{rps:9.0f} req/s  p99 {w['latency_us']['p99'] / 1000:.3f} ms  "
      f"{r['cpu_ns'] / 1000 / max(w['requests'], 1):.2f} us/req"
      + (f"  ERRORS {errs}" if errs else ""))
PY
        done
    done
done

export BENCH_ROUNDS=$ROUNDS BENCH_DURATION=$DURATION BENCH_WARMUP=$WARMUP BENCH_CONNS=$CONNS
export BENCH_WORKLOADS=$WORKLOADS BENCH_PROXIES=$PROXIES BENCH_BACKEND=$BACKEND BENCH_PEER_HEADERS=$PEER_HEADERS
export BENCH_ELAPSED_S=$(($(date +%s) - START))
python3 "$HELPER" report "$RUNS" "$RESULTS"
OK=1
echo "elapsed: $(($(date +%s) - START)) s"
