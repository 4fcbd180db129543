#!/usr/bin/env bash
# scripts/bench-llamacpp.sh: searchlight and llama.cpp side by side, on the same weights.
#
#   scripts/bench-llamacpp.sh                     # stories15M and stories110M, f32 f16 q8_0
#   SHAPES=stories15M TYPES="f32 q8_0" ROUNDS=7 THREADS=1 scripts/bench-llamacpp.sh
#   SHAPES=stories110M TYPES="q8_0 q4_k_m q5_k_m q6_k q4_0" scripts/bench-llamacpp.sh
#   SHAPES=stories110M TYPES="q4_0 q4_k_m q4_1 q5_0 q5_1 iq4_nl q2_k q3_k_m iq4_xs" ...
#
# 1. Builds llama.cpp (CPU only, native flags, its default build otherwise) from the source
#    distribution of llama-cpp-python $LCP_VERSION on PyPI (vendor/llama.cpp), in $WORK
#    (default ~/.cache/searchlight-llamacpp: outside the repository; delete it to start over).
# 2. Writes a random Llama of each shape as an F32 GGUF (scripts/bench_gguf.py, in a venv with
#    scripts/requirements-bench.txt), converts it to each type with llama.cpp's llama-quantize,
#    and imports each GGUF with ./export (which keeps every one of these types bit for bit).
# 3. Runs llama-bench and `run --bench` in turn, ROUNDS times, alternating which goes first:
#    prompts of 128 and 512 tokens (pp128, pp512) and 128 generated tokens (tg128), THREADS
#    threads.
# 4. Prints one markdown table of medians; raw figures are in $WORK/results.tsv.
# Needs the network once (PyPI), cmake, g++, python3 with venv; and ./run ./export (make).
set -euo pipefail
cd "$(dirname "$0")/.."

WORK=${WORK:-${XDG_CACHE_HOME:-$HOME/.cache}/searchlight-llamacpp}  # outside the repository
LCP_VERSION=${LCP_VERSION:-0.3.36}
SHAPES=${SHAPES:-"stories15M stories110M"}
TYPES=${TYPES:-"f32 f16 q8_0"}
ROUNDS=${ROUNDS:-5}
TG=${TG:-128}  # tokens generated (tg128)
PP512=${PP512:-1}  # 0: prompts of 128 tokens only
THREADS=${THREADS:-2}
VOCAB=${VOCAB:-../shared/models/gguf/ggml-vocab-llama-spm.gguf}
mkdir -p "$WORK/models"
log() { echo "bench-llamacpp: $*" >&2; }

# 1. llama.cpp
src=$WORK/llama_cpp_python-$LCP_VERSION/vendor/llama.cpp
lbin=$src/build/bin
RUN=${RUN:-./run}          # our binary (e.g. an AVX2 build: make run-avx2)
LBENCH=${LBENCH:-$lbin/llama-bench}  # theirs (e.g. $src/build-avx2/bin/llama-bench)
if [ ! -x "$lbin/llama-bench" ] || [ ! -x "$lbin/llama-quantize" ]; then
    if [ ! -d "$src" ]; then
        log "downloading llama-cpp-python $LCP_VERSION (source) from PyPI"
        python3 -m pip download -q --no-deps --no-binary :all: -d "$WORK" "llama-cpp-python==$LCP_VERSION"
        tar -xzf "$WORK/llama_cpp_python-$LCP_VERSION.tar.gz" -C "$WORK"
    fi
    log "building llama.cpp (llama-bench, llama-quantize) in $src/build"
    cmake -S "$src" -B "$src/build" -DCMAKE_BUILD_TYPE=Release -DGGML_NATIVE=ON -DLLAMA_CURL=OFF \
        -DBUILD_SHARED_LIBS=OFF -DLLAMA_BUILD_TESTS=OFF > "$WORK/cmake.log"
    cmake --build "$src/build" -j"$(nproc)" --target llama-bench llama-quantize > "$WORK/build.log"
fi

# 2. the same weights for both
venv=$WORK/venv
if [ ! -x "$venv/bin/python" ]; then
    log "creating $venv (scripts/requirements-bench.txt)"
    python3 -m venv "$venv"
    "$venv/bin/pip" install -q -r scripts/requirements-bench.txt
fi
[ -x ./run ] && [ -x ./export ] || make all > /dev/null
declare -A QTYPE=([f32]=F32 [f16]=F16 [bf16]=BF16 [q8_0]=Q8_0 [q4_0]=Q4_0 [q4_k_m]=Q4_K_M
                  [q5_k_m]=Q5_K_M [q6_k]=Q6_K [q4_1]=Q4_1 [q5_0]=Q5_0 [q5_1]=Q5_1
                  [iq4_nl]=IQ4_NL [q2_k]=Q2_K [q3_k_m]=Q3_K_M [iq4_xs]=IQ4_XS)
models=()
for s in $SHAPES; do
    f32=$WORK/models/$s-f32.gguf
    [ -f "$f32" ] || { log "writing $f32"; "$venv/bin/python" scripts/bench_gguf.py "$s" "$VOCAB" "$f32"; }
    for t in $TYPES; do
        [ -n "${QTYPE[$t]:-}" ] || { log "unknown type $t (${!QTYPE[*]})"; exit 2; }
        g=$WORK/models/$s-$t.gguf
        [ -f "$g" ] || "$lbin/llama-quantize" "$f32" "$g" "${QTYPE[$t]}" > "$WORK/quantize.log" 2>&1
        [ -f "$WORK/models/$s-$t.slm" ] || ./export "$g" "$WORK/models/$s-$t.slm" > /dev/null
        models+=("$s-$t")
    done
done

# 3. interleaved runs
res=$WORK/results.tsv
printf 'round\tmodel\tprogram\tpp128\tpp512\ttg128\troofline\n' > "$res"
ours() {  # pp512 is nan where the model's context is shorter
    local pp=128,512 j ctx
    ctx=$($RUN "$WORK/models/$1.slm" --bench --pp 1048576 2>&1 | sed -nE 's/.*holds ([0-9]+) positions.*/\1/p')
    [ "${ctx:-0}" -ge 512 ] && [ "$PP512" = 1 ] || pp=128
    j=$($RUN "$WORK/models/$1.slm" --bench -T "$THREADS" --pp $pp --tg "$TG" --reps 1 --json | tr -d '\n')
    field() { sed -nE "s/.*$1 ([0-9.]+).*/\\1/p" <<< "$j"; }
    local p5; p5=$(field '"pp": 512, "tok_s":'); p5=${p5:-nan}
    printf '%s\t%s\t%s\t%s' "$(field '"pp": 128, "tok_s":')" "$p5" "$(field '"tg_tok_s":')" \
        "$(field '"roofline_fraction":')"
}
theirs() {
    local lp=128,512; [ "$PP512" = 1 ] || lp=128
    "$LBENCH" -m "$WORK/models/$1.gguf" -p $lp -n "$TG" -t "$THREADS" -r 1 -o jsonl 2>/dev/null |
        sed -nE 's/.*"n_prompt": ([0-9]+), "n_gen": ([0-9]+).*"avg_ts": ([0-9.e+]+).*/\1 \2 \3/p' |
        awk '$1 == 128 { p1 = $3 } $1 == 512 { p5 = $3 } $2 > 0 { tg = $3 } END { printf "%s\t%s\t%s\t", p1, p5 == "" ? "nan" : p5, tg }'
}
for r in $(seq "$ROUNDS"); do
    for m in "${models[@]}"; do
        log "round $r/$ROUNDS: $m"
        a=$(ours "$m"); b=$(theirs "$m")
        if [ $((r % 2)) -eq 0 ]; then b=$(theirs "$m"); a=$(ours "$m"); fi
        printf '%s\t%s\tsearchlight\t%s\n%s\t%s\tllama.cpp\t%s\n' "$r" "$m" "$a" "$r" "$m" "$b" >> "$res"
    done
done

# 4. medians
median() { sort -g | awk '{ v[NR] = $1 } END { print NR % 2 ? v[(NR + 1) / 2] : (v[NR / 2] + v[NR / 2 + 1]) / 2 }'; }
col() { awk -F'\t' -v m="$1" -v p="$2" -v c="$3" '$2 == m && $3 == p { print $c }' "$res" | median; }
cpu=$(grep -m1 'model name' /proc/cpuinfo | cut -d: -f2- | sed 's/^ //')
march=$(${CC:-cc} -march=native -Q --help=target 2>/dev/null | awk '$1 == "-march=" { print $2 }' || true)
isa=$(grep -m1 '^flags' /proc/cpuinfo | tr ' ' '\n' |
    grep -xE 'avx2|avx512f|avx512_vnni|avx512_bf16|avx512_fp16|amx_tile' | paste -sd' ' || true)
echo "$cpu (-march=native is ${march:-unknown}; ${isa:-no AVX2}), $(nproc) CPUs, $THREADS threads,"
echo "medians of $ROUNDS interleaved rounds; llama.cpp from llama-cpp-python $LCP_VERSION"
echo
echo "| model | type | pp128 ours | llama.cpp | ratio | pp512 ours | llama.cpp | ratio | tg128 ours | llama.cpp | ratio | of roofline |"
echo "| --- | --- | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: |"
for m in "${models[@]}"; do
    sp=$(col "$m" searchlight 4); lp=$(col "$m" llama.cpp 4)
    s5=$(col "$m" searchlight 5); l5=$(col "$m" llama.cpp 5)
    st=$(col "$m" searchlight 6); lt=$(col "$m" llama.cpp 6); rf=$(col "$m" searchlight 7)
    awk -v m="$m" -v sp="$sp" -v lp="$lp" -v s5="$s5" -v l5="$l5" -v st="$st" -v lt="$lt" -v rf="$rf" 'BEGIN {
        t = m; sub(/.*-/, "", t); s = m; sub(/-[^-]*$/, "", s)
        p5 = s5 == "nan" ? "| – | – | – " : sprintf("| %.0f | %.0f | %.2f ", s5, l5, s5 / l5)
        printf "| %s | %s | %.0f | %.0f | %.2f %s| %.1f | %.1f | %.2f | %.0f%% |\n",
            s, t, sp, lp, sp / lp, p5, st, lt, st / lt, 100 * rf }'
done
