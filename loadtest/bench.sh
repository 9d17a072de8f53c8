#!/usr/bin/env bash
# `make bench`: bin/lb side by side with HAProxy and nginx, on the same two
# backends (bin/lb-backend) and the same clients (wrk for the closed loops,
# bin/lb-load for the open loop and the storm, openssl s_time for TLS
# handshakes), each proxy with BENCH_WORKERS workers (one). The peers run in
# two configurations: doing the header work lb does (haproxy, nginx) and plain
# (haproxy-plain, nginx-plain); lb-nosplice is lb with splicing off. For every
# workload the proxies run in turn, round after round (lb haproxy nginx lb
# haproxy nginx ...), each started fresh for each measurement; the report gives
# the medians, the proxy's CPU time per request and the ratios to HAProxy, one
# table per peer configuration. Then the memory each proxy holds per idle
# keep-alive connection (plain, and TLS with BENCH_TLS=1). Then the reload
# storm: each proxy reloaded every 100 ms under open-loop load, failed requests
# side by side. Then bin/lb alone on locality tiers and consistent hashing
# (loadtest/bench/locality.py), and last what reading its stats costs with
# 1,000 backends (loadtest/bench/stats_cost.py). See loadtest/README.md,
# "make bench".
#
# Knobs (environment):
#   BENCH_ROUNDS=3        measurements per proxy and workload
#   BENCH_DURATION=5      seconds per measurement (after BENCH_WARMUP=1 s of warm-up)
#   BENCH_CONNS=50        client connections (open loop: the most open at once)
#   BENCH_CLIENT=wrk      closed-loop client: wrk or lb-load (the open loop is always lb-load)
#   BENCH_WORKLOADS=keepalive,newconn,64k,openloop (+ tls-full,tls-resumed,tls-keepalive
#                         with BENCH_TLS=1)
#   BENCH_TLS=0           1: add the TLS workloads to the default list and the memory of
#                         idle TLS connections to that of plain ones (about 5 minutes more)
#   BENCH_IDLE_CONNS=5000 idle keep-alive client connections opened to each of lb, haproxy
#                         and nginx (and lb-base), per mode, for the memory per connection
#                         (0: skip)
#   BENCH_IDLE_MODES=plain  which connections to hold idle: plain and/or tls (default
#                         tls,plain with BENCH_TLS=1)
#   BENCH_OPEN_FRACTION=0.5  open-loop rate as a fraction of HAProxy's median keepalive req/s
#                         measured in this run (so keepalive must come first)
#   BENCH_OPEN_RATE=R     a fixed open-loop (and storm) rate in req/s instead
#   BENCH_STORM_SECONDS=8    reload storm per proxy and mode (0: no storm)
#   BENCH_STORM_INTERVAL_MS=100  time between two reload signals
#   BENCH_STORM_MODES=keepalive   the storm's load: keep-alive and/or newconn (a new
#                         connection per request), comma-separated
#   BENCH_PROXIES=lb,lb-nosplice,haproxy,nginx,haproxy-plain,nginx-plain
#                         (add lb-base to measure BENCH_LB_BASE too); lb-nosplice is lb
#                         with lb.splice = "off", measured in 64k only; haproxy-plain and
#                         nginx-plain are the peers without the header rules, measured in
#                         every workload but openloop
#   BENCH_WORKERS=1       workers of every proxy: lb.workers, HAProxy nbthread, nginx
#                         worker_processes (2: nginx with a master; the proxy may use both
#                         CPUs, shared with client and backends; the results go to
#                         BENCH_RESULTS/workers2, and the locality runs and the stats step,
#                         which do not depend on it, are off unless asked for)
#   BENCH_LB_BASE=PATH    another lb binary (a build of an earlier commit), measured as
#                         proxy "lb-base" with the same config: before/after in one run
#   BENCH_PORT=18400      first port tried; the ports used are the first free ones from there
#   BENCH_PIN=1           proxy on CPU 1, client and backends on CPU 0 (0: no pinning)
#   BENCH_NICE=-10       nice value of proxies, client and backends alike (when allowed;
#                         0: unchanged): less noise from other work on a busy machine
#   BENCH_PEER_HEADERS=1 HAProxy and nginx add X-Forwarded-For/-Proto and X-Request-Id
#                         as bin/lb does (0: plain proxying, less work for them)
#   BENCH_BACKEND=lb-backend   (nginx: a stand-in, only to debug the bench itself)
#   BENCH_KEEP=1          keep the work directory (configs, logs, raw runs)
#   BENCH_TEMPLATES=DIR   config templates and report.lua (default loadtest/bench), for experiments
#   BENCH_RESULTS=DIR     where the tables and JSON go (default loadtest/results)
#   BENCH_LOCALITY=1      the locality and hash runs of bin/lb alone (0: skip them; about 1 min)
#   BENCH_LOCALITY_SECONDS=5  seconds per measurement there (after 1 s of warm-up)
#   BENCH_LOCALITY_RATE=2000  their open-loop rate, req/s
#   BENCH_STATS=1         the cost of /stats.json and /metrics with many backends, and
#                         keep-alive req/s with and without a stats poller (0: skip; about 40 s)
#   BENCH_STATS_BACKENDS=1000  backends in its pool
#   BENCH_STATS_SECONDS=3 seconds per load run there (four pairs: without, with the poller)
set -euo pipefail
cd "$(dirname "$0")/.."
ROOT=$PWD

die() { echo "bench: $*" >&2; exit 1; }
log() { echo "bench: $*" >&2; }

ROUNDS=${BENCH_ROUNDS:-3}
DURATION=${BENCH_DURATION:-5}
WARMUP=${BENCH_WARMUP:-1}
CONNS=${BENCH_CONNS:-50}
CLIENT=${BENCH_CLIENT:-wrk}
TLS=${BENCH_TLS:-0}
[[ $TLS == 0 || $TLS == 1 ]] || die "BENCH_TLS is 0 or 1 (is '$TLS')"
DEFAULT_WORKLOADS=keepalive,newconn,64k,openloop
[[ $TLS == 1 ]] && DEFAULT_WORKLOADS+=,tls-full,tls-resumed,tls-keepalive
WORKLOADS=${BENCH_WORKLOADS:-$DEFAULT_WORKLOADS}
IDLE_CONNS=${BENCH_IDLE_CONNS:-5000}
DEFAULT_IDLE_MODES=plain
[[ $TLS == 1 ]] && DEFAULT_IDLE_MODES=tls,plain
IDLE_MODES=${BENCH_IDLE_MODES:-$DEFAULT_IDLE_MODES}
OPEN_FRACTION=${BENCH_OPEN_FRACTION:-0.5}
OPEN_RATE_FIXED=${BENCH_OPEN_RATE:-}
STORM_SECONDS=${BENCH_STORM_SECONDS:-8}
STORM_INTERVAL_MS=${BENCH_STORM_INTERVAL_MS:-100}
STORM_MODES=${BENCH_STORM_MODES:-keepalive}
PROXIES=${BENCH_PROXIES:-lb,lb-nosplice,haproxy,nginx,haproxy-plain,nginx-plain}
WORKERS=${BENCH_WORKERS:-1}
BASE_PORT=${BENCH_PORT:-18400}
PIN=${BENCH_PIN:-1}
BACKEND=${BENCH_BACKEND:-lb-backend}
PEER_HEADERS=${BENCH_PEER_HEADERS:-1}
HELPER=$ROOT/loadtest/bench/bench.py
TEMPLATES=${BENCH_TEMPLATES:-$ROOT/loadtest/bench}
[[ $WORKERS == 1 || $WORKERS == 2 ]] || die "BENCH_WORKERS is 1 or 2 (is '$WORKERS')"
# A two-worker run is kept apart from the one-worker figures, and skips by default
# what it would only repeat: the locality runs and the stats step use one worker.
if [[ $WORKERS == 2 ]]; then
    RESULTS=${BENCH_RESULTS:-$ROOT/loadtest/results/workers2}
    LOCALITY=${BENCH_LOCALITY:-0}
    STATS=${BENCH_STATS:-0}
else
    RESULTS=${BENCH_RESULTS:-$ROOT/loadtest/results}
    LOCALITY=${BENCH_LOCALITY:-1}
    STATS=${BENCH_STATS:-1}
fi

for v in ROUNDS DURATION WARMUP CONNS BASE_PORT; do
    [[ ${!v} =~ ^[0-9]+$ && ${!v} -ge 1 ]] || die "BENCH_$v must be a positive integer (is '${!v}')"
done
[[ $ROUNDS -le 20 && $DURATION -le 120 ]] || die "BENCH_ROUNDS <= 20 and BENCH_DURATION <= 120, please"
[[ $STORM_SECONDS =~ ^[0-9]+$ && $STORM_SECONDS -le 120 ]] || die "BENCH_STORM_SECONDS must be 0..120 (is '$STORM_SECONDS')"
[[ $STORM_INTERVAL_MS =~ ^[0-9]+$ && $STORM_INTERVAL_MS -ge 10 ]] || die "BENCH_STORM_INTERVAL_MS must be an integer >= 10"
[[ $OPEN_FRACTION =~ ^(0?\.[0-9]+|1(\.0*)?)$ && ! $OPEN_FRACTION =~ ^0?\.0*$ ]] || die "BENCH_OPEN_FRACTION must be in (0, 1] (is '$OPEN_FRACTION')"
[[ -z $OPEN_RATE_FIXED || $OPEN_RATE_FIXED =~ ^[1-9][0-9]*$ ]] || die "BENCH_OPEN_RATE must be a positive integer (req/s)"
[[ $LOCALITY == 0 || $LOCALITY == 1 ]] || die "BENCH_LOCALITY is 0 or 1 (is '$LOCALITY')"
# (HAProxy takes two file descriptors per connection, and the limit here is 20000)
[[ $IDLE_CONNS =~ ^[0-9]+$ && $IDLE_CONNS -le 9000 ]] || die "BENCH_IDLE_CONNS must be 0..9000 (is '$IDLE_CONNS')"
[[ ${BENCH_LOCALITY_SECONDS:-5} =~ ^[1-9][0-9]*$ && ${BENCH_LOCALITY_SECONDS:-5} -le 120 ]] ||
    die "BENCH_LOCALITY_SECONDS must be 1..120 (is '${BENCH_LOCALITY_SECONDS:-}')"
[[ ${BENCH_LOCALITY_RATE:-2000} =~ ^[1-9][0-9]*$ ]] || die "BENCH_LOCALITY_RATE must be a positive integer (req/s)"
[[ $STATS == 0 || $STATS == 1 ]] || die "BENCH_STATS is 0 or 1 (is '$STATS')"
[[ ${BENCH_STATS_BACKENDS:-1000} =~ ^[1-9][0-9]*$ && ${BENCH_STATS_BACKENDS:-1000} -ge 2 && ${BENCH_STATS_BACKENDS:-1000} -le 100000 ]] ||
    die "BENCH_STATS_BACKENDS must be 2..100000 (is '${BENCH_STATS_BACKENDS:-}')"
[[ ${BENCH_STATS_SECONDS:-3} =~ ^[1-9][0-9]*$ && ${BENCH_STATS_SECONDS:-3} -le 120 ]] ||
    die "BENCH_STATS_SECONDS must be 1..120 (is '${BENCH_STATS_SECONDS:-}')"

# --- prerequisites -----------------------------------------------------------
need() { command -v "$1" >/dev/null 2>&1 || die "$1 not found ($2)"; }
case $CLIENT in
wrk) need wrk "apt-get install wrk" ;;
lb-load) ;;
*) die "BENCH_CLIENT is lb-load or wrk (is '$CLIENT')" ;;
esac
need python3 "apt-get install python3"
need openssl "apt-get install openssl" # the bench's certificate, and s_time
# the interpreter itself, not a wrapper (pyenv's shim costs 0.2-0.5 s a call)
PY=$(python3 -c 'import sys; print(sys.executable)') && [[ -x $PY ]] || PY=python3
need timeout "coreutils"
[[ -x bin/lb ]] || die "bin/lb missing: run make"
[[ -x bin/lb-load ]] || die "bin/lb-load missing: run make"
IFS=, read -r -a WL <<<"$WORKLOADS"
IFS=, read -r -a PX <<<"$PROXIES"
IDLE=()
[[ $IDLE_CONNS -gt 0 ]] && IFS=, read -r -a IDLE <<<"$IDLE_MODES"
for m in "${IDLE[@]}"; do
    case $m in tls | plain) ;; *) die "unknown idle mode '$m' (tls, plain)" ;; esac
done
STORM=()
[[ $STORM_SECONDS -gt 0 ]] && IFS=, read -r -a STORM <<<"$STORM_MODES"
seen_keepalive=0
for w in "${WL[@]}"; do
    case $w in
    keepalive) seen_keepalive=1 ;;
    newconn | 64k) ;;
    tls-full | tls-resumed) ;;
    tls-keepalive) need wrk "apt-get install wrk" ;;
    openloop)
        # its rate comes from HAProxy's keepalive result of this same run
        [[ -n $OPEN_RATE_FIXED || ($seen_keepalive == 1 && ,$PROXIES, == *,haproxy,*) ]] ||
            die "openloop needs keepalive before it and haproxy among the proxies (or BENCH_OPEN_RATE)" ;;
    *) die "unknown workload '$w' (keepalive, newconn, 64k, openloop, tls-full, tls-resumed, tls-keepalive)" ;;
    esac
done
for m in "${STORM[@]}"; do
    case $m in keepalive | newconn) ;; *) die "unknown storm mode '$m' (newconn, keepalive)" ;; esac
done
if [[ ${#STORM[@]} -gt 0 && -z $OPEN_RATE_FIXED ]] &&
    [[ ,$PROXIES, != *,haproxy,* || ,$WORKLOADS, != *,keepalive,* ]]; then
    die "the reload storm runs at a fraction of HAProxy's measured peak: it needs haproxy and keepalive (or BENCH_OPEN_RATE, or BENCH_STORM_SECONDS=0)"
fi
for p in "${PX[@]}"; do
    case $p in
    lb | lb-nosplice) ;;
    lb-base) [[ -n ${BENCH_LB_BASE:-} && -x ${BENCH_LB_BASE:-} ]] || die "lb-base needs BENCH_LB_BASE=PATH of an lb binary" ;;
    haproxy | haproxy-plain) need haproxy "apt-get install haproxy" ;;
    nginx | nginx-plain) need nginx "apt-get install nginx-light" ;;
    *) die "unknown proxy '$p' (lb, lb-nosplice, lb-base, haproxy, nginx, haproxy-plain, nginx-plain)" ;;
    esac
done
if [[ $LOCALITY == 1 && ,$PROXIES, != *,lb,* ]]; then
    log "note: no locality and hash runs: they measure lb, which is not among BENCH_PROXIES"
    LOCALITY=0
fi
if [[ $STATS == 1 && ,$PROXIES, != *,lb,* ]]; then
    log "note: no stats step: it measures lb, which is not among BENCH_PROXIES"
    STATS=0
fi
[[ $LOCALITY == 0 && $STATS == 0 || -x bin/lb-backend ]] || die "bin/lb-backend missing (the locality runs and the stats step need it): run make"
case $BACKEND in
lb-backend) [[ -x bin/lb-backend ]] || die "bin/lb-backend missing: run make" ;;
nginx) need nginx "apt-get install nginx-light"; log "WARNING: nginx stand-in backends (BENCH_BACKEND=nginx), not lb-backend" ;;
*) die "BENCH_BACKEND is lb-backend or nginx" ;;
esac

# Pinning: the proxy under test alone on CPU 1 (in the storm: its master and
# workers); the client (and the storm's signal sender) and the two backends
# share CPU 0. The same for every proxy.
PROXY_CPU=1
if [[ $PIN == 1 ]]; then
    need taskset "apt-get install util-linux"
    [[ $(nproc) -ge 2 ]] || die "pinning needs 2 CPUs (nproc is $(nproc)); set BENCH_PIN=0"
    export BENCH_PIN_DESC="proxy on CPU 1, client+backends on CPU 0"
    if [[ $WORKERS == 2 ]]; then
        # two workers need both CPUs: the client and backends stay on CPU 0 and share it
        PROXY_CPU=0,1
        BENCH_PIN_DESC="proxy on CPUs 0-1, client+backends on CPU 0"
    fi
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
cpu_ns() { # pid -> "ON_CPU_NS RUNQUEUE_WAIT_NS" (the wait is 0 without schedstat),
    # the process and its descendants (nginx's workers under BENCH_WORKERS=2)
    local total=0 waited=0 f v w rest s p
    for p in "$1" $(descendants "$1"); do
        if [[ $CPU_SOURCE == schedstat ]]; then
            for f in /proc/"$p"/task/*/schedstat; do
                [[ -r $f ]] && read -r v w rest <"$f" 2>/dev/null && total=$((total + v)) && waited=$((waited + w))
            done
        else
            s=$(<"/proc/$p/stat")
            s=${s##*) }
            read -r -a f <<<"$s"
            total=$((total + (f[11] + f[12]) * 1000000000 / CLK_TCK))
        fi
    done
    echo "$total $waited"
}

# Descendants of a process (its children, theirs, ...): the workers of a
# master-worker HAProxy or nginx in the reload storm.
descendants() { # pid -> pids, one per line
    local c k line
    for c in /proc/"$1"/task/*/children; do
        line=
        { read -r line <"$c" || true; } 2>/dev/null # no newline at its end
        for k in $line; do
            echo "$k"
            descendants "$k"
        done
    done
}

# Alive and not a zombie (an orphaned worker is reaped by init, maybe late).
alive() { # pid
    local s
    { read -r s <"/proc/$1/stat"; } 2>/dev/null || return 1
    s=${s##*) }
    [[ ${s:0:1} != Z && ${s:0:1} != X ]]
}

# --- work directory and cleanup ------------------------------------------------
WORK=$(mktemp -d /tmp/lb-bench.XXXXXX)
PIDS=()
OK=0
cleanup() {
    local rc=$? p all=()
    trap - EXIT INT TERM
    # the processes started, and their children (workers of a storm's master),
    # collected before anything is signalled
    local kids
    for p in "${PIDS[@]}"; do
        mapfile -t kids < <(descendants "$p")
        all+=("$p" "${kids[@]}")
    done
    for p in "${all[@]}"; do kill -TERM "$p" 2>/dev/null || true; done
    for _ in $(seq 30); do
        local any=0
        for p in "${all[@]}"; do alive "$p" && any=1; done
        [[ $any == 0 ]] && break
        sleep 0.1
    done
    for p in "${all[@]}"; do alive "$p" && { kill -KILL "$p" 2>/dev/null || true; }; done
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
cp bin/lb-load "$WORK/bin/lb-load"
LOAD=$WORK/bin/lb-load
[[ $BACKEND == lb-backend || $LOCALITY == 1 || $STATS == 1 ]] && cp bin/lb-backend "$WORK/bin/lb-backend"
LB=$WORK/bin/lb
export BENCH_LB_BIN=$LB
LB_BASE=
if [[ ,$PROXIES, == *,lb-base,* ]]; then
    cp "$BENCH_LB_BASE" "$WORK/bin/lb-base"
    LB_BASE=$WORK/bin/lb-base
fi

# Ports: backends, proxy listener, lb admin port, proxy TLS listener.
read -r B1 B2 PORT APORT TPORT <<<"$("$PY" "$HELPER" ports "$BASE_PORT" 5)"

# One ECDSA P-256 certificate for every proxy's TLS listener (HAProxy wants
# the certificate and its key in one file).
mkdir -p "$WORK/tls"
openssl req -x509 -newkey ec -pkeyopt ec_paramgen_curve:P-256 -nodes -days 2 -subj /CN=bench.test \
    -addext subjectAltName=DNS:bench.test,IP:127.0.0.1 -keyout "$WORK/tls/site.key" \
    -out "$WORK/tls/site.pem" >"$WORK/tls/openssl.log" 2>&1 || { cat "$WORK/tls/openssl.log" >&2; die "cannot make the TLS certificate"; }
cat "$WORK/tls/site.pem" "$WORK/tls/site.key" >"$WORK/tls/site-haproxy.pem"

render() { # template output [plain]
    local strip=()
    [[ $PEER_HEADERS == 1 && -z ${3:-} ]] || strip=(-e '/# hdr$/d')
    sed "${strip[@]}" -e "s|@DIR@|$WORK|g" -e "s|@PORT@|$PORT|g" -e "s|@ADMIN_PORT@|$APORT|g" \
        -e "s|@B1@|$B1|g" -e "s|@B2@|$B2|g" -e "s|@TLS_PORT@|$TPORT|g" -e "s|@WORKERS@|$WORKERS|g" "$1" >"$2"
    ! grep -q '@[A-Z_]*@' "$2" || die "$2 keeps a placeholder: $(grep -o '@[A-Z_]*@' "$2" | sort -u | tr '\n' ' ')"
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

stop_tree() { # pid: a master and its workers (the workers listed first)
    local kids p
    kids=$(descendants "$1")
    stop "$1"
    for p in $kids; do alive "$p" && { kill -TERM "$p" 2>/dev/null || true; }; done
    for _ in $(seq 30); do
        local any=0
        for p in $kids; do alive "$p" && any=1; done
        [[ $any == 0 ]] && return 0
        sleep 0.1
    done
    for p in $kids; do alive "$p" && { log "worker $p still running after its master stopped; killing it"; kill -KILL "$p" 2>/dev/null || true; }; done
    return 0
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
render "$TEMPLATES/haproxy.cfg.in" "$WORK/haproxy-plain.cfg" plain
render "$TEMPLATES/nginx.conf.in" "$WORK/nginx-plain.conf" plain
sed -e 's|^lb: {|lb: { splice = "off";|' "$WORK/lb.conf" >"$WORK/lb-nosplice.conf"
grep -q 'splice = "off"' "$WORK/lb-nosplice.conf" || die "cannot make lb-nosplice.conf (the lb line of lb.conf.in changed?)"
if [[ $WORKERS == 2 ]]; then
    # nginx runs one process only without a master: two workers need one
    for c in nginx nginx-plain; do
        sed -i -e 's/^master_process off;/master_process on;/' "$WORK/$c.conf"
    done
fi
# Idle connections: room for BENCH_IDLE_CONNS client connections in each peer
# (the file-descriptor limit here is 20000: HAProxy wants two per connection).
sed -e 's/^\( *maxconn\) [0-9]*/\1 9500/' "$WORK/haproxy.cfg" >"$WORK/haproxy-idle.cfg"
sed -e 's/^\( *worker_connections\) [0-9]*;/\1 12000;/' -e 's/^worker_processes \(.*\);/worker_processes \1;\nworker_rlimit_nofile 16000;/' \
    "$WORK/nginx.conf" >"$WORK/nginx-idle.conf"
{ grep -q '^ *maxconn 9500$' "$WORK/haproxy-idle.cfg" && grep -q 'worker_connections 12000;' "$WORK/nginx-idle.conf" &&
    grep -q '^worker_rlimit_nofile 16000;' "$WORK/nginx-idle.conf"; } ||
    die "cannot make the idle connections' configs (maxconn/worker_connections lines of the templates changed?)"
# The reload storm's nginx: the same, with a master process (reloads need one)
# and notice-level logging (each reload and each new worker leaves a line).
sed -e 's/^master_process off;/master_process on;/' -e 's|^\(error_log .*\) warn;|\1 notice;|' \
    -e 's|nginx-error\.log|nginx-storm-error.log|' -e 's|/nginx\.pid;|/nginx-storm.pid;|' \
    "$WORK/nginx.conf" >"$WORK/nginx-storm.conf"
{ grep -q '^master_process on;' "$WORK/nginx-storm.conf" && grep -q '^error_log .* notice;' "$WORK/nginx-storm.conf"; } ||
    die "cannot make the storm's nginx config (master_process/error_log lines of nginx.conf.in changed?)"
for p in "${PX[@]}"; do # check each config once, clearly
    case $p in
    lb) "$LB" -t -c "$WORK/lb.conf" >"$WORK/check-lb.log" 2>&1 ||
        { cat "$WORK/check-lb.log" >&2; die "bin/lb rejects the bench config"; } ;;
    lb-base) "$LB_BASE" -t -c "$WORK/lb.conf" >"$WORK/check-lb-base.log" 2>&1 ||
        { cat "$WORK/check-lb-base.log" >&2; die "BENCH_LB_BASE rejects the bench config"; } ;;
    lb-nosplice) "$LB" -t -c "$WORK/lb-nosplice.conf" >"$WORK/check-lb-nosplice.log" 2>&1 ||
        { cat "$WORK/check-lb-nosplice.log" >&2; die "bin/lb rejects the bench config with splice off"; } ;;
    haproxy | haproxy-plain)
        cs=("$p")
        [[ $p == haproxy ]] && cs+=(haproxy-idle)
        for c in "${cs[@]}"; do
            haproxy -c -q -f "$WORK/$c.cfg" >"$WORK/check-$c.log" 2>&1 ||
                { cat "$WORK/check-$c.log" >&2; die "haproxy rejects the bench config ($c.cfg)"; }
        done ;;
    nginx-plain) nginx -t -q -e "$WORK/$p-error.log" -p "$WORK" -c "$WORK/$p.conf" >"$WORK/check-$p.log" 2>&1 ||
        { cat "$WORK/check-$p.log" >&2; die "nginx rejects the bench config ($p.conf)"; } ;;
    nginx) for c in nginx nginx-storm nginx-idle; do
        nginx -t -q -e "$WORK/$c-error.log" -p "$WORK" -c "$WORK/$c.conf" >"$WORK/check-$c.log" 2>&1 ||
            { cat "$WORK/check-$c.log" >&2; die "nginx rejects the bench config ($c.conf)"; }
    done ;;
    esac
done

PROXY_PID=
start_proxy() { # name [storm]; sets PROXY_PID
    local logf="$WORK/$1${2:+-$2}.log"
    local cpu=$PROXY_CPU
    case $1${2:+-$2} in
    lb | lb-storm | lb-idle) spawn "$cpu" "$logf" "$LB" -c "$WORK/lb.conf" ;;
    lb-nosplice) spawn "$cpu" "$logf" "$LB" -c "$WORK/lb-nosplice.conf" ;;
    lb-base | lb-base-storm | lb-base-idle) spawn "$cpu" "$logf" "$LB_BASE" -c "$WORK/lb.conf" ;;
    haproxy | haproxy-plain | haproxy-idle) spawn "$cpu" "$logf" haproxy -db -f "$WORK/$1${2:+-$2}.cfg" ;;
    # master-worker, master in the foreground; SIGUSR2 to the master reloads
    haproxy-storm) spawn "$cpu" "$logf" haproxy -W -db -f "$WORK/haproxy.cfg" ;;
    nginx | nginx-plain | nginx-idle) spawn "$cpu" "$logf" nginx -e "$WORK/$1${2:+-$2}-error.log" -p "$WORK" -c "$WORK/$1${2:+-$2}.conf" ;;
    # master and one worker, master in the foreground; SIGHUP to the master reloads
    nginx-storm) spawn "$cpu" "$logf" nginx -e "$WORK/nginx-storm-error.log" -p "$WORK" -c "$WORK/nginx-storm.conf" ;;
    esac
    PROXY_PID=$SPAWNED
    wait_accepting "$PROXY_PID" "$PORT" "$1" "$logf"
    wait_accepting "$PROXY_PID" "$TPORT" "$1" "$logf"
}

# --- workloads -------------------------------------------------------------------
# The client of a workload: wrk or lb-load for the closed loops (BENCH_CLIENT),
# lb-load for the open loop. Both end with one line of JSON (wrk's through
# report.lua, prefixed "BENCH "; lb-load's --json), which result_line reads.
client_of() { # workload
    case $1 in
    openloop) echo lb-load ;;
    tls-full | tls-resumed) echo s_time ;;
    tls-keepalive) echo wrk ;; # (lb-load speaks no TLS)
    *) echo "$CLIENT" ;;
    esac
}

client_cmd() { # workload duration (5s, 1500ms) [rate] -> the command line, one word a line
    local url=http://127.0.0.1:$PORT/ extra=()
    case $1 in
    # (wrk drops a -H header without a space after its colon: "Connection:close" is never sent)
    newconn) if [[ $(client_of "$1") == wrk ]]; then extra=(-H "Connection: close"); else extra=(--new-conn); fi ;;
    64k) url=http://127.0.0.1:$PORT/bytes/65536 ;;
    tls-keepalive) url=https://127.0.0.1:$TPORT/ ;;
    tls-full) printf '%s\n' "$PY" "$HELPER" stime "127.0.0.1:$TPORT" new "${2%s}"; return ;;
    tls-resumed) printf '%s\n' "$PY" "$HELPER" stime "127.0.0.1:$TPORT" reuse "${2%s}"; return ;;
    esac
    if [[ $(client_of "$1") == wrk ]]; then
        printf '%s\n' wrk -t1 -c"$CONNS" -d"$2" --latency -s "$TEMPLATES/report.lua" "${extra[@]}" "$url"
    else
        [[ -n ${3:-} ]] && extra+=(--rate "$3")
        printf '%s\n' "$LOAD" "$url" -c "$CONNS" -d "$2" "${extra[@]}" --json
    fi
}

run_client() { # seconds workload outfile [rate]
    # In the background and waited for, so that a signal to bench.sh is
    # handled at once (and the client is stopped by the cleanup), not after it ends.
    local pid rc=0 cmd
    : >"$3"
    mapfile -t cmd < <(client_cmd "$2" "$1"s "${4:-}")
    spawn 0 "$3" timeout -k 2 $(($1 + 15)) "${cmd[@]}"
    pid=$SPAWNED
    wait "$pid" || rc=$?
    forget_pid "$pid"
    return "$rc"
}

result_line() { # outfile -> the client's JSON result
    local line
    line=$(grep -m1 -E '^(BENCH )?\{' "$1") || return 1
    echo "${line#BENCH }"
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

# lb's reload counters, from its admin /stats.json: "OK FAILED". The Host names
# this machine: on loopback the admin refuses any other (403), and the counts
# would read as "none".
lb_reloads() {
    local body re='"reloads": *\{ *"ok": *([0-9]+), *"failed": *([0-9]+)'
    body=$( (exec 3<>"/dev/tcp/127.0.0.1/$APORT" &&
        printf 'GET /stats.json HTTP/1.1\r\nHost: 127.0.0.1\r\nConnection: close\r\n\r\n' >&3 &&
        timeout 2 cat <&3) 2>/dev/null) || { echo "-1 -1"; return; }
    if [[ $body =~ $re ]]; then echo "${BASH_REMATCH[1]} ${BASH_REMATCH[2]}"; else echo "-1 -1"; fi
}

# Reloads a proxy has done so far: lb counts them (/stats.json); HAProxy's
# master logs "New worker (PID) forked" and nginx's "start worker process PID"
# (notice level) for the first worker and for each reload: one line per worker
# process, so BENCH_WORKERS lines per reload (HAProxy's threads share one process).
reload_count() { # proxy -> "DONE FAILED"
    local n
    case $1 in
    lb | lb-base) lb_reloads ;;
    haproxy) n=$(grep -c 'New worker (' "$WORK/haproxy-storm.log" || true); echo "$((n - 1)) -1" ;;
    nginx) n=$(grep -c 'start worker process [0-9]' "$WORK/nginx-storm-error.log" || true); echo "$((n / WORKERS - 1)) -1" ;;
    esac
}

storm_signal() { # proxy -> the reload signal for its (master) process
    case $1 in lb | lb-base | nginx) echo HUP ;; haproxy) echo USR2 ;; esac
}

RUNS=$WORK/runs.jsonl
STORMS=$WORK/storms.jsonl
: >"$RUNS"
: >"$STORMS"
START=$(date +%s)
export BENCH_START_ISO BENCH_STAMP
BENCH_START_ISO=$(date +%Y-%m-%dT%H:%M:%S%z)
BENCH_STAMP=$(date +%Y%m%d-%H%M%S)
# Which proxy runs which workload: lb-nosplice only where splicing matters,
# the plain peers in the closed loops (openloop compares latency at one rate).
measured() { # proxy workload
    case $1 in
    lb-nosplice) [[ $2 == 64k ]] ;;
    haproxy-plain | nginx-plain) [[ $2 != openloop ]] ;;
    *) true ;;
    esac
}
n_total=0
for w in "${WL[@]}"; do for p in "${PX[@]}"; do measured "$p" "$w" && n_total=$((n_total + ROUNDS)); done; done
n=0
read -r load1 _ </proc/loadavg
if awk -v l="$load1" -v n="$(nproc)" 'BEGIN { exit !(l > n / 2) }'; then
    log "WARNING: load average $load1 on $(nproc) CPUs before starting: other work will skew the numbers"
fi
log "$n_total runs of ${DURATION}s (+${WARMUP}s warm-up): workloads ${WORKLOADS}; proxies ${PROXIES}; client $CLIENT; $ROUNDS rounds; $BENCH_PIN_DESC"
[[ ${#IDLE[@]} -gt 0 ]] && log "then memory: $IDLE_CONNS idle keep-alive connections (${IDLE_MODES}) to each proxy but lb-nosplice and the plain peers"
[[ ${#STORM[@]} -gt 0 ]] && log "then the reload storm: ${STORM_MODES} x the proxies but lb-nosplice and the plain peers, ${STORM_SECONDS}s each, a reload every ${STORM_INTERVAL_MS} ms"
[[ $LOCALITY == 1 ]] && log "then lb alone: 4 locality runs and 5 hash runs of ${BENCH_LOCALITY_SECONDS:-5}s (+1s warm-up) at ${BENCH_LOCALITY_RATE:-2000} req/s"
[[ $STATS == 1 ]] && log "then lb alone with ${BENCH_STATS_BACKENDS:-1000} backends: the cost of reading /stats.json and /metrics, and req/s with and without a stats poller"

# The open-loop rate: BENCH_OPEN_FRACTION of HAProxy's median keepalive req/s
# in this run (or BENCH_OPEN_RATE); the same for every proxy.
OPEN_RATE=
open_rate() { # workload whose HAProxy median is the peak -> rate (req/s, integer)
    if [[ -n $OPEN_RATE_FIXED ]]; then echo "$OPEN_RATE_FIXED"; return; fi
    "$PY" "$HELPER" rate "$RUNS" "$1" haproxy "$OPEN_FRACTION"
}

for w in "${WL[@]}"; do
    rate=
    if [[ $w == openloop ]]; then
        OPEN_RATE=$(open_rate keepalive) || die "no HAProxy keepalive result to take the open-loop rate from"
        rate=$OPEN_RATE
        how="$OPEN_FRACTION x HAProxy's median keepalive req/s"
        [[ -n $OPEN_RATE_FIXED ]] && how="BENCH_OPEN_RATE"
        log "openloop: $rate req/s for every proxy ($how)"
    fi
    cl=$(client_of "$w")
    for r in $(seq "$ROUNDS"); do
        for p in "${PX[@]}"; do
            measured "$p" "$w" || continue
            n=$((n + 1))
            start_proxy "$p"
            out=$WORK/$cl-$w-$p-$r.txt
            run_client "$WARMUP" "$w" "$out.warmup" "$rate" || { cat "$out.warmup" >&2; die "$cl warm-up failed ($w, $p)"; }
            read -r bc0 bq0 <<<"$(backend_counts)"
            read -r c0 q0 <<<"$(cpu_ns "$PROXY_PID")"
            run_client "$DURATION" "$w" "$out" "$rate" || { cat "$out" >&2; die "$cl failed ($w, $p)"; }
            read -r c1 q1 <<<"$(cpu_ns "$PROXY_PID")"
            read -r bc1 bq1 <<<"$(backend_counts)"
            if [[ $bc0 -ge 0 && $bc1 -ge 0 ]]; then
                bconn=$((bc1 - bc0 - 2)) breq=$((bq1 - bq0)) # less the 2 /__stats connections
            else
                bconn=-1 breq=-1
            fi
            kill -0 "$PROXY_PID" 2>/dev/null || die "$p died during the run (log: $WORK/$p.log)"
            line=$(result_line "$out") || { cat "$out" >&2; die "no result line from $cl ($w, $p)"; }
            stop "$PROXY_PID"
            printf '{"workload": "%s", "proxy": "%s", "round": %d, "cpu_ns": %d, "runq_wait_ns": %d, "cpu_source": "%s", "loadavg": %s, "backend_conns": %d, "backend_reqs": %d, "rate": %s, "client": "%s", "out": %s}\n' \
                "$w" "$p" "$r" $((c1 - c0)) $((q1 - q0)) "$CPU_SOURCE" "$(cut -d' ' -f1 /proc/loadavg)" "$bconn" "$breq" \
                "${rate:-null}" "$cl" "$line" >>"$RUNS"
            "$PY" "$HELPER" progress "$RUNS" "$n" "$n_total" $(($(date +%s) - START)) >&2
        done
    done
done

# --- memory of idle connections ------------------------------------------------------
# For each mode (plain; tls with BENCH_TLS=1) and each of lb, lb-base, haproxy and
# nginx (lb-nosplice and the plain peers would hold the same): a fresh proxy, with
# room for the connections (haproxy-idle.cfg, nginx-idle.conf), a warm-up of 200
# connections closed again, then BENCH_IDLE_CONNS keep-alive connections opened one
# after the other with one request each and held idle (bench.py idle); the growth of
# the RSS of all the proxy's processes, per connection.
IDLES=$WORK/idle.jsonl
: >"$IDLES"
for m in "${IDLE[@]}"; do
    port=$PORT
    [[ $m == tls ]] && port=$TPORT
    for p in "${PX[@]}"; do
        case $p in lb-nosplice | haproxy-plain | nginx-plain) continue ;; esac
        start_proxy "$p" idle
        out=$WORK/idle-$m-$p.json
        spawn 0 "$out" timeout -k 2 300 "$PY" "$HELPER" idle "127.0.0.1:$port" "$IDLE_CONNS" "$PROXY_PID" "$m"
        ipid=$SPAWNED
        wait "$ipid" || { cat "$out" >&2; die "the idle-connection measurement failed ($m, $p)"; }
        forget_pid "$ipid"
        kill -0 "$PROXY_PID" 2>/dev/null || die "$p died holding idle connections (log: $WORK/$p-idle.log)"
        stop_tree "$PROXY_PID"
        line=$(grep -m1 '^{' "$out") || { cat "$out" >&2; die "no result from the idle measurement ($m, $p)"; }
        printf '{"proxy": "%s", %s\n' "$p" "${line#\{}" >>"$IDLES"
        log "idle $m $p: $line"
    done
done

# --- reload storm ------------------------------------------------------------------
# For each mode and proxy: the proxy (lb as usual, HAProxy master-worker, nginx
# with a master) under open-loop load at BENCH_OPEN_FRACTION of HAProxy's peak
# for that mode (newconn: its newconn median, keepalive: its keepalive median);
# after 0.5 s, the reload signal every BENCH_STORM_INTERVAL_MS for
# BENCH_STORM_SECONDS; the load goes on 0.5 s more. Every failed request counts.
for m in "${STORM[@]}"; do
    src=
    if [[ -n $OPEN_RATE_FIXED ]]; then
        rate=$OPEN_RATE_FIXED
    else
        src=$m
        "$PY" "$HELPER" rate "$RUNS" "$m" haproxy "$OPEN_FRACTION" >/dev/null 2>&1 || src=keepalive
        rate=$("$PY" "$HELPER" rate "$RUNS" "$src" haproxy "$OPEN_FRACTION") ||
            die "no HAProxy $src result to take the storm's rate from"
    fi
    how="BENCH_OPEN_RATE"
    [[ -n $src ]] && how="$OPEN_FRACTION x HAProxy's median $src req/s"
    log "storm $m: $rate req/s ($how), ${STORM_SECONDS}s of reloads every ${STORM_INTERVAL_MS} ms"
    for p in "${PX[@]}"; do
        case $p in haproxy-plain | nginx-plain | lb-nosplice) continue ;; esac # the same reloads
        start_proxy "$p" storm
        pid=$PROXY_PID
        sig=$(storm_signal "$p")
        read -r rl0 rf0 <<<"$(reload_count "$p")"
        out=$WORK/storm-$m-$p.json
        lw=newconn
        [[ $m == keepalive ]] && lw=keepalive
        mapfile -t cmd < <(CLIENT=lb-load client_cmd "$lw" $((STORM_SECONDS * 1000 + 1000))ms "$rate")
        spawn 0 "$out" timeout -k 2 $((STORM_SECONDS + 20)) "${cmd[@]}"
        lpid=$SPAWNED
        sleep 0.5
        spawn 0 "$WORK/storm-$m-$p.driver.json" "$PY" "$HELPER" storm "$pid" "$sig" "$STORM_SECONDS" "$STORM_INTERVAL_MS"
        dpid=$SPAWNED
        wait "$dpid" || die "the storm's signal sender failed ($m, $p): $(cat "$WORK/storm-$m-$p.driver.json")"
        forget_pid "$dpid"
        wait "$lpid" || { cat "$out" >&2; die "lb-load failed in the storm ($m, $p)"; }
        forget_pid "$lpid"
        sleep 0.5 # old workers finish
        kill -0 "$pid" 2>/dev/null || die "$p died during the storm (log: $WORK/$p-storm.log)"
        after=$("$PY" "$HELPER" tree "$pid")
        read -r rl1 rf1 <<<"$(reload_count "$p")"
        line=$(result_line "$out") || { cat "$out" >&2; die "no result line from lb-load in the storm ($m, $p)"; }
        stop_tree "$pid"
        printf '{"mode": "%s", "proxy": "%s", "signal": "SIG%s", "rate": %s, "seconds": %d, "interval_ms": %d, "reloads": %d, "reloads_failed": %d, "driver": %s, "after": %s, "load": %s}\n' \
            "$m" "$p" "$sig" "$rate" "$STORM_SECONDS" "$STORM_INTERVAL_MS" $((rl1 - rl0)) \
            "$([[ $rf0 -ge 0 && $rf1 -ge 0 ]] && echo $((rf1 - rf0)) || echo -1)" \
            "$(<"$WORK/storm-$m-$p.driver.json")" "$after" "$line" >>"$STORMS"
        "$PY" "$HELPER" storm-progress "$STORMS" $(($(date +%s) - START)) >&2
    done
done

export BENCH_ROUNDS=$ROUNDS BENCH_DURATION=$DURATION BENCH_WARMUP=$WARMUP BENCH_CONNS=$CONNS BENCH_CLIENT=$CLIENT
export BENCH_WORKLOADS=$WORKLOADS BENCH_PROXIES=$PROXIES BENCH_BACKEND=$BACKEND BENCH_PEER_HEADERS=$PEER_HEADERS
export BENCH_OPEN_FRACTION=$OPEN_FRACTION BENCH_OPEN_RATE=$OPEN_RATE_FIXED BENCH_STORM_SECONDS=$STORM_SECONDS
export BENCH_STORM_INTERVAL_MS=$STORM_INTERVAL_MS BENCH_STORM_MODES=$STORM_MODES
export BENCH_WORKERS=$WORKERS BENCH_IDLE_CONNS=$IDLE_CONNS
export BENCH_ELAPSED_S=$(($(date +%s) - START))
"$PY" "$HELPER" report "$RUNS" "$RESULTS" "$STORMS" "$IDLES"

# --- locality and hash runs (bin/lb alone) ---------------------------------------------
# Its own processes (six lb-backends, one lb per row, lb-load), pinned and niced
# like the rest through loadtest/scenarios/lib.py; in the background and waited
# for, so that a signal to bench.sh reaches it at once (it stops what it started).
if [[ $LOCALITY == 1 ]]; then
    lnice=0
    [[ $BOOST == 1 ]] && lnice=$NICE
    SCENARIO_BIN=$WORK/bin SCENARIO_PIN=$PIN SCENARIO_NICE=$lnice SCENARIO_WORKERS=0 \
        SCENARIO_KEEP=${BENCH_KEEP:-0} BENCH_STAMP=$BENCH_STAMP "$PY" "$ROOT/loadtest/bench/locality.py" "$RESULTS" &
    lpid=$!
    PIDS+=("$lpid")
    wait "$lpid" || die "the locality and hash runs failed (their work directory is kept, see above)"
    forget_pid "$lpid"
fi

# --- the cost of reading stats (bin/lb alone) -------------------------------------------
# One lb with BENCH_STATS_BACKENDS backends over four lb-backends: GET /stats.json and
# /metrics timed one at a time, then keep-alive load with and without a poller
# reading both every 100 ms. Processes, pinning and priority as for the locality runs.
if [[ $STATS == 1 ]]; then
    snice=0
    [[ $BOOST == 1 ]] && snice=$NICE
    SCENARIO_BIN=$WORK/bin SCENARIO_PIN=$PIN SCENARIO_NICE=$snice SCENARIO_WORKERS=0 \
        SCENARIO_KEEP=${BENCH_KEEP:-0} BENCH_STAMP=$BENCH_STAMP "$PY" "$ROOT/loadtest/bench/stats_cost.py" "$RESULTS" &
    spid=$!
    PIDS+=("$spid")
    wait "$spid" || die "the stats step failed (its work directory is kept, see above)"
    forget_pid "$spid"
fi
OK=1
echo "elapsed: $(($(date +%s) - START)) s"
