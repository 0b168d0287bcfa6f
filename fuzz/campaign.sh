#!/usr/bin/env bash
# A long fuzz campaign: every target, from an empty corpus and from the
# seeded one (proto/vectors and regressions/, as the CI smoke uses).
#
#   bash fuzz/campaign.sh MINUTES [JOBS]
#
# Each target gets MINUTES in all: half from an empty corpus, half from
# the seeded corpus. JOBS runs (default 1) go at once; on a machine you
# also work on, leave a core free. Every run has its own corpus under
# target/campaign/<target>-{empty,seeded}/ (the seeded one starts as a copy
# of corpus/<target>), its log next to it, and its crash reproducer in
# target/campaign/<target>-<corpus>-artifacts/. A crash ends that run only;
# the others go on.
#
# At the end: one line per run with runs, exec/s, corpus entries and size,
# and crashes, then the same as a Markdown table in
# target/campaign/summary.md. Exits non-zero if any run crashed. Skips
# (exit 0, one line) where cargo-fuzz or a toolchain is missing, as
# smoke.sh does.
set -euo pipefail

minutes="${1:-}"
jobs="${2:-1}"
if ! [[ "$minutes" =~ ^[0-9]+$ ]] || [ "$minutes" -lt 2 ] || ! [[ "$jobs" =~ ^[1-9][0-9]*$ ]]; then
    echo "usage: $0 MINUTES [JOBS]  (MINUTES >= 2 per target, split between the two corpora)" >&2
    exit 2
fi

cd "$(dirname "${BASH_SOURCE[0]}")"
fuzz_caller="fuzz campaign"
# shellcheck source=common.sh
. ./common.sh
fuzz_setup
bash ./seed_corpus.sh
out="target/campaign"
rm -rf "$out"
fuzz_build "$out"
secs=$((minutes * 60 / 2))

run_one() {
    local t="$1" kind="$2" dir="$out/$1-$2"
    mkdir -p "$dir" "$dir-artifacts"
    if [ "$kind" = seeded ] && [ -d "corpus/$t" ]; then
        cp -r "corpus/$t/." "$dir/"
    fi
    if "${fuzz[@]}" run "$t" "$dir" -- \
        -max_total_time="$secs" -rss_limit_mb=2048 \
        -artifact_prefix="$dir-artifacts/" >"$dir.log" 2>&1; then
        echo ok >"$dir.result"
    else
        echo crashed >"$dir.result"
    fi
}

echo "fuzz campaign: ${#targets[@]} targets x {empty, seeded} x ${secs}s, $jobs at a time ($toolchain)"
running=0
for t in "${targets[@]}"; do
    for kind in empty seeded; do
        run_one "$t" "$kind" &
        running=$((running + 1))
        if [ "$running" -ge "$jobs" ]; then
            wait -n || true
            running=$((running - 1))
        fi
    done
done
wait || true

summary="$out/summary.md"
{
    echo "| target | corpus | seconds | runs | exec/s | corpus entries / size | crashes |"
    echo "|---|---|--:|--:|--:|--:|--:|"
} >"$summary"
crashed=0
for t in "${targets[@]}"; do
    for kind in empty seeded; do
        dir="$out/$t-$kind"
        stats="$(fuzz_summary "$dir.log")"
        result="$(cat "$dir.result" 2>/dev/null || echo "no result")"
        runs="$(sed -nE 's/^([0-9?]+) runs.*/\1/p' <<<"$stats")"
        execs="$(sed -nE 's/.*, ([0-9?]+) exec\/s.*/\1/p' <<<"$stats")"
        corp="$(sed -nE 's/.*corpus (.*)$/\1/p' <<<"$stats")"
        n=0
        [ "$result" = ok ] || n=1
        crashed=$((crashed + n))
        echo "| $t | $kind | $secs | ${runs:-?} | ${execs:-?} | ${corp:-?} | $n |" >>"$summary"
        if [ "$n" -eq 0 ]; then
            echo "fuzz campaign: $t ($kind) ok in ${secs}s: $stats"
        else
            echo "fuzz campaign: $t ($kind) CRASHED: $stats; log: fuzz/$dir.log" >&2
            fuzz_crash "$dir.log" >&2
        fi
    done
done
cat "$summary"
if [ "$crashed" -gt 0 ]; then
    echo "fuzz campaign: $crashed run(s) crashed" >&2
    exit 1
fi
