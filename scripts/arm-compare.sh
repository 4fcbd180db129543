#!/usr/bin/env bash
# scripts/arm-compare.sh: the second half of `make test-arm`: the ARM64 build, run under qemu,
# must print the same bytes as the x86 AVX2 build, model by model and weight type by weight
# type. Prints one line per comparison; exits 1 if any differs, 2 if a run fails.
#
#   scripts/arm-compare.sh X86_DIR ARM_DIR "ARM_RUNNER"     (make test-arm passes them)
#
# The models (written into ARM_DIR/cmp by X86_DIR/export): the default model
# models/kjv.slm (q8_0); the Hugging Face fixture tests/fixtures/tiny-f32 (dim 64, head_dim
# 16) as f32, f16, bf16, q8_0 and q4_0; the GGUF fixture tiny-q6_k.gguf (dim 256, 8 heads of 32,
# 1 KV head) as it is (q6_k), as f32, f16, bf16 and q4_0; tiny-q4_k_m.gguf (q4_k with q6_k) and
# tiny-q5_k_m.gguf (q5_k); issue 24's block types as llama-quantize wrote them:
# tiny-{q4_1,q5_0,q5_1,iq4_nl}_pure.gguf, tiny-q2_k.gguf, tiny-q3_k_m.gguf, tiny-iq4_xs.gguf. Per model: a greedy generation with --attn-dump (the text and the
# dumped weights), the same with an f16 KV cache on 2 threads, a sampled generation, and
# --ppl on the first 1000 bytes of train/kjv-heldout.txt.
set -uo pipefail
x86=$1 arm=$2 runner=$3
work=$arm/cmp
mkdir -p "$work" || exit 2

export_model() {  # name, export arguments... (every time: a few ms each)
    local name=$1; shift
    "$x86/export" "$@" "$work/$name.slm" > /dev/null || { echo "arm-compare: export $name failed" >&2; exit 2; }
}
cp models/kjv.slm "$work/kjv.slm" || exit 2
for t in f32 f16 bf16 q8_0 q4_0; do export_model "tiny-$t" --dtype "$t" tests/fixtures/tiny-f32; done
export_model tiny-q6_k tests/fixtures/tiny-q6_k.gguf
for t in f32 f16 bf16 q4_0; do export_model "kq-$t" --dtype "$t" tests/fixtures/tiny-q6_k.gguf; done
export_model tiny-q4_k_m tests/fixtures/tiny-q4_k_m.gguf
export_model tiny-q5_k_m tests/fixtures/tiny-q5_k_m.gguf
NEW_TYPES="q4_1_pure q5_0_pure q5_1_pure iq4_nl_pure q2_k q3_k_m iq4_xs"
for t in $NEW_TYPES; do export_model "tiny-$t" "tests/fixtures/tiny-$t.gguf"; done
head -c 1000 train/kjv-heldout.txt > "$work/ppl.txt" || exit 2

diffs=0
# compare NAME WHAT ARGS...: runs both builds with ARGS (a dump file is written as @DUMP@),
# compares stdout and, where ARGS name one, the dumps.
compare() {
    local name=$1 what=$2; shift 2
    local ax=() aa=() dump=0 a
    for a in "$@"; do
        if [ "$a" = @DUMP@ ]; then ax+=("$work/x86.dump"); aa+=("$work/arm.dump"); dump=1
        else ax+=("$a"); aa+=("$a"); fi
    done
    rm -f "$work/x86.dump" "$work/arm.dump"
    if ! "$x86/run" "$work/$name.slm" "${ax[@]}" > "$work/x86.out" 2> "$work/x86.err"; then
        echo "arm-compare: x86 run failed: $name ${ax[*]}" >&2; cat "$work/x86.err" >&2; exit 2
    fi
    if ! $runner "$arm/run" "$work/$name.slm" "${aa[@]}" > "$work/arm.out" 2> "$work/arm.err"; then
        echo "arm-compare: arm64 run failed: $name ${aa[*]}" >&2; cat "$work/arm.err" >&2; exit 2
    fi
    local res="same" detail
    detail="$(wc -c < "$work/x86.out") bytes of text"
    cmp -s "$work/x86.out" "$work/arm.out" || res="DIFFERENT"
    if [ $dump = 1 ]; then
        detail+=", $(wc -c < "$work/x86.dump") bytes of attention"
        cmp -s "$work/x86.dump" "$work/arm.dump" || res="DIFFERENT"
    fi
    [ $res = same ] || diffs=$((diffs + 1))
    printf '%-9s %-16s %-28s (%s)\n' "$res" "$name" "$what" "$detail"
}

for m in kjv tiny-f32 tiny-f16 tiny-bf16 tiny-q8_0 tiny-q4_0 tiny-q6_k kq-f32 kq-f16 kq-bf16 \
         kq-q4_0 tiny-q4_k_m tiny-q5_k_m $(for t in $NEW_TYPES; do echo "tiny-$t"; done); do
    case $m in kjv) p="And God said unto Moses" ;; *) p="Once upon a time, there was a little girl named Lily" ;; esac
    compare "$m" "greedy, --attn-dump" -T 1 -t 0 -n 64 -i "$p" --attn-dump @DUMP@
    compare "$m" "greedy, --kv f16, -T 2" -T 2 -t 0 -n 64 -i "$p" --kv f16 --attn-dump @DUMP@
    compare "$m" "sampled -s 7 -t 0.8" -T 1 -s 7 -t 0.8 -n 64 -i "$p"
    compare "$m" "--ppl" -T 1 --ppl "$work/ppl.txt"
done
if [ $diffs -gt 0 ]; then
    echo "arm-compare: $diffs comparisons differ between x86 AVX2 and ARM64"
    exit 1
fi
echo "arm-compare: ARM64 and x86 AVX2 give the same bytes in every comparison"
