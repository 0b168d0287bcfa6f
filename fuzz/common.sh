# Shared by smoke.sh and campaign.sh: finds cargo-fuzz and a toolchain,
# lists the targets, and reads libFuzzer's stats. Source it from this
# directory; it defines:
#
#   fuzz_setup          sets `fuzz` (the cargo fuzz command, an array),
#                       `toolchain` (a description) and `targets` (every
#                       target fuzz/Cargo.toml declares), or prints
#                       "<caller>: skipped (<reason>)" and exits 0
#   fuzz_build LOGDIR   builds every target, or prints the log's tail and
#                       exits 1
#   fuzz_summary LOG    "<runs> runs, <n> exec/s, corpus <entries> / <size>"
#   fuzz_crash LOG      the panic message, sanitizer verdict and reproducer

fuzz_skip() {
    echo "$fuzz_caller: skipped ($1)"
    exit 0
}

fuzz_setup() {
    command -v cargo >/dev/null 2>&1 || fuzz_skip "cargo not found"
    if ! cargo fuzz --version >/dev/null 2>&1; then
        cargo install cargo-fuzz --locked --quiet >/dev/null 2>&1 || true
    fi
    cargo fuzz --version >/dev/null 2>&1 ||
        fuzz_skip "cargo-fuzz is not installed and could not be installed"

    # Nightly if rustup has one, else stable with nightly features unlocked
    # (cargo-fuzz needs -Z flags for the sanitizer).
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
        fuzz_skip "no nightly or stable toolchain in rustup"
    fi

    # Whatever fuzz/Cargo.toml declares, so new targets need no script change.
    targets=()
    while IFS= read -r t; do
        [ -n "$t" ] && targets+=("$t")
    done < <("${fuzz[@]}" list 2>/dev/null)
    [ "${#targets[@]}" -gt 0 ] || fuzz_skip "cargo fuzz list shows no targets"
}

# Builds every target once up front, so compile errors are reported as
# such and compile time is not mistaken for a hang of the first target.
fuzz_build() {
    mkdir -p "$1"
    if ! "${fuzz[@]}" build >"$1/build.log" 2>&1; then
        tail -n 40 "$1/build.log" >&2
        echo "$fuzz_caller: FAILED to build the fuzz targets ($toolchain); log: fuzz/$1/build.log" >&2
        exit 1
    fi
}

# "#123 DONE cov: 5 ft: 6 corp: 7/89b lim: 4 exec/s: 1000 rss: 30Mb"
# -> "123 runs, 1000 exec/s, corpus 7 entries / 89b"
fuzz_summary() {
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

# The panic message (without the backtrace), the sanitizer's verdict and
# the reproducer of a failed run.
fuzz_crash() {
    awk '
        /panicked at/ { show = 1; n = 0 }
        /^stack backtrace:|^note: run with/ { show = 0 }
        show && n++ < 12 { print "    " $0 }
        /^SUMMARY: / { print "    " $0 }
        /Test unit written to/ && !unit++ { sub(/.*Test unit written to /, ""); print "    reproducer: " $0 }
    ' "$1" || true
}
