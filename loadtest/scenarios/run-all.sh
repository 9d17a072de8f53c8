#!/usr/bin/env bash
# `make scenarios`: every failure scenario in turn, then a summary table.
# Exit status 0 when all passed, 1 otherwise. See loadtest/README.md, "Scenarios".
#
# Knobs (environment): SCENARIO_ONLY=killed,hang (a subset, in this order),
# and those of lib.py, passed through: SCENARIO_SECONDS (30), SCENARIO_WORKERS, SCENARIO_PIN (1),
# SCENARIO_NICE (-10), SCENARIO_KEEP (0), SCENARIO_BIN (bin/).
set -euo pipefail
cd "$(dirname "$0")"
HERE=$PWD

ALL=(killed errors-500 hang slow-10x health-flap reload-storm graceful-shutdown backend-drain testssl)
if [[ -n ${SCENARIO_ONLY:-} ]]; then
    IFS=, read -r -a LIST <<<"$SCENARIO_ONLY"
    for s in "${LIST[@]}"; do
        [[ -x $HERE/$s.py ]] || { echo "run-all: unknown scenario '$s' (${ALL[*]})" >&2; exit 2; }
    done
else
    LIST=("${ALL[@]}")
fi
command -v python3 >/dev/null || { echo "run-all: python3 not found" >&2; exit 2; }

RESULTS=$(mktemp -d /tmp/lb-scenarios.XXXXXX)
export SCENARIO_RESULTS=$RESULTS
CHILD=
cleanup() {
    local rc=$?
    trap - EXIT INT TERM
    if [[ -n $CHILD ]] && kill -0 "$CHILD" 2>/dev/null; then
        # the scenario stops what it started on SIGTERM; give it time to
        kill -TERM "$CHILD" 2>/dev/null || true
        for _ in $(seq 100); do kill -0 "$CHILD" 2>/dev/null || break; sleep 0.1; done
    fi
    rm -rf "$RESULTS"
    exit "$rc"
}
trap cleanup EXIT
trap 'echo "run-all: interrupted" >&2; exit 130' INT TERM

START=$(date +%s)
declare -A RC
for s in "${LIST[@]}"; do
    echo "---- $s"
    # in the background and waited for, so that a signal reaches the trap at once
    "$HERE/$s.py" &
    CHILD=$!
    rc=0
    wait "$CHILD" || rc=$?
    CHILD=
    RC[$s]=$rc
    echo
done

failed=0
{
    for s in "${LIST[@]}"; do echo "$s ${RC[$s]}"; done
} | python3 -c '
import json, os, sys
res = os.environ["SCENARIO_RESULTS"]
rows = []
for line in sys.stdin:
    name, rc = line.split()
    try:
        with open(os.path.join(res, name + ".json")) as f:
            r = json.load(f)
    except (OSError, ValueError):
        r = {"verdict": "ERROR", "seconds": 0, "summary": "no result (exit status %s)" % rc}
    fails = [c["what"] for c in r.get("criteria", []) if not c["ok"]]
    note = r.get("summary") or ""
    if r.get("error"):
        note = r["error"].splitlines()[0]
    if fails:
        note += "; failed: " + "; ".join(fails)
    rows.append((name, r["verdict"], "%.0f" % r["seconds"], note))
w = max(len(r[0]) for r in rows)
print("%-*s  %-7s %5s  %s" % (w, "scenario", "verdict", "secs", "figures"))
for r in rows:
    print("%-*s  %-7s %5s  %s" % (w, r[0], r[1], r[2], r[3]))
'
for s in "${LIST[@]}"; do [[ ${RC[$s]} == 0 ]] || failed=$((failed + 1)); done
echo "scenarios: $((${#LIST[@]} - failed)) passed, $failed failed ($(($(date +%s) - START)) s)"
[[ $failed == 0 ]]
