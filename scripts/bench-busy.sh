#!/usr/bin/env bash
# scripts/bench-busy.sh: decoding speed with 1 and 2 threads, on a quiet host and next to one
# busy neighbour process (issue 23: threads that share their cores with another program).
#
#   scripts/bench-busy.sh                          # the 15M q8_0 model and models/kjv.slm
#   ROUNDS=9 MODELS="models/kjv.slm" scripts/bench-busy.sh
#   RUN=/tmp/old/run scripts/bench-busy.sh         # another build of run
#
# 1. Writes a random stories15M-shaped q8_0 model with ./export into build/bench/ (once).
# 2. ROUNDS rounds (default 5): in each, for every model, `run MODEL --bench -T 1` and `-T 2`
#    (--pp 32 --tg 128: the tg128 figure is used) quietly, then the same while a neighbour
#    spins on one CPU (NEIGHBOUR, default `sh -c 'while :; do :; done'`: one CPU-bound
#    process, started here and killed on exit). T=1 and T=2 alternate which goes first.
# 3. Where llama.cpp's llama-bench and the same 15M q8_0 model as GGUF exist (made by
#    scripts/bench-llamacpp.sh in $WORK: LLAMA_BENCH, GGUF to override), llama-bench -t 1 and
#    -t 2 (-p 0 -n 128) run in the same rounds and under the same load, as extra columns of
#    the 15M model; otherwise a note says they were skipped.
# 4. Prints a markdown table of medians: rows model x {quiet, busy}, columns T=1 and T=2 tok/s
#    and their ratio. Raw figures go to build/bench/busy.tsv.
# Needs only bash, awk and the binaries (make all). The host should be otherwise idle.
set -euo pipefail
cd "$(dirname "$0")/.."

ROUNDS=${ROUNDS:-5}
RUN=${RUN:-./run}
M15=build/bench/stories15M-q8_0.slm
MODELS=${MODELS:-"$M15 models/kjv.slm"}
NEIGHBOUR=${NEIGHBOUR:-"while :; do :; done"}
WORK=${WORK:-${XDG_CACHE_HOME:-$HOME/.cache}/searchlight-llamacpp}
LLAMA_BENCH=${LLAMA_BENCH:-$WORK/llama_cpp_python-0.3.36/vendor/llama.cpp/build/bin/llama-bench}
GGUF=${GGUF:-$WORK/models/stories15M-q8_0.gguf}
log() { echo "bench-busy: $*" >&2; }

# 1. the binaries and the 15M model
[ -x "$RUN" ] && [ -x ./export ] || make all > /dev/null
mkdir -p build/bench
[ -f "$M15" ] || ./export --dtype q8_0 --random stories15M "$M15" > /dev/null
llama=1
if [ ! -x "$LLAMA_BENCH" ] || [ ! -f "$GGUF" ]; then
    llama=0
    log "llama.cpp skipped: no $LLAMA_BENCH or no $GGUF (scripts/bench-llamacpp.sh makes both)"
fi

# the neighbour: one CPU-bound process, never left behind
hog=
start_hog() { sh -c "$NEIGHBOUR" & hog=$!; sleep 0.3; }
stop_hog() {
    [ -n "$hog" ] || return 0
    kill "$hog" 2> /dev/null || true
    wait "$hog" 2> /dev/null || true
    hog=
}
trap stop_hog EXIT
trap 'stop_hog; exit 130' INT TERM

ours() {  # tok/s of tg128
    "$RUN" "$1" --bench -T "$2" --pp 32 --tg 128 --json | tr -d '\n' |
        sed -nE 's/.*"tg_tok_s": ([0-9.]+).*/\1/p'
}
theirs() {
    "$LLAMA_BENCH" -m "$GGUF" -p 0 -n 128 -t "$1" -r 3 -o jsonl 2> /dev/null |
        sed -nE 's/.*"avg_ts": ([0-9.e+]+).*/\1/p' | tail -n1
}

# 2., 3. interleaved rounds: program, model, load, threads, tok/s
res=build/bench/busy.tsv
printf 'round\tprogram\tmodel\tload\tthreads\ttok_s\n' > "$res"
record() { printf '%s\t%s\t%s\t%s\t%s\t%s\n' "$r" "$@" >> "$res"; }  # program model load T tok/s
measure() {  # load
    local m t order="1 2"
    [ $((r % 2)) -eq 0 ] && order="2 1"
    for m in $MODELS; do
        for t in $order; do record ours "$m" "$1" "$t" "$(ours "$m" "$t")"; done
    done
    if [ $llama = 1 ]; then
        for t in $order; do record llama.cpp "$M15" "$1" "$t" "$(theirs "$t")"; done
    fi
}
for r in $(seq "$ROUNDS"); do
    log "round $r/$ROUNDS: quiet"
    measure quiet
    log "round $r/$ROUNDS: busy"
    start_hog
    measure busy
    stop_hog
done

# 4. medians
median() {
    sort -g | awk '{ v[NR] = $1 } END { if (NR) print NR % 2 ? v[(NR + 1) / 2] : (v[NR / 2] + v[NR / 2 + 1]) / 2 }'
}
med() {  # program model load T
    awk -F'\t' -v p="$1" -v m="$2" -v l="$3" -v t="$4" '$2 == p && $3 == m && $4 == l && $5 == t { print $6 }' "$res" |
        median
}
cpu=$(grep -m1 'model name' /proc/cpuinfo 2> /dev/null | cut -d: -f2- | sed 's/^ //' || true)
echo "${cpu:-unknown CPU}, $(getconf _NPROCESSORS_ONLN) CPUs; $RUN; tg128 tok/s, medians of $ROUNDS"
echo "interleaved rounds; busy: one neighbour process running \`$NEIGHBOUR\`"
echo
if [ $llama = 1 ]; then
    echo "| model | load | T=1 | T=2 | T=2 / T=1 | llama.cpp t=1 | t=2 | t=2 / t=1 |"
    echo "| --- | --- | ---: | ---: | ---: | ---: | ---: | ---: |"
else
    echo "| model | load | T=1 | T=2 | T=2 / T=1 |"
    echo "| --- | --- | ---: | ---: | ---: |"
fi
for m in $MODELS; do
    for l in quiet busy; do
        a=$(med ours "$m" $l 1); b=$(med ours "$m" $l 2)
        row=$(awk -v m="$(basename "$m" .slm)" -v l=$l -v a="$a" -v b="$b" \
            'BEGIN { printf "| %s | %s | %.1f | %.1f | %.2f |", m, l, a, b, (a > 0 ? b / a : 0) }')
        if [ $llama = 1 ]; then
            if [ "$m" = "$M15" ]; then
                a=$(med llama.cpp "$m" $l 1); b=$(med llama.cpp "$m" $l 2)
                row+=$(awk -v a="$a" -v b="$b" \
                    'BEGIN { printf " %.1f | %.1f | %.2f |", a, b, (a > 0 ? b / a : 0) }')
            else
                row+=" – | – | – |"
            fi
        fi
        echo "$row"
    done
done
if [ $llama = 0 ]; then echo; echo "llama.cpp: skipped (no $LLAMA_BENCH or no $GGUF)"; fi
