#!/usr/bin/env bash
# Run every suite: unit tests (release and ASan+UBSan builds), fuzz seed
# replay (ASan+UBSan), black-box tests against the ASan+UBSan binaries, and
# the network fuzzer's fixed pass against the ASan+UBSan lb.
# Ends with one line "N passed, N failed"; exits non-zero if anything failed.
#
#   TEST_ONLY=asan   skip the release-build unit tests
#   TEST_K=substr    run only the black-box tests whose name contains substr
set -u
cd "$(dirname "$0")/.."

pass=0
fail=0
skip=0
failed_names=()

# A cmocka binary in TAP mode: count "ok" and "not ok" lines.
run_unit() {
    local bin=$1 label=$2 out rc p f
    out=$(CMOCKA_MESSAGE_OUTPUT=TAP ASAN_OPTIONS=detect_leaks=1 "$bin" 2>&1)
    rc=$?
    p=$(grep -c '^ok ' <<<"$out")
    f=$(grep -c '^not ok ' <<<"$out")
    if [ "$rc" -ne 0 ] && [ "$f" -eq 0 ]; then
        f=1 # it crashed or a sanitizer stopped it
    fi
    pass=$((pass + p))
    fail=$((fail + f))
    if [ "$f" -ne 0 ]; then
        failed_names+=("$label")
        printf '%s\n' "$out" | grep -v '^ok ' | tail -40
    fi
    printf '%-40s %4d passed, %d failed\n' "$label" "$p" "$f"
}

# A seed replay: the whole corpus is one test.
run_replay() {
    local bin=$1 name=$2 out rc
    out=$("$bin" "tests/fuzz/seeds/$name" 2>&1)
    rc=$?
    if [ "$rc" -eq 0 ]; then
        pass=$((pass + 1))
    else
        fail=$((fail + 1))
        failed_names+=("replay $name")
        printf '%s\n' "$out" | tail -40
    fi
    printf '%-40s %s\n' "replay $name" "$(tail -1 <<<"$out")"
}

builds=(rel asan)
[ "${TEST_ONLY:-}" = asan ] && builds=(asan)
for b in "${builds[@]}"; do
    for t in build/$b/tests/test_*; do
        [ -x "$t" ] || continue
        run_unit "$t" "$b $(basename "$t")"
    done
done

for r in build/asan/tests/replay_*; do
    [ -x "$r" ] || continue
    run_replay "$r" "${r##*/replay_}"
done

if [ -f tests/integration/run.py ]; then
    args=(--lb build/asan/bin/lb --backend build/asan/bin/lb-backend -j 2)
    [ -n "${TEST_K:-}" ] && args+=(-k "$TEST_K")
    out=$(python3 tests/integration/run.py "${args[@]}" 2>&1)
    rc=$?
    summary='^[0-9]+ passed, [0-9]+ failed(, [0-9]+ skipped)?$'
    printf '%s\n' "$out" | grep -v '^ok ' | grep -v -E "$summary"
    last=$(grep -E "$summary" <<<"$out" | tail -1)
    if [ -n "$last" ]; then
        p=${last%% passed*}
        f=${last#*, }
        f=${f%% failed*}
        case $last in
        *skipped) s=${last##*failed, }; skip=$((skip + ${s%% skipped})) ;;
        esac
    else
        p=0
        f=1
    fi
    [ "$rc" -ne 0 ] && [ "$f" -eq 0 ] && f=1
    pass=$((pass + p))
    fail=$((fail + f))
    [ "$f" -ne 0 ] && failed_names+=("black-box")
    printf '%-40s %4d passed, %d failed\n' "black-box (ASan build)" "$p" "$f"
fi

# Network fuzzing: seed 1's fixed cases, then every committed reproducer; one test.
if [ -f tests/netfuzz/netfuzz.py ]; then
    out=$(python3 tests/netfuzz/netfuzz.py --short --lb build/asan/bin/lb 2>&1)
    if [ $? -eq 0 ]; then
        pass=$((pass + 1))
    else
        fail=$((fail + 1))
        failed_names+=("netfuzz")
        printf '%s\n' "$out" | tail -60
    fi
    printf '%-40s %s\n' "netfuzz (ASan build)" "$(tail -1 <<<"$out")"
fi

if [ "${#failed_names[@]}" -ne 0 ]; then
    printf 'failing: %s\n' "${failed_names[*]}"
fi
if [ "$skip" -ne 0 ]; then
    echo "$pass passed, $fail failed, $skip skipped"
else
    echo "$pass passed, $fail failed"
fi
[ "$fail" -eq 0 ]
