#!/usr/bin/env bash
# Short fuzz run of every cargo-fuzz target, for CI (.ci/run).
#
#   bash fuzz/smoke.sh [SECONDS]      (default 60 seconds per target)
#
# Seeds the corpus from proto/vectors and regressions/ (seed_corpus.sh),
# builds all targets, then runs each target listed by `cargo fuzz list` for
# SECONDS on corpus/<target>, one after another, and prints one summary
# line per target from libFuzzer's final stats line. Exits non-zero if a
# target crashes (the reproducer is in artifacts/<target>/, the full log in
# target/smoke/). For long runs from an empty corpus too, see campaign.sh.
#
# Needs cargo-fuzz (installed with `cargo install cargo-fuzz --locked` when
# missing) and a nightly toolchain, or stable with RUSTC_BOOTSTRAP=1. Without
# either it prints one line, `fuzz smoke: skipped (<reason>)`, and exits 0.
set -euo pipefail

secs="${1:-60}"
if ! [[ "$secs" =~ ^[0-9]+$ ]] || [ "$secs" -eq 0 ]; then
    echo "usage: $0 [SECONDS]  (a positive number of seconds per target)" >&2
    exit 2
fi

cd "$(dirname "${BASH_SOURCE[0]}")"
fuzz_caller="fuzz smoke"
# shellcheck source=common.sh
. ./common.sh
fuzz_setup
bash ./seed_corpus.sh
logs="target/smoke"
fuzz_build "$logs"

failed=()
for t in "${targets[@]}"; do
    mkdir -p "corpus/$t"
    log="$logs/$t.log"
    if "${fuzz[@]}" run "$t" "corpus/$t" -- \
        -max_total_time="$secs" -rss_limit_mb=2048 >"$log" 2>&1; then
        echo "fuzz smoke: $t ok in ${secs}s: $(fuzz_summary "$log")"
    else
        failed+=("$t")
        echo "fuzz smoke: $t FAILED: $(fuzz_summary "$log"); log: fuzz/$log" >&2
        fuzz_crash "$log" >&2
        echo "    rerun: cd fuzz && ${fuzz[*]} run $t <reproducer>" >&2
    fi
done

if [ "${#failed[@]}" -gt 0 ]; then
    echo "fuzz smoke: ${#failed[@]} of ${#targets[@]} targets failed: ${failed[*]}" >&2
    exit 1
fi
