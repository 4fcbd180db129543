#!/usr/bin/env bash
# scripts/ppl-llamacpp.sh: llama.cpp's perplexity for a trained model in F32 and in ggml's
# quantized types, to measure what each type costs.
#
#   scripts/ppl-llamacpp.sh                          # build/train/kjv256-hf, all TYPES
#   TYPES="Q8_0 Q4_K_M" THREADS=1 scripts/ppl-llamacpp.sh
#
# The model is meant to be `train/train.py --shape kjv256 build/train/kjv256-hf`: every matrix
# has rows (its input dimension) a multiple of 256, so the K types apply to every tensor.
# 1. Builds llama-perplexity, llama-quantize and llama-tokenize (CPU only, as
#    scripts/bench-llamacpp.sh builds llama.cpp) from the source distribution of
#    llama-cpp-python $LCP_VERSION (vendor/llama.cpp) in $WORK, if they are not there yet.
# 2. Converts $MODEL to an F32 GGUF with that tree's convert_hf_to_gguf.py, run in a child
#    process with $PY (a venv with tests/fixtures/requirements.txt: torch, transformers,
#    sentencepiece), changed in one place: the tokenizer.json (Llama 2's sentencepiece-BPE
#    layout) goes through gguf's LlamaHfVocab, which gives every token the score -1000, so that
#    llama.cpp's sentencepiece tokenizer, which merges the pair whose piece scores highest,
#    would merge left to right instead of in the BPE's order. The patch scores piece id p
#    (p >= 259, after <unk> <s> </s> and the 256 byte tokens) -(p - 259), as a sentencepiece
#    model of this vocabulary would (tests/fixtures/make_fixtures.py does the same), and 0 the
#    others. The script checks that llama-tokenize then gives the ids that `tokenizers` gives.
# 3. llama-quantize turns the F32 GGUF into each of $TYPES; its log (which type each tensor
#    got) is $OUT/quantize-<type>.log.
# 4. llama-perplexity -c $CTX -t $THREADS on $TEXT for each GGUF (log: $OUT/ppl-<type>.log).
#    It cuts the tokens (<s> then the text) into chunks of $CTX, puts <s> first in each, drops
#    the tail that does not fill a chunk, and scores only the last $CTX/2 - 1 tokens of each
#    chunk (each with at least $CTX/2 tokens before it); --chunks is left at -1 (all chunks).
#    So its figure is not `run --ppl`'s, which scores every token of windows of <s> + $CTX - 1.
# 5. Prints a markdown table: per type the tensor types llama-quantize chose (norms stay F32), the
#    file size, the final estimate (PPL = x +/- y) and its ratio to F32's.
# 6. searchlight's side: ./export of each GGUF as it is and `./run --ppl` of it, and ./export
#    --dtype of $MODEL itself (our own quantizer) for each of $OWN; a second table puts our ratio
#    to F32 beside llama.cpp's for each of llama-quantize's files, and our own files' figures.
# Needs the network once (PyPI) if $WORK has no llama.cpp yet, cmake, g++.
set -euo pipefail
cd "$(dirname "$0")/.."

WORK=${WORK:-${XDG_CACHE_HOME:-$HOME/.cache}/searchlight-llamacpp}  # outside the repository
LCP_VERSION=${LCP_VERSION:-0.3.36}
LLAMACPP=${LLAMACPP:-$WORK/llama_cpp_python-$LCP_VERSION/vendor/llama.cpp}
PY=${PY:-/tmp/benchvenv/bin/python}
MODEL=${MODEL:-build/train/kjv256-hf}
NAME=${NAME:-$(basename "$MODEL" -hf)}
OUT=${OUT:-build/ppl}
TEXT=${TEXT:-train/kjv-heldout.txt}
TYPES=${TYPES:-"Q8_0 Q6_K Q5_K_M Q4_K_M Q4_0"}
CTX=${CTX:-256}
THREADS=${THREADS:-2}
mkdir -p "$OUT"
log() { echo "ppl-llamacpp: $*" >&2; }
lbin=$LLAMACPP/build/bin

# 1. llama.cpp
if [ ! -x "$lbin/llama-perplexity" ] || [ ! -x "$lbin/llama-quantize" ] || [ ! -x "$lbin/llama-tokenize" ]; then
    if [ ! -d "$LLAMACPP" ]; then
        log "downloading llama-cpp-python $LCP_VERSION (source) from PyPI"
        mkdir -p "$WORK"
        python3 -m pip download -q --no-deps --no-binary :all: -d "$WORK" "llama-cpp-python==$LCP_VERSION"
        tar -xzf "$WORK/llama_cpp_python-$LCP_VERSION.tar.gz" -C "$WORK"
    fi
    log "building llama.cpp (llama-perplexity, llama-quantize, llama-tokenize) in $LLAMACPP/build"
    [ -f "$LLAMACPP/build/CMakeCache.txt" ] ||
        cmake -S "$LLAMACPP" -B "$LLAMACPP/build" -DCMAKE_BUILD_TYPE=Release -DGGML_NATIVE=ON \
            -DLLAMA_CURL=OFF -DBUILD_SHARED_LIBS=OFF -DLLAMA_BUILD_TESTS=OFF > "$OUT/cmake.log"
    cmake --build "$LLAMACPP/build" -j"$(nproc)" \
        --target llama-perplexity llama-quantize llama-tokenize > "$OUT/build.log"
fi

# 2. F32 GGUF, with sentencepiece scores for the vocabulary
f32=$OUT/$NAME-f32.gguf
if [ ! -f "$f32" ] || [ "$f32" -ot "$MODEL/model.safetensors" ]; then
    log "converting $MODEL to $f32"
    OMP_NUM_THREADS=1 "$PY" - "$LLAMACPP" "$MODEL" "$f32" > "$OUT/convert.log" 2>&1 <<'EOF' ||
import sys
llamacpp, model_dir, out = sys.argv[1:4]
sys.path[0:0] = [llamacpp + "/gguf-py", llamacpp]
import gguf
gguf.LlamaHfVocab.get_token_score = lambda self, i: -float(i - 259) if i >= 259 else 0.0
import convert_hf_to_gguf
sys.argv = ["convert_hf_to_gguf.py", model_dir, "--outtype", "f32", "--outfile", out]
convert_hf_to_gguf.main()
EOF
        { cat "$OUT/convert.log"; log "convert_hf_to_gguf.py failed"; exit 1; }
fi
"$lbin/llama-tokenize" -m "$f32" -f "$TEXT" --ids --log-disable 2>/dev/null | tr -d '[] ' | tr ',' '\n' > "$OUT/ids-llamacpp.txt"
"$PY" - "$MODEL/tokenizer.json" "$TEXT" > "$OUT/ids-tokenizers.txt" <<'EOF'
import sys, tokenizers
tok = tokenizers.Tokenizer.from_file(sys.argv[1])
print("\n".join(map(str, tok.encode(open(sys.argv[2], encoding="utf-8").read()).ids)))
EOF
if cmp -s "$OUT/ids-llamacpp.txt" "$OUT/ids-tokenizers.txt"; then
    log "$TEXT: llama.cpp and tokenizers give the same $(wc -l < "$OUT/ids-llamacpp.txt") ids (<s> first)"
else
    log "$TEXT: llama.cpp's ids differ from tokenizers' ($OUT/ids-*.txt); the perplexities are over other tokens"
fi

# 3. quantized GGUFs
for t in $TYPES; do
    g=$OUT/$NAME-${t,,}.gguf
    if [ ! -f "$g" ] || [ "$g" -ot "$f32" ]; then
        log "quantizing to $t"
        "$lbin/llama-quantize" "$f32" "$g" "$t" "$THREADS" > "$OUT/quantize-${t,,}.log" 2>&1 ||
            { tail -20 "$OUT/quantize-${t,,}.log"; exit 1; }
    fi
done

# 4. perplexity
ppl() {  # "x +/- y" from llama-perplexity's final estimate
    "$lbin/llama-perplexity" -m "$1" -f "$TEXT" -c "$CTX" -t "$THREADS" --chunks -1 > "$2" 2>&1 ||
        { tail -20 "$2"; exit 1; }
    sed -nE 's/.*Final estimate: PPL = ([0-9.]+ \+\/- [0-9.]+).*/\1/p' "$2"
}
declare -A res
for t in F32 $TYPES; do
    g=$OUT/$NAME-${t,,}.gguf
    log "llama-perplexity $g"
    res[$t]=$(ppl "$g" "$OUT/ppl-${t,,}.log")
done

# 5. table
chunks=$(sed -nE 's/.*calculating perplexity over ([0-9]+) chunks.*/\1/p' "$OUT/ppl-f32.log")
echo "llama.cpp (llama-cpp-python $LCP_VERSION) llama-perplexity -c $CTX -t $THREADS on $TEXT:"
echo "$chunks chunks of $CTX tokens, the last $((CTX / 2 - 1)) of each scored ($((chunks * (CTX / 2 - 1))) tokens)"
echo
echo "| type | matrices (llama-quantize) | file bytes | llama.cpp ppl | ratio to F32 |"
echo "| --- | --- | ---: | ---: | ---: |"
base=${res[F32]%% *}
mix() {  # "38 q4_K, 5 q6_K": the types llama-quantize gave the 2-D tensors
    [ "$1" = F32 ] && { echo all f32; return; }
    grep -oE 'converting to [A-Za-z0-9_]+' "$OUT/quantize-${1,,}.log" | cut -d' ' -f3 | sort | uniq -c |
        awk '{ printf "%s%d %s", (NR > 1 ? ", " : ""), $1, $2 }'
}
for t in F32 $TYPES; do
    awk -v t="$t" -v m="$(mix "$t")" -v b="$(stat -c %s "$OUT/$NAME-${t,,}.gguf")" -v r="${res[$t]}" \
        -v base="$base" 'BEGIN { split(r, p, " "); printf "| %s | %s | %d | %s | %.4f |\n", t, m, b, r, p[1] / base }'
done

# 6. searchlight on the same files, and on its own quantization of the same model
[ -x ./run ] && [ -x ./export ] || make all > /dev/null
OWN=${OWN:-"q8_0 q6_k q5_k q4_k_m q4_k q4_0"}
ours() { ./run "$1" --ppl "$TEXT" -T "$THREADS" 2>/dev/null | sed -nE 's/^perplexity ([0-9.]+),.*/\1/p'; }
declare -A sl
for t in F32 $TYPES; do
    ./export "$OUT/$NAME-${t,,}.gguf" "$OUT/sl-${t,,}.slm" > /dev/null 2>&1
    sl[$t]=$(ours "$OUT/sl-${t,,}.slm")
done
echo
echo "searchlight \`run --ppl $TEXT\` (every token, windows of <s> + $((CTX - 1))) on the same GGUFs:"
echo
echo "| type | ppl | ratio to F32 | llama.cpp's ratio | difference |"
echo "| --- | ---: | ---: | ---: | ---: |"
for t in F32 $TYPES; do
    awk -v t="$t" -v p="${sl[$t]}" -v b="${sl[F32]}" -v r="${res[$t]%% *}" -v lb="$base" 'BEGIN {
        printf "| %s | %.4f | %.5f | %.5f | %+.3f%% |\n", t, p, p / b, r / lb, 100 * ((p / b) / (r / lb) - 1) }'
done
echo
echo "searchlight's own quantization of $MODEL (\`export --dtype T\`):"
echo
echo "| dtype | file bytes | ppl | ratio to F32 |"
echo "| --- | ---: | ---: | ---: |"
for d in $OWN; do
    ./export --dtype "$d" "$MODEL" "$OUT/own-$d.slm" > /dev/null 2>&1
    p=$(ours "$OUT/own-$d.slm")
    awk -v d="$d" -v s="$(stat -c %s "$OUT/own-$d.slm")" -v p="$p" -v b="${sl[F32]}" 'BEGIN {
        printf "| %s | %d | %.4f | %.5f |\n", d, s, p, p / b }'
done
