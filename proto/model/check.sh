#!/usr/bin/env bash
# Model-check the credit protocol of proto/SPEC.md with spin
# (proto/model/creditmux.pml; what is modelled and why: README.md).
#
#   bash proto/model/check.sh            the standard runs (about 1.5 min on one core)
#   bash proto/model/check.sh --deep     larger bounds: GOAWAY from either side (several minutes)
#   bash proto/model/check.sh --matrix   also every bug variant against every property
#   KEEP=1 bash proto/model/check.sh     keep the work directory (pan logs, trails)
#
# Each run compiles the model for one property and one configuration
# (spin -a, gcc, pan), prints one line with the states stored, the
# transitions, the time and the verdict, and the script exits non-zero when
# the correct model violates a property, when a search is incomplete (depth,
# memory), when a run of the correct model misses one of the coverage
# markers it must reach, or when a bug variant unexpectedly passes.
#
# Needs spin (installed with apt-get when missing, as fuzz/smoke.sh installs
# cargo-fuzz) and gcc. Without spin it prints one line,
# `model check: skipped (spin not available)`, and exits 0.
set -euo pipefail

here="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
model="$here/creditmux.pml"

deep=0
matrix=0
for arg in "$@"; do
    case "$arg" in
        --deep) deep=1 ;;
        --matrix) matrix=1 ;;
        *) echo "usage: $0 [--deep] [--matrix]" >&2; exit 2 ;;
    esac
done

# ---------------------------------------------------------------- tools

install_spin() {
    local sudo=()
    if [ "$(id -u)" != 0 ]; then
        command -v sudo >/dev/null 2>&1 && sudo -n true 2>/dev/null || return 0
        sudo=(sudo -n)
    fi
    command -v apt-get >/dev/null 2>&1 || return 0
    export DEBIAN_FRONTEND=noninteractive
    "${sudo[@]}" apt-get install -y -qq spin >/dev/null 2>&1 ||
        { "${sudo[@]}" apt-get update -qq >/dev/null 2>&1 &&
          "${sudo[@]}" apt-get install -y -qq spin >/dev/null 2>&1; } || true
}

command -v spin >/dev/null 2>&1 || install_spin
if ! command -v spin >/dev/null 2>&1 || ! spin -V >/dev/null 2>&1; then
    echo "model check: skipped (spin not available)"
    exit 0
fi
if ! command -v gcc >/dev/null 2>&1; then
    echo "model check: FAILED: spin is installed but gcc is not (pan must be compiled)" >&2
    exit 1
fi

work="$(mktemp -d "${TMPDIR:-/tmp}/creditmux-model.XXXXXX")"
if [ "${KEEP:-0}" = 1 ]; then
    echo "model check: work directory $work (kept)"
else
    trap 'rm -rf "$work"' EXIT
fi

now() { date +%s.%N; }
t_start="$(now)"
echo "model check: $(spin -V | head -n 1), $(gcc --version | head -n 1)"

# ---------------------------------------------------------------- configurations
#
# The bounds are documented in README.md ("Bounds"); change them there too.
#   U  one direction (A writes, B reads), 2 sequential streams (MAX_STREAMS 1),
#      every optional event: stop, abandon, abort, GOAWAY from B, drain
#   P  one direction, 2 concurrent streams (MAX_STREAMS 2) sharing a
#      connection window smaller than both stream windows, so a stalled
#      stream holds connection credit; a transport of one frame
#   X  data both ways (A opens 2 streams, B opens 1): control and DATA
#      compete for both transports
#   L  U for liveness: lossy credit updates, at most LOSS answers lost,
#      optional events planned up front (README), no writer abort
declare -A cfg
if [ "$deep" = 1 ]; then
    cfg[U]="-DNS=2 -DNSB=0 -DM=1 -DD=3 -DSW=2 -DCW=4 -DCAP=2 -DGOAWAY_BY=2"
    cfg[P]="-DNS=2 -DNSB=0 -DM=2 -DD=3 -DSW=2 -DCW=3 -DCAP=1 -DGOAWAY_BY=1 -DNO_ABORT"
    cfg[X]="-DNS=2 -DNSB=1 -DM=1 -DD=3 -DDB=2 -DSW=2 -DCW=4 -DCAP=2 -DGOAWAY_BY=1 -DNO_ABANDON"
    cfg[L]="-DNS=2 -DNSB=0 -DM=1 -DD=3 -DSW=2 -DCW=4 -DCAP=2 -DGOAWAY_BY=2 -DNO_ABORT -DLOSS=1"
else
    cfg[U]="-DNS=2 -DNSB=0 -DM=1 -DD=3 -DSW=2 -DCW=4 -DCAP=2 -DGOAWAY_BY=1"
    cfg[P]="-DNS=2 -DNSB=0 -DM=2 -DD=3 -DSW=2 -DCW=3 -DCAP=1 -DNO_GOAWAY -DNO_ABORT"
    cfg[X]="-DNS=2 -DNSB=1 -DM=1 -DD=3 -DDB=2 -DSW=2 -DCW=4 -DCAP=2 -DNO_GOAWAY -DNO_ABORT"
    cfg[L]="-DNS=2 -DNSB=0 -DM=1 -DD=3 -DSW=2 -DCW=4 -DCAP=2 -DGOAWAY_BY=1 -DNO_ABORT -DLOSS=1"
fi

# Coverage markers (REACH(n) in creditmux.pml) each run of the correct
# model must hit; a run that misses one fails (its property held vacuously
# for that path).
declare -A must
must[U]="0 1 2 3 5 6 7 8 9 10 11 12 13 16 17"
must[P]="0 2 5 6 9 11 12 13 16 17"
must[X]="0 2 3 5 6 9 10 11 12 13 16 17"
must[L]="0 1 2 3 5 6 7 8 9 10 11 12 13 14 15 16 17"
if [ "$deep" = 1 ]; then
    must[P]="0 1 2 5 6 7 8 9 12 13 16 17"
    must[X]="0 1 2 3 7 8 9 10 11 12 13 16 17"
fi

declare -A prop_name=(
    [a]="deadlock freedom (10.4)"
    [b]="credit respected (9.2-9.4, 9.6)"
    [c]="credit conservation (9.7)"
    [d]="blocked sender unblocked (11)"
)

# ---------------------------------------------------------------- one run

runs=0
bad=0
failures=()

# run CONFIG PROP EXPECT [VARIANT]
#   EXPECT: holds | violated | any (matrix mode: report only)
run() {
    local conf="$1" prop="$2" expect="$3" variant="${4:-}"
    local label="$conf/$prop"
    [ -n "$variant" ] && label="$label +$variant"
    local dir="$work/${conf}_${prop}${variant:+_$variant}"
    mkdir -p "$dir"

    local sflags="${cfg[$conf]} -DPROP_$(echo "$prop" | tr a-d A-D)"
    [ -n "$variant" ] && sflags="$sflags -D$variant"
    # -O1: the best compile plus search time for these runs; a run that is
    # expected to stop at its first error explores a few thousand states, so
    # compiling fast matters more there.
    local cflags="-O1" panflags
    [ "$expect" = violated ] && cflags="-O0"
    if [ "$prop" = d ]; then
        cflags="$cflags -DNFAIR=3"
        panflags="-a -f -m100000 -n"
    elif [ "$prop" = a ]; then
        cflags="$cflags -DSAFETY"
        panflags="-m100000 -n"        # invalid end states are part of (a)
    else
        cflags="$cflags -DSAFETY"
        panflags="-m100000 -E -n"
    fi

    local t0 t1
    t0="$(now)"
    # shellcheck disable=SC2086
    if ! (cd "$dir" && spin $sflags -a "$model" >spin.log 2>&1); then
        echo "model check: [$label] spin could not translate the model:" >&2
        tail -n 5 "$dir/spin.log" >&2
        bad=$((bad + 1)); failures+=("$label: spin error"); runs=$((runs + 1))
        return 0
    fi
    # shellcheck disable=SC2086
    if ! (cd "$dir" && gcc -w $cflags -DMEMLIM=4096 -o pan pan.c >gcc.log 2>&1); then
        echo "model check: [$label] gcc could not compile pan.c:" >&2
        tail -n 5 "$dir/gcc.log" >&2
        bad=$((bad + 1)); failures+=("$label: gcc error"); runs=$((runs + 1))
        return 0
    fi
    # shellcheck disable=SC2086
    (cd "$dir" && ./pan $panflags >pan.log 2>&1) || true
    t1="$(now)"
    runs=$((runs + 1))

    local log="$dir/pan.log"
    local errors states trans secs kind incomplete="" reached missing=""
    errors="$(grep -oE 'errors: [0-9]+' "$log" | tail -n 1 | awk '{print $2}')" || true
    states="$(grep -E '^ *[0-9.e+]+ states, stored' "$log" | tail -n 1 | awk '{print $1}')" || true
    trans="$(grep -E '[0-9.e+]+ transitions' "$log" | tail -n 1 | awk '{print $1}')" || true
    secs="$(awk -v a="$t0" -v b="$t1" 'BEGIN { printf "%.1f", b - a }')"
    kind="$(grep -m 1 -oE '^pan:[0-9]+: [a-z ]+' "$log" | sed -E 's/^pan:[0-9]+: //; s/ +$//')" || true
    if grep -qE 'max search depth too small|Search not completed|reached -DMEMLIM bound|out of memory|ran out of memory|hash table is full' "$log"; then
        incomplete="$(grep -m 1 -oE 'max search depth too small|Search not completed|reached -DMEMLIM bound|out of memory|ran out of memory|hash table is full' "$log")"
    fi
    reached="$(grep -oE '^reached: [0-9]+' "$log" | tail -n 1 | awk '{print $2}')" || true
    [ -n "$states" ] && states="$(printf "%'.0f" "$states" 2>/dev/null || echo "$states")"
    [ -n "$trans" ] && trans="$(printf "%'.0f" "$trans" 2>/dev/null || echo "$trans")"

    local verdict ok=1
    if [ -z "$errors" ]; then
        verdict="NO RESULT (pan did not finish; see pan.log)"
        ok=0
    elif [ "$errors" != 0 ]; then
        verdict="VIOLATED (${kind:-error})"
        if [ "$expect" = holds ]; then ok=0; fi
    else
        verdict="holds"
        if [ -n "$incomplete" ]; then
            verdict="INCOMPLETE ($incomplete)"
            [ "$expect" = any ] || ok=0
        fi
        if [ "$expect" = violated ]; then
            verdict="$verdict, but the variant should violate it"
            ok=0
        fi
        if [ "$expect" = holds ] && [ -z "$variant" ]; then
            local bit
            for bit in ${must[$conf]}; do
                if [ -z "$reached" ] || [ $(( (reached >> bit) & 1 )) = 0 ]; then
                    missing="$missing $bit"
                fi
            done
            if [ -n "$missing" ]; then
                verdict="$verdict, but coverage markers not reached:$missing"
                ok=0
            fi
        fi
    fi
    case "$expect" in
        violated) [ "$ok" = 1 ] && verdict="$verdict, as expected" ;;
    esac

    printf 'model check: [%-25s] %-33s %13s states, %14s transitions, %6s s: %s\n' \
        "$label" "${prop_name[$prop]}" "${states:-?}" "${trans:-?}" "$secs" "$verdict"
    if [ "$ok" = 0 ]; then
        bad=$((bad + 1))
        failures+=("$label: $verdict (log: $log)")
        if [ "$expect" = holds ] && [ -n "$kind" ]; then
            grep -m 1 -E '^pan:[0-9]+: ' "$log" | cut -c 1-300 >&2 || true
        fi
    fi
}

# ---------------------------------------------------------------- the runs

# The correct model: every property on every configuration it applies to.
for conf in U P X; do
    for prop in a b c; do
        run "$conf" "$prop" holds
    done
done
run L d holds

# Each bug variant must violate the property it breaks.
run L d violated NO_PROBE
run X a violated CONTROL_BEHIND_DATA
run U b violated RELEASE_ON_RECEIPT
run U c violated LEAK_ON_RESET

if [ "$matrix" = 1 ]; then
    echo "model check: matrix: every variant against every property (report only)"
    for variant in NO_PROBE CONTROL_BEHIND_DATA RELEASE_ON_RECEIPT LEAK_ON_RESET; do
        for cp in U/a U/b U/c P/a P/b P/c X/a X/b X/c L/d; do
            run "${cp%/*}" "${cp#*/}" any "$variant"
        done
    done
fi

t_end="$(now)"
total="$(awk -v a="$t_start" -v b="$t_end" 'BEGIN { printf "%.0f", b - a }')"
if [ "$bad" = 0 ]; then
    echo "model check: $runs runs, all as expected, total ${total} s"
else
    echo "model check: $runs runs, $bad NOT as expected, total ${total} s" >&2
    for f in "${failures[@]}"; do
        echo "model check:   $f" >&2
    done
    exit 1
fi
