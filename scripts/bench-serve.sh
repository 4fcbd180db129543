#!/usr/bin/env bash
# scripts/bench-serve.sh: searchlight's server (run -m serve) and llama.cpp's llama-server on
# the same GGUF under the same load. bash and curl only.
#
#   scripts/bench-serve.sh                         # both models, both servers, 3 rounds
#   ROUNDS=1 SERVERS=llama.cpp scripts/bench-serve.sh
#   MODELS=stories110M-q8_0 STREAMS=4 MAX_TOKENS=64 scripts/bench-serve.sh
#   TABLE_ONLY=1 scripts/bench-serve.sh            # the table of the last run again
#
# Per model and server, each round starts the server, waits for GET /health, then measures:
#   1. STREAMS concurrent streamed chat completions, sent together (a short prompt, temperature 0,
#      max_tokens MAX_TOKENS, ignore_eos): per stream the time to the first content token and
#      the completion tokens; aggregate tok/s = all completion tokens / wall time of the batch
#   2. one stream alone: its tok/s (completion tokens / its wall time), and agg/single
#   3. the TTFT of a ~500-token prompt sent while STREAMS-1 other streams decode
# Servers alternate which goes first from round to round; the table shows medians. Raw
# figures: $WORK/serve-results.tsv; server logs: $WORK/serve-*.log.
#   ours:   $RUN <model>.slm -m serve --parallel STREAMS -T THREADS -c CTX --kv KV --port P
#   theirs: $LLAMA_SERVER -m <model>.gguf -np STREAMS -c STREAMS*CTX -t THREADS -ctk KV -ctv KV
#           --port P
# Models (MODELS): SmolLM2-135M-Instruct-q4_1 (../shared/models/gguf, imported with ./export)
# and stories110M-q8_0 (random weights: scripts/bench-llamacpp.sh makes it under $WORK/models).
# llama-server is built next to llama-bench (scripts/bench-llamacpp.sh builds llama.cpp).
# Holds flock $LOCK (default /tmp/sl-bench.lock; LOCK= for none) while it measures.
set -euo pipefail
cd "$(dirname "$0")/.."

WORK=${WORK:-${XDG_CACHE_HOME:-$HOME/.cache}/searchlight-llamacpp}
LCP_VERSION=${LCP_VERSION:-0.3.36}
src=$WORK/llama_cpp_python-$LCP_VERSION/vendor/llama.cpp
LLAMA_SERVER=${LLAMA_SERVER:-$src/build/bin/llama-server}
RUN=${RUN:-./run}
MODELS=${MODELS:-"SmolLM2-135M-Instruct-q4_1 stories110M-q8_0"}
SERVERS=${SERVERS:-"searchlight llama.cpp"}
ROUNDS=${ROUNDS:-3}
STREAMS=${STREAMS:-8}
MAX_TOKENS=${MAX_TOKENS:-128}
THREADS=${THREADS:-2}
CTX=${CTX:-1024}          # each slot's context (ours: -c CTX; llama-server: -c STREAMS*CTX)
KV=${KV:-f16}             # the KV cache type of both (llama-server's default, f16)
PORT=${PORT:-18480}
LOCK=${LOCK-/tmp/sl-bench.lock}
SMOL_GGUF=${SMOL_GGUF:-../shared/models/gguf/SmolLM2-135M-Instruct.Q4_1.gguf}
log() { echo "bench-serve: $*" >&2; }
tmp=$(mktemp -d /tmp/bench-serve-XXXXXX)
pid=
cleanup() { [ -z "$pid" ] || { kill "$pid" 2>/dev/null; wait "$pid" 2>/dev/null || true; }; rm -rf "$tmp"; }
trap cleanup EXIT

# ---- the models: a GGUF for llama-server and its import for ours ----
mkdir -p "$WORK/models"
gguf_of() {
    case $1 in
        SmolLM2-135M-Instruct-q4_1) echo "$SMOL_GGUF" ;;
        *) echo "$WORK/models/$1.gguf" ;;
    esac
}
for m in $MODELS; do
    g=$(gguf_of "$m")
    if [ ! -f "$g" ]; then
        case $m in
            stories110M-*) log "$g is missing: making it with scripts/bench-llamacpp.sh"
                SHAPES=stories110M TYPES=${m#stories110M-} ROUNDS=1 PP512=0 TG=8 bash scripts/bench-llamacpp.sh > /dev/null ;;
            *) log "$g is missing"; exit 2 ;;
        esac
    fi
    if [[ " $SERVERS " == *" searchlight "* ]] && [ ! -f "$WORK/models/$m.slm" ]; then
        [ -x ./export ] || make export > /dev/null
        ./export "$g" "$WORK/models/$m.slm" > /dev/null
    fi
done
if [[ " $SERVERS " == *" llama.cpp "* ]] && [ ! -x "$LLAMA_SERVER" ]; then
    log "building llama-server in $src/build (set LLAMA_SERVER to use another)"
    nice cmake --build "$src/build" -j2 --target llama-server > "$WORK/build-server.log"
fi
[[ " $SERVERS " != *" searchlight "* ]] || [ -x "$RUN" ] || make all > /dev/null

# ---- one server ----
start_server() {  # server model -> sets pid; fails if /health does not answer 200 in 120 s
    local s=$1 m=$2 logf=$WORK/serve-$1-$2.log
    if [ "$s" = searchlight ]; then
        "$RUN" "$WORK/models/$m.slm" -m serve --parallel "$STREAMS" -T "$THREADS" -c "$CTX" \
            --kv "$KV" --port "$PORT" > "$logf" 2>&1 &
    else
        "$LLAMA_SERVER" -m "$(gguf_of "$m")" -np "$STREAMS" -c $((STREAMS * CTX)) -t "$THREADS" \
            -ctk "$KV" -ctv "$KV" --port "$PORT" > "$logf" 2>&1 &
    fi
    pid=$!
    for _ in $(seq 1200); do
        [ "$(curl -s -o /dev/null -w '%{http_code}' "http://127.0.0.1:$PORT/health")" = 200 ] && return 0
        kill -0 "$pid" 2>/dev/null || break
        sleep 0.1
    done
    log "$s did not come up on $m (log: $logf)"; tail -5 "$logf" >&2
    stop_server
    return 1
}
stop_server() { kill "$pid" 2>/dev/null || true; wait "$pid" 2>/dev/null || true; pid=; }

# ---- one stream: curl's SSE read line by line until the first content token (timed with
# $EPOCHREALTIME), then drained by cat: the client must not take the CPU the servers need ----
# stream OUT PROMPT MAX_TOKENS: writes "start first_token end tokens" to OUT (first_token "-"
# if none) and touches OUT.first when the first content token arrives. Tokens: the usage
# chunk's completion_tokens, else the content chunks counted.
stream() {
    local out=$1 body t0 first=- n usage line
    body=$(printf '{"messages":[{"role":"user","content":"%s"}],"stream":true,"stream_options":{"include_usage":true},"temperature":0,"max_tokens":%d,"ignore_eos":true}' "$2" "$3")
    if [ -n "${GO:-}" ]; then while [ ! -e "$GO" ]; do sleep 0.01; done; fi  # all start at once
    t0=$EPOCHREALTIME
    {
        while IFS= read -r line; do
            case $line in
                *'"content":"'[!\"]*|*'"content": "'[!\"]*)
                    first=$EPOCHREALTIME; : > "$out.first"; printf '%s\n' "$line"; break ;;
            esac
        done
        cat
    } < <(curl -sN -H 'Content-Type: application/json' -d "$body" "http://127.0.0.1:$PORT/v1/chat/completions") > "$out.sse"
    local t1=$EPOCHREALTIME
    usage=$(grep -o '"completion_tokens": *[0-9]*' "$out.sse" | tail -n1 | grep -o '[0-9]*$' || true)
    n=$(grep -c '"content": *"[^"]' "$out.sse" || true)
    echo "$t0 $first $t1 ${usage:-$n}" > "$out"
}

results() { local i; for i in $(seq "$STREAMS"); do cat "$tmp/c$i"; done; }  # the STREAMS at once

short_prompt() { echo "Request $RANDOM$RANDOM: tell me a short story about a cat and a dog."; }
long_prompt() {  # ~500 tokens; a new number first, so that no server reuses a cached prefix
    local p="Request $RANDOM$RANDOM: summarise this text." i
    for i in $(seq 40); do p+=" Sentence $i: the quick brown fox jumps over the lazy dog near the river bank."; done
    echo "$p"
}
ms() { awk -v a="$1" -v b="$2" 'BEGIN { printf "%.1f", (b - a) * 1000 }'; }

# measure server model round: appends the round's figures to $res
measure() {
    local s=$1 m=$2 r=$3 i
    start_server "$s" "$m" || return 0
    stream "$tmp/warm" "$(short_prompt)" 8  # a first request, not timed
    # 1. STREAMS at once
    rm -f "$tmp"/c* "$tmp/go"
    for i in $(seq "$STREAMS"); do GO=$tmp/go stream "$tmp/c$i" "$(short_prompt)" "$MAX_TOKENS" & done
    sleep 0.5
    : > "$tmp/go"  # the streams were waiting for it: their requests leave together
    wait $(jobs -p | grep -vx "$pid")
    local agg ttft
    agg=$(results | awk '{ if (NR == 1 || $1 < t0) t0 = $1; if ($3 > t1) t1 = $3; n += $4 }
        END { printf "%.1f", n / (t1 - t0) }')
    ttft=$(results | awk '$2 != "-" { printf "%.1f\n", ($2 - $1) * 1000 }' | median)
    # 2. one alone
    stream "$tmp/single" "$(short_prompt)" "$MAX_TOKENS"
    local single
    single=$(awk '{ printf "%.1f", $4 / ($3 - $1) }' "$tmp/single")
    # 3. a long prompt while STREAMS-1 decode (sent once they all have their first token)
    rm -f "$tmp"/b*
    for i in $(seq $((STREAMS - 1))); do stream "$tmp/b$i" "$(short_prompt)" "$MAX_TOKENS" & done
    for _ in $(seq 600); do [ "$(ls "$tmp"/b*.first 2>/dev/null | wc -l)" -ge $((STREAMS - 1)) ] && break; sleep 0.05; done
    stream "$tmp/long" "$(long_prompt)" 8
    wait $(jobs -p | grep -vx "$pid")
    local long
    long=$(awk '$2 != "-" { printf "%.1f", ($2 - $1) * 1000 } $2 == "-" { print "nan" }' "$tmp/long")
    printf '%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\n' "$r" "$m" "$s" "$agg" "$ttft" "$single" "$long" \
        "$(results | awk '{ n += $4 } END { print n }')" >> "$res"
    log "round $r $m $s: aggregate $agg tok/s, TTFT median $ttft ms, single $single tok/s, long-prompt TTFT $long ms"
    stop_server
}
median() { sort -g | awk '{ v[NR] = $1 } END { if (NR == 0) print "nan"; else print NR % 2 ? v[(NR + 1) / 2] : (v[NR / 2] + v[NR / 2 + 1]) / 2 }'; }

res=$WORK/serve-results.tsv
read -r -a order <<< "$SERVERS"
[ "${TABLE_ONLY:-0}" = 1 ] && ROUNDS=0  # the table of the last run's $res again
[ "$ROUNDS" = 0 ] || printf 'round\tmodel\tserver\tagg_tok_s\tttft_ms\tsingle_tok_s\tlong_ttft_ms\ttokens\n' > "$res"
if [ -n "$LOCK" ] && [ "$ROUNDS" != 0 ]; then exec 9> "$LOCK"; flock 9; fi
for r in $(seq "$ROUNDS"); do
    for m in $MODELS; do
        if [ $((r % 2)) -eq 1 ]; then for s in "${order[@]}"; do measure "$s" "$m" "$r"; done
        else for ((i = ${#order[@]} - 1; i >= 0; i--)); do measure "${order[i]}" "$m" "$r"; done; fi
    done
done

col() { awk -F'\t' -v m="$1" -v s="$2" -v c="$3" 'NR > 1 && $2 == m && $3 == s { print $c }' "$res" | median; }
cpu=$(grep -m1 'model name' /proc/cpuinfo | cut -d: -f2- | sed 's/^ //')
echo "$cpu, $(nproc) CPUs, $THREADS threads; $STREAMS streams of $MAX_TOKENS tokens (ignore_eos, temperature 0); $KV KV caches of $CTX positions per slot;"
echo "medians of $(awk -F'\t' 'NR > 1 && $1 > n { n = $1 } END { print n + 0 }' "$res") rounds; llama-server from llama-cpp-python $LCP_VERSION ($LLAMA_SERVER)"
echo
echo "| model | server | aggregate tok/s ($STREAMS streams) | TTFT median ms | single stream tok/s | aggregate / single | TTFT ~500-token prompt, $((STREAMS - 1)) decoding, ms |"
echo "| --- | --- | ---: | ---: | ---: | ---: | ---: |"
for m in $MODELS; do
    for s in "${order[@]}"; do
        a=$(col "$m" "$s" 4); t=$(col "$m" "$s" 5); one=$(col "$m" "$s" 6); l=$(col "$m" "$s" 7)
        [ "$a" != nan ] || { echo "| $m | $s | (did not run) | | | | |"; continue; }
        awk -v m="$m" -v s="$s" -v a="$a" -v t="$t" -v o="$one" -v l="$l" 'BEGIN {
            printf "| %s | %s | %.1f | %.0f | %.1f | %.2f | %.0f |\n", m, s, a, t, o, (o > 0 ? a / o : 0), l }'
    done
done
