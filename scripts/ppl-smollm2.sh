#!/usr/bin/env bash
# scripts/ppl-smollm2.sh: what each GGUF block type costs on a real model, SmolLM2-135M-Instruct,
# measured by llama.cpp's llama-perplexity and by searchlight's `run --ppl` (issue 24; the
# kjv256 model of scripts/ppl-llamacpp.sh needs half an hour of training, this one is in
# ../shared).
#
#   scripts/ppl-smollm2.sh                                  # every type, both sides
#   TYPES="Q4_1 IQ4_NL" SIDES=llamacpp scripts/ppl-smollm2.sh
#
# 1. Builds llama-perplexity and llama-quantize in $LLAMACPP/build if they are missing.
# 2. The published file $SRC (Q4_1, with a Q6_K... mix as its log says) becomes an F32 GGUF
#    ($OUT/smollm2-f32.gguf, `llama-quantize --allow-requantize SRC F32`): every weight its
#    dequantized value. That file is the base; every other type is quantized from it with
#    llama-quantize (no importance matrix), $OUT/quantize-<type>.log saying which type each
#    tensor got: SmolLM2's hidden size 576 is not a multiple of 256, so the K and IQ4_XS types
#    fall back to another type for the tensors whose rows are 576 long (ffn_down's rows are
#    1536 long and keep the type). On this model llama-quantize's Q2_K and Q3_K_S give the same
#    file (ffn_down q3_K, the rest q4_0, the embedding q8_0), so Q3_K_S is left out of TYPES;
#    PURE_<type> is `llama-quantize --pure <type>`: ffn_down in that type, every other matrix
#    (embedding included) in its fallback, q4_0 for Q2_K and Q3_K. That is the only way Q2_K
#    blocks get into a file of this model.
#    BYTES=1: also checks, tensor by tensor, that convert/quantize.c makes of the F32 base the
#    very bytes of each file's tensors whose type it makes (a small C driver, gguf-py with $PY).
# 3. $TEXT (default: the first $TEXT_BYTES bytes of train/kjv-heldout.txt, cut at a line end:
#    about 7.7k tokens, 14 chunks of 512, a few minutes per file on 2 busy cores)
#    is scored by llama-perplexity -c $CTX -t $THREADS (all chunks; it scores the second half of
#    each chunk) for the published file, the F32 base and each type. Prints per type the tensor
#    types, the file size, the estimate and its ratio to F32's.
# 4. searchlight's side (SIDES=both, the default; skipped with a note if ./export cannot read
#    the files): ./export of each GGUF as it is, `./run --ppl`, and `./export --dtype T` of the
#    F32 base for each of $OWN (our own quantizer), each beside llama.cpp's ratio. run --ppl -c
#    $CTX scores every token of windows of $CTX, llama-perplexity the second half of each chunk:
#    the two programs' figures differ, their ratios to F32 are what compare.
# Every perplexity run holds /tmp/sl-bench.lock (other benchmarks share this machine).
set -uo pipefail
cd "$(dirname "$0")/.."

WORK=${WORK:-${XDG_CACHE_HOME:-$HOME/.cache}/searchlight-llamacpp}  # outside the repository
LLAMACPP=${LLAMACPP:-$WORK/llama_cpp_python-0.3.36/vendor/llama.cpp}
SRC=${SRC:-../shared/models/gguf/SmolLM2-135M-Instruct.Q4_1.gguf}
OUT=${OUT:-$WORK/models/smollm2}
TYPES=${TYPES:-"Q8_0 Q6_K Q5_1 Q5_0 Q4_K_M Q4_1 IQ4_NL IQ4_XS Q4_0 Q3_K_M Q2_K PURE_Q3_K PURE_Q2_K"}
OWN=${OWN:-"q8_0 q6_k q5_1 q5_0 q4_k q4_1 iq4_nl iq4_xs q4_0 q3_k q2_k"}
CTX=${CTX:-512}
THREADS=${THREADS:-2}
TEXT_BYTES=${TEXT_BYTES:-32000}
SIDES=${SIDES:-both}
LOCK=${LOCK:-/tmp/sl-bench.lock}
mkdir -p "$OUT"
log() { echo "ppl-smollm2: $*" >&2; }
die() { log "$*"; exit 1; }
lbin=$LLAMACPP/build/bin
[ -f "$SRC" ] || die "$SRC: missing"

# 1. llama.cpp
for b in llama-perplexity llama-quantize; do
    [ -x "$lbin/$b" ] && continue
    log "building $b in $LLAMACPP/build"
    nice cmake --build "$LLAMACPP/build" --target "$b" -j2 > "$OUT/build-$b.log" 2>&1 ||
        die "building $b failed: $OUT/build-$b.log"
done

# 2. the F32 base and the quantized files
quant() {  # quant IN OUT TYPE LOG [--allow-requantize]
    [ -f "$2" ] && [ "$2" -nt "$1" ] && return 0
    log "llama-quantize $3 -> $2"
    nice "$lbin/llama-quantize" ${5:-} "$1" "$2.part" "$3" "$THREADS" > "$4" 2>&1 ||
        { tail -5 "$4"; rm -f "$2.part"; die "llama-quantize $3 failed: $4"; }
    mv "$2.part" "$2"
}
f32=$OUT/smollm2-f32.gguf
quant "$SRC" "$f32" F32 "$OUT/quantize-f32.log" --allow-requantize
for t in $TYPES; do
    if [ "${t#PURE_}" != "$t" ]; then
        quant "$f32" "$OUT/smollm2-${t,,}.gguf" "${t#PURE_}" "$OUT/quantize-${t,,}.log" --pure
    else
        quant "$f32" "$OUT/smollm2-${t,,}.gguf" "$t" "$OUT/quantize-${t,,}.log"
    fi
done
ln -sf "$(realpath "$SRC")" "$OUT/smollm2-published.gguf"

# 2b. our quantizer's bytes against llama-quantize's, tensor by tensor (BYTES=1)
if [ "${BYTES:-0}" = 1 ]; then
    PY=${PY:-/root/.cache/sl-venv/bin/python}
    drv=$OUT/quantize-drv
    cat > "$drv.c" <<'EOF'
#include <stdio.h>
#include <stdlib.h>
#include "convert/quantize.h"
/* quantize-drv TYPE ROWS COLS BYTES < f32 rows > blocks */
int main(int argc, char **argv) {
    if (argc != 5) return 2;
    size_t r = strtoul(argv[2], 0, 10), c = strtoul(argv[3], 0, 10), n = strtoul(argv[4], 0, 10);
    float *x = malloc(r * c * sizeof *x);
    void *o = malloc(n);
    if (!x || !o || fread(x, sizeof *x, r * c, stdin) != r * c) return 3;
    if (quantize_blocks((unsigned)atoi(argv[1]), x, r, c, o) != 0) return 4;
    return fwrite(o, 1, n, stdout) == n ? 0 : 5;
}
EOF
    nice cc -O2 -march=native -std=c11 -D_POSIX_C_SOURCE=200809L -I. "$drv.c" convert/quantize.c \
        kernels/blocks.c kernels/quant.c -o "$drv" -lm || die "building $drv failed"
    files=$(for t in $TYPES; do echo "$OUT/smollm2-${t,,}.gguf"; done)
    # shellcheck disable=SC2086
    nice "$PY" - "$drv" "$f32" $files <<'EOF' || die "our bytes differ from llama-quantize's"
import subprocess, sys
import numpy as np
from gguf import GGUFReader
drv, base, files = sys.argv[1], sys.argv[2], sys.argv[3:]
f32 = {t.name: t for t in GGUFReader(base).tensors}
made = {2, 3, 6, 7, 10, 11, 12, 13, 14, 20, 23}  # the ggml types quantize_blocks makes
bad = 0
for path in files:
    seen = {}
    for t in GGUFReader(path).tensors:
        if int(t.tensor_type) not in made:
            continue
        x = np.ascontiguousarray(f32[t.name].data, dtype=np.float32)
        cols = int(t.shape[0])
        want = np.asarray(t.data).tobytes()
        r = subprocess.run([drv, str(int(t.tensor_type)), str(x.size // cols), str(cols),
                            str(len(want))], input=x.tobytes(), capture_output=True)
        ok = r.returncode == 0 and r.stdout == want
        s = seen.setdefault(t.tensor_type.name, [0, 0])
        s[0] += ok
        s[1] += 1
        if not ok:
            bad += 1
            print(f"{path}: {t.name} ({t.tensor_type.name}) differs", file=sys.stderr)
    print(path.rsplit("/", 1)[-1] + ": "
          + ", ".join(f"{k} {a}/{b} tensors equal" for k, (a, b) in seen.items()), flush=True)
sys.exit(1 if bad else 0)
EOF
fi

# 3. llama-perplexity
if [ -z "${TEXT:-}" ]; then
    TEXT=$OUT/text.txt  # rewritten only when it changes: the logs below are cached against it
    head -c "$TEXT_BYTES" train/kjv-heldout.txt | sed '$d' > "$TEXT.new"  # drop the cut last line
    if cmp -s "$TEXT.new" "$TEXT"; then rm "$TEXT.new"; else mv "$TEXT.new" "$TEXT"; fi
fi
ppl() {  # ppl GGUF LOG: "x +/- y" from llama-perplexity's final estimate (cached in LOG)
    if ! grep -q 'Final estimate' "$2" 2>/dev/null || [ "$2" -ot "$1" ] || [ "$2" -ot "$TEXT" ]; then
        flock "$LOCK" nice "$lbin/llama-perplexity" -m "$1" -f "$TEXT" -c "$CTX" -t "$THREADS" \
            --chunks -1 > "$2.part" 2>&1 || { tail -5 "$2.part"; log "llama-perplexity $1 failed"; return 1; }
        mv "$2.part" "$2"
    fi
    sed -nE 's/.*Final estimate: PPL = ([0-9.]+ \+\/- [0-9.]+).*/\1/p' "$2"
}
ALL="PUBLISHED F32 $TYPES"
declare -A res
for t in $ALL; do
    log "llama-perplexity $t"
    res[$t]=$(ppl "$OUT/smollm2-${t,,}.gguf" "$OUT/ppl-${t,,}.log") || res[$t]="nan"
done
mix() {  # "30 q4_1, 1 q6_K": the types llama-quantize gave the 2-D tensors; published: the file's
    local f=$OUT/quantize-${1,,}.log
    [ "$1" = PUBLISHED ] && f=$OUT/quantize-f32.log  # its "size = ... MiB" lines name the source types
    if [ "$1" = PUBLISHED ]; then
        grep -oE '\[ *[0-9]+/ *[0-9]+\] +[a-z0-9_.]+weight +- \[[^]]*\], +type = +[a-z0-9_A-Z]+' "$f" |
            grep -v norm | sed -E 's/.*type = +//' | sort | uniq -c | awk '{ printf "%s%d %s", (NR > 1 ? ", " : ""), $1, $2 }'
        return
    fi
    [ "$1" = F32 ] && { echo "all f32"; return; }
    grep -oE 'converting to [A-Za-z0-9_]+' "$f" | cut -d' ' -f3 | sort | uniq -c |
        awk '{ printf "%s%d %s", (NR > 1 ? ", " : ""), $1, $2 }'
}
chunks=$(sed -nE 's/.*calculating perplexity over ([0-9]+) chunks.*/\1/p' "$OUT/ppl-f32.log")
echo "llama.cpp (llama-cpp-python 0.3.36) llama-perplexity -c $CTX -t $THREADS on $TEXT ($(wc -c < "$TEXT") bytes):"
echo "$chunks chunks of $CTX tokens, the last $((CTX / 2)) of each scored"
echo
echo "| type | matrices (llama-quantize) | file bytes | llama.cpp ppl | ratio to F32 |"
echo "| --- | --- | ---: | ---: | ---: |"
base=${res[F32]%% *}
for t in $ALL; do
    awk -v t="$t" -v m="$(mix "$t")" -v b="$(stat -L -c %s "$OUT/smollm2-${t,,}.gguf")" -v r="${res[$t]}" \
        -v base="$base" 'BEGIN { split(r, p, " "); printf "| %s | %s | %d | %s | %.4f |\n", t, m, b, r, p[1] / base }'
done
echo
for t in $TYPES; do  # the fallbacks: "ncols 576 not divisible by 256 (required for type q6_K) -> falling back to q8_0"
    fb=$(grep -oE 'required for type +[A-Za-z0-9_]+\) -> falling back to +[A-Za-z0-9_]+' "$OUT/quantize-${t,,}.log" |
        awk '{ print $4 " to " $9 }' | tr -d ')' | sort | uniq -c | awk '{ printf "%s%d %s %s %s", (NR > 1 ? ", " : ""), $1, $2, $3, $4 }')
    [ -n "$fb" ] && echo "- $t: rows of 576 fell back: $fb"
done
[ "$SIDES" = llamacpp ] && exit 0

# 4. searchlight on the same files, and its own quantizer from the F32 base
[ -x ./run ] && [ -x ./export ] || nice make all > /dev/null || die "make all failed"
ours() {  # ours SLM LOG: run --ppl's perplexity
    flock "$LOCK" nice ./run "$1" --ppl "$TEXT" -c "$CTX" -T "$THREADS" > "$2" 2>&1 || return 1
    sed -nE 's/^perplexity ([0-9.]+),.*/\1/p' "$2"
}
declare -A sl
for t in $ALL; do
    s=$OUT/sl-${t,,}.slm
    if ./export "$OUT/smollm2-${t,,}.gguf" "$s" > "$OUT/export-${t,,}.log" 2>&1; then
        sl[$t]=$(ours "$s" "$OUT/run-${t,,}.log") || sl[$t]=nan
    else
        sl[$t]=nan
        log "export of $t failed: $(tail -1 "$OUT/export-${t,,}.log")"
    fi
done
echo
echo "searchlight \`run --ppl -c $CTX\` (every token, windows of $CTX) on the same GGUFs, exported as they are:"
echo
echo "| type | file bytes (ours) | ppl | ratio to F32 | llama.cpp's ratio | difference |"
echo "| --- | ---: | ---: | ---: | ---: | ---: |"
for t in $ALL; do
    s=$OUT/sl-${t,,}.slm
    awk -v t="$t" -v sz="$( [ -f "$s" ] && stat -c %s "$s" || echo 0)" -v p="${sl[$t]}" -v b="${sl[F32]}" \
        -v r="${res[$t]%% *}" -v lb="$base" 'BEGIN {
        printf "| %s | %d | %.4f | %.5f | %.5f | %+.3f%% |\n", t, sz, p, p / b, r / lb, 100 * ((p / b) / (r / lb) - 1) }'
done
echo
echo "searchlight's own quantizer (\`export --dtype T\` of the F32 base):"
echo
echo "| dtype | file bytes | ppl | ratio to F32 |"
echo "| --- | ---: | ---: | ---: |"
for d in $OWN; do
    s=$OUT/own-$d.slm
    if ./export --dtype "$d" "$f32" "$s" > "$OUT/export-own-$d.log" 2>&1; then
        p=$(ours "$s" "$OUT/run-own-$d.log") || p=nan
        awk -v d="$d" -v sz="$(stat -c %s "$s")" -v p="$p" -v b="${sl[F32]}" 'BEGIN {
            printf "| %s | %d | %.4f | %.5f |\n", d, sz, p, p / b }'
    else
        log "export --dtype $d failed: $(tail -1 "$OUT/export-own-$d.log")"
        echo "| $d | | failed | |"
    fi
done
