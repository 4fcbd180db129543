#!/usr/bin/env bash
# tests/compare_builds.sh: every build gives the same bits (make test-builds).
#
#   tests/compare_builds.sh REF NAME=COMMAND ...
#   e.g. tests/compare_builds.sh build/test/run avx2=build/avx2/run plain=build/plain/run \
#            "arm64=qemu-aarch64 -L /usr/aarch64-linux-gnu build/arm64/run"
#
# For each weight type, on models written by REF's export (beside REF) in real shapes with
# random weights (stories15M; the K types on stories42M, whose rows of 512 hold whole blocks
# of 256), on the tiny GGUF fixtures of issue 24's block types (Q4_1 .. IQ4_XS, exported as they
# are), and on the default model, each build runs:
#   greedy   -t 0 -n 40, with --attn-dump (the attention weights, raw fp32)
#   sampled  -s 7 -t 0.8 -n 40
#   ppl      --ppl on the first 1200 bytes of train/kjv-heldout.txt
# and its stdout and dump must equal REF's byte for byte. One exception, stated here: the
# plain C build (NAME "plain") rounds f32/f16/bf16 products separately (no FMA unit to rely
# on), so on those three types only its perplexity is compared, within 1e-4 relative; the
# block types and attention are bitwise there too. Prints one line per model and build;
# exits 1 on any difference.
set -uo pipefail
cd "$(dirname "$0")/.."

[ $# -ge 2 ] || { echo "usage: $0 REF_RUN NAME=COMMAND ..." >&2; exit 2; }
ref=$1; shift
bindir=$(dirname "$ref")
work=build/compare
mkdir -p "$work"
head -c 1200 train/kjv-heldout.txt > "$work/text.txt"

models=(models/kjv.slm)
for t in f32 f16 bf16 q8_0 q4_0; do models+=("$work/15M-$t.slm"); done
for t in q4_k q5_k q6_k q4_k_m; do models+=("$work/42M-$t.slm"); done
# issue 24's block types, as llama-quantize wrote them (the tiny GGUF fixtures, exported as they are)
for t in q4_1_pure q5_0_pure q5_1_pure iq4_nl_pure q2_k q3_k_m iq4_xs; do
    models+=("$work/gguf-$t.slm")
done
for m in "${models[@]}"; do
    [ -f "$m" ] && continue
    b=$(basename "$m" .slm); shape=stories${b%%-*}; t=${b#*-}
    if [ "${b%%-*}" = gguf ]; then
        "$bindir/export" "tests/fixtures/tiny-$t.gguf" "$m" > /dev/null 2>&1 || { echo "FAIL: export $m"; exit 1; }
        continue
    fi
    "$bindir/export" --dtype "$t" --random "$shape" "$m" > /dev/null || { echo "FAIL: export $m"; exit 1; }
done

# runs COMMAND on model M into directory D: greedy.txt, attn.bin, sampled.txt, ppl.txt
outputs() {
    local cmd=$1 m=$2 d=$3 p="Once upon a time"
    [ "$m" = models/kjv.slm ] && p="And God said"
    mkdir -p "$d"
    $cmd "$m" -t 0 -n 40 -i "$p" --attn-dump "$d/attn.bin" > "$d/greedy.txt" 2>/dev/null &&
        $cmd "$m" -s 7 -t 0.8 -n 40 -i "$p" > "$d/sampled.txt" 2>/dev/null &&
        $cmd "$m" --ppl "$work/text.txt" > "$d/ppl.txt" 2>/dev/null
}

ppl_close() {  # the perplexities in two ppl.txt files within 1e-4 relative
    awk -v a="$(awk '{print $2}' "$1")" -v b="$(awk '{print $2}' "$2")" \
        'BEGIN { d = a - b; if (d < 0) d = -d; exit !(a > 0 && d <= 1e-4 * a) }'
}

fail=0
for m in "${models[@]}"; do
    b=$(basename "$m" .slm)
    outputs "$ref" "$m" "$work/ref/$b" || { echo "FAIL: $ref $m did not run"; fail=1; continue; }
    for v in "$@"; do
        name=${v%%=*} cmd=${v#*=}
        d=$work/$name/$b
        if ! outputs "$cmd" "$m" "$d"; then
            echo "FAIL: $name $b did not run"; fail=1; continue
        fi
        if [ "$name" = plain ] && [[ $b =~ -(f32|f16|bf16)$ ]]; then
            if ppl_close "$d/ppl.txt" "$work/ref/$b/ppl.txt"; then
                echo "ok: $name $b: perplexity within 1e-4 ($(cut -d, -f1 "$d/ppl.txt"))"
            else
                echo "FAIL: $name $b: $(cat "$d/ppl.txt") vs $(cat "$work/ref/$b/ppl.txt")"; fail=1
            fi
            continue
        fi
        bad=""
        for f in greedy.txt attn.bin sampled.txt ppl.txt; do
            cmp -s "$d/$f" "$work/ref/$b/$f" || bad="$bad $f"
        done
        if [ -z "$bad" ]; then
            echo "ok: $name $b: greedy, attention, sampled and perplexity the same bits"
        else
            echo "FAIL: $name $b differs from $ref in:$bad"; fail=1
        fi
    done
done
exit $fail
