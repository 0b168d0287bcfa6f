#!/usr/bin/env bash
# Short fuzz run of every cargo-fuzz target, for CI (.ci/run).
#
#   bash fuzz/smoke.sh [SECONDS]      (default 60 seconds per target)
#
# Seeds the corpus from proto/vectors (seed_corpus.sh), builds all targets,
# then runs each target listed by `cargo fuzz list` for SECONDS on
# corpus/<target>, one after another, and prints one summary line per target
# from libFuzzer's final stats line. Exits non-zero if a target crashes (the
# reproducer is in artifacts/<target>/, the full log in target/smoke/).
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

skip() {
    echo "fuzz smoke: skipped ($1)"
    exit 0
}

has_cargo_fuzz() {
    cargo fuzz --version >/dev/null 2>&1
}

command -v cargo >/dev/null 2>&1 || skip "cargo not found"

if ! has_cargo_fuzz; then
    cargo install cargo-fuzz --locked --quiet >/dev/null 2>&1 || true
fi
has_cargo_fuzz || skip "cargo-fuzz is not installed and could not be installed"

# The toolchain: nightly if rustup has one, else stable with nightly
# features unlocked (cargo-fuzz needs -Z flags for the sanitizer).
if command -v rustup >/dev/null 2>&1 && rustup toolchain list 2>/dev/null | grep -q nightly; then
    fuzz=(cargo +nightly fuzz)
    toolchain="nightly"
elif command -v rustup >/dev/null 2>&1 && rustup toolchain list 2>/dev/null | grep -q stable; then
    fuzz=(env RUSTC_BOOTSTRAP=1 cargo +stable fuzz)
    toolchain="stable with RUSTC_BOOTSTRAP=1"
elif ! command -v rustup >/dev/null 2>&1; then
    fuzz=(env RUSTC_BOOTSTRAP=1 cargo fuzz)
    toolchain="default with RUSTC_BOOTSTRAP=1"
else
    skip "no nightly or stable toolchain in rustup"
fi

# The targets are whatever fuzz/Cargo.toml declares, so new ones are run
# without touching this script.
targets=()
while IFS= read -r t; do
    [ -n "$t" ] && targets+=("$t")
done < <("${fuzz[@]}" list 2>/dev/null)
[ "${#targets[@]}" -gt 0 ] || skip "cargo fuzz list shows no targets"

bash ./seed_corpus.sh

logs="target/smoke"
mkdir -p "$logs"

# Build every target once up front, so compile errors are reported as
# such and compile time is not mistaken for a hang of the first target.
if ! "${fuzz[@]}" build >"$logs/build.log" 2>&1; then
    tail -n 40 "$logs/build.log" >&2
    echo "fuzz smoke: FAILED to build the fuzz targets ($toolchain); log: fuzz/$logs/build.log" >&2
    exit 1
fi

# "#123 DONE cov: 5 ft: 6 corp: 7/89b lim: 4 exec/s: 1000 rss: 30Mb"
# -> "123 runs, 1000 exec/s, corpus 7 entries / 89b"
summarize() {
    local line
    line="$(grep -E '^#[0-9]+[[:space:]]+DONE' "$1" | tail -n 1 || true)"
    [ -n "$line" ] || line="$(grep -E '^#[0-9]+[[:space:]]' "$1" | tail -n 1 || true)"
    if [ -z "$line" ]; then
        echo "no libFuzzer stats"
        return
    fi
    local runs corp execs
    runs="$(sed -nE 's/^#([0-9]+).*/\1/p' <<<"$line")"
    corp="$(sed -nE 's/.* corp: ([0-9]+)\/([0-9A-Za-z]+).*/\1 entries \/ \2/p' <<<"$line")"
    execs="$(sed -nE 's/.* exec\/s: ([0-9]+).*/\1/p' <<<"$line")"
    echo "${runs:-?} runs, ${execs:-?} exec/s, corpus ${corp:-?}"
}

failed=()
for t in "${targets[@]}"; do
    mkdir -p "corpus/$t"
    log="$logs/$t.log"
    if "${fuzz[@]}" run "$t" "corpus/$t" -- \
        -max_total_time="$secs" -rss_limit_mb=2048 >"$log" 2>&1; then
        echo "fuzz smoke: $t ok in ${secs}s: $(summarize "$log")"
    else
        failed+=("$t")
        echo "fuzz smoke: $t FAILED: $(summarize "$log"); log: fuzz/$log" >&2
        # The panic message (without the backtrace), the sanitizer's verdict,
        # the reproducer and how to rerun it.
        awk '
            /panicked at/ { show = 1; n = 0 }
            /^stack backtrace:|^note: run with/ { show = 0 }
            show && n++ < 12 { print "    " $0 }
            /^SUMMARY: / { print "    " $0 }
            /Test unit written to/ && !unit++ { sub(/.*Test unit written to /, ""); print "    reproducer: " $0 }
        ' "$log" >&2 || true
        echo "    rerun: cd fuzz && ${fuzz[*]} run $t <reproducer>" >&2
    fi
done

if [ "${#failed[@]}" -gt 0 ]; then
    echo "fuzz smoke: ${#failed[@]} of ${#targets[@]} targets failed: ${failed[*]}" >&2
    exit 1
fi
