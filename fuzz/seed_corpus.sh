#!/usr/bin/env bash
# Builds fuzz seeds from the byte-level test vectors (proto/vectors/*.txt).
#
#   bash fuzz/seed_corpus.sh [VECTORS_DIR]
#
# VECTORS_DIR defaults to ../proto/vectors relative to this script. Each
# vector block (`name:`, `bytes:`, `expect:`, optional `max_payload:`; blocks
# separated by blank lines, `#` starts a comment line) becomes:
#
#   corpus/frame_decoder/vec-<file>-<name>    2-byte selector + the bytes
#   corpus/frame_roundtrip/vec-<file>-<name>  the same file (raw material for
#                                             the structured input)
#
# and every file in regressions/<target>/ is copied to corpus/<target>/reg-<file>.
#
# The selector is what fuzz_targets/frame_decoder.rs maps back to the same
# maximum payload: big-endian u16 `max_payload - 1024` (the target computes
# 1024 + sel % 64513, so 1024..=65536 round-trips; values outside are
# clamped with a warning). Without `max_payload:` the default is 16384.
#
# Missing vector files are not an error: the script says so and leaves the
# corpus as it is (the fuzzers start from an empty corpus).
set -euo pipefail

script_dir="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
vectors_dir="${1:-$script_dir/../proto/vectors}"
corpus_dir="$script_dir/corpus"

mkdir -p "$corpus_dir/frame_decoder" "$corpus_dir/frame_roundtrip"

# Inputs that once crashed a target (regressions/<target>/, kept in git,
# each also a named test in tests/) join its corpus, so every fuzz run
# replays them first.
regressions_dir="$script_dir/regressions"
if [ -d "$regressions_dir" ]; then
    reg=0
    for dir in "$regressions_dir"/*/; do
        t="$(basename "$dir")"
        mkdir -p "$corpus_dir/$t"
        for f in "$dir"*; do
            [ -f "$f" ] || continue
            cp "$f" "$corpus_dir/$t/reg-$(basename "$f")"
            reg=$((reg + 1))
        done
    done
    echo "seed corpus: $reg regression input(s) from $regressions_dir"
fi

shopt -s nullglob
files=("$vectors_dir"/*.txt)
shopt -u nullglob
if [ "${#files[@]}" -eq 0 ]; then
    echo "seed corpus: no vector files in $vectors_dir, seeds unchanged"
    exit 0
fi

# Fallback without python3: plain bash, with xxd for the hex. Same layout,
# fewer diagnostics.
seed_with_xxd() {
    local targets=(frame_decoder frame_roundtrip) t written=0
    for t in "${targets[@]}"; do
        rm -f "$corpus_dir/$t"/vec-*
    done
    emit() {
        [ -n "$name$hex" ] || return 0
        if [ -z "$have_bytes" ]; then
            echo "seed corpus: $file: $name: no bytes line; skipped" >&2
            return 0
        fi
        hex="${hex//[[:space:]]/}"
        if (( ${#hex} % 2 )) || [[ ! "$hex" =~ ^[0-9A-Fa-f]*$ ]]; then
            echo "seed corpus: $file: $name: bad hex; skipped" >&2
            return 0
        fi
        if [[ "$max" =~ ^[0-9]{1,9}$ ]]; then max=$((10#$max)); else max=16384; fi
        (( max < 1024 )) && max=1024
        (( max > 65536 )) && max=65536
        local safe sel out
        safe="$(printf '%s' "$name" | tr -c 'A-Za-z0-9_.-' '_')"
        sel="$(printf '%04x' $(( max - 1024 )))"
        out="$corpus_dir/frame_decoder/vec-$stem-${safe:-block$block}"
        printf '%s%s' "$sel" "$hex" | xxd -r -p >"$out"
        cp "$out" "$corpus_dir/frame_roundtrip/"
        written=$((written + 1))
    }
    local file stem line key value name hex max have_bytes block
    for file in "${files[@]}"; do
        stem="$(basename "$file" .txt)"
        name="" hex="" max=16384 have_bytes="" block=0
        while IFS= read -r line || [ -n "$line" ]; do
            line="${line%$'\r'}"
            line="$(echo "$line" | sed -e 's/^[[:space:]]*//' -e 's/[[:space:]]*$//')"
            if [ -z "$line" ]; then
                emit
                name="" hex="" max=16384 have_bytes="" block=$((block + 1))
                continue
            fi
            [[ "$line" == \#* ]] && continue
            key="${line%%:*}"
            value="$(echo "${line#*:}" | sed -e 's/^[[:space:]]*//')"
            case "$key" in
                name) name="$value" ;;
                bytes) hex="$value" have_bytes=1 ;;
                max_payload) max="$value" ;;
            esac
        done <"$file"
        emit
    done
    echo "seed corpus: $written seeds from ${#files[@]} vector file(s) into $corpus_dir (bash/xxd)"
}

if ! command -v python3 >/dev/null 2>&1; then
    if command -v xxd >/dev/null 2>&1; then
        seed_with_xxd
    else
        echo "seed corpus: neither python3 nor xxd found, seeds unchanged" >&2
    fi
    exit 0
fi

python3 - "$corpus_dir" "${files[@]}" <<'PY'
import os
import re
import sys

corpus_dir, files = sys.argv[1], sys.argv[2:]
targets = ["frame_decoder", "frame_roundtrip"]
MIN_MAX, MAX_MAX, DEFAULT_MAX = 1024, 65536, 16384

# Seeds written by an earlier run may describe vectors that changed since.
for t in targets:
    d = os.path.join(corpus_dir, t)
    for f in os.listdir(d):
        if f.startswith("vec-"):
            os.remove(os.path.join(d, f))

def warn(msg):
    print(f"seed corpus: {msg}", file=sys.stderr)

written = 0
for path in files:
    stem = os.path.splitext(os.path.basename(path))[0]
    try:
        with open(path, encoding="utf-8") as fh:
            text = fh.read()
    except (OSError, UnicodeDecodeError) as e:
        warn(f"{path}: {e}; skipped")
        continue
    for number, block in enumerate(re.split(r"\n[ \t]*\n", text.replace("\r\n", "\n"))):
        fields = {}
        for line in block.splitlines():
            line = line.strip()
            if not line or line.startswith("#"):
                continue
            key, sep, value = line.partition(":")
            if sep:
                fields[key.strip()] = value.strip()
        if not fields:
            continue
        name = fields.get("name", f"block{number}")
        where = f"{path}: {name}"
        if "bytes" not in fields:
            warn(f"{where}: no bytes line; skipped")
            continue
        hexdigits = "".join(fields["bytes"].split())
        try:
            if len(hexdigits) % 2:
                raise ValueError("odd number of hex digits")
            data = bytes.fromhex(hexdigits)
        except ValueError as e:
            warn(f"{where}: bad hex ({e}); skipped")
            continue
        max_payload = DEFAULT_MAX
        if "max_payload" in fields:
            try:
                max_payload = int(fields["max_payload"])
            except ValueError:
                warn(f"{where}: bad max_payload {fields['max_payload']!r}; using {DEFAULT_MAX}")
        if not MIN_MAX <= max_payload <= MAX_MAX:
            clamped = min(max(max_payload, MIN_MAX), MAX_MAX)
            warn(f"{where}: max_payload {max_payload} outside {MIN_MAX}..={MAX_MAX}; seeded as {clamped}")
            max_payload = clamped
        seed = (max_payload - MIN_MAX).to_bytes(2, "big") + data
        safe = re.sub(r"[^A-Za-z0-9_.-]+", "_", name).strip("_") or f"block{number}"
        filename = f"vec-{stem}-{safe}"
        for t in targets:
            with open(os.path.join(corpus_dir, t, filename), "wb") as out:
                out.write(seed)
        written += 1

print(f"seed corpus: {written} seeds from {len(files)} vector file(s) into {corpus_dir}/{{{','.join(targets)}}}")
PY
