#!/usr/bin/env bash
# tests/tsan_server.sh RUN MODEL: the server's threads under ThreadSanitizer (make test-tsan).
# RUN is a -fsanitize=thread build of run. It serves MODEL with 4 slots and a queue of 2, and
# takes at once: 8 requests (streamed and not, one recording attention), a client that
# disconnects mid-stream, and health checks; then SIGTERM. Any TSan report, a crash or an
# unclean exit fails.
set -uo pipefail
run=$1 model=$2
log=$(mktemp /tmp/tsan-server-XXXXXX.log)
port=$((20000 + RANDOM % 20000))
TSAN_OPTIONS="halt_on_error=1 exitcode=66" "$run" "$model" -m serve --port "$port" -T 2 \
    --parallel 4 --queue 2 2> "$log" &
pid=$!
for _ in $(seq 100); do curl -s -o /dev/null "http://127.0.0.1:$port/health" && break; sleep 0.1; done
clients=()
for i in 1 2 3 4 5 6 7 8; do
    stream=$([ $((i % 2)) = 0 ] && echo true || echo false)
    attn=$([ "$i" = 3 ] && echo true || echo false)
    curl -s -o /dev/null -d "{\"prompt\":\"Once $i\",\"max_tokens\":40,\"stream\":$stream,\"attention\":$attn}" \
        "http://127.0.0.1:$port/v1/completions" &
    clients+=($!)
done
curl -s -o /dev/null --max-time 0.3 -N -d '{"prompt":"x","max_tokens":300,"stream":true}' \
    "http://127.0.0.1:$port/v1/completions"
curl -s -o /dev/null "http://127.0.0.1:$port/health"
curl -s -o /dev/null -d '{"messages":[{"role":"user","content":"hi"}],"max_tokens":20}' \
    "http://127.0.0.1:$port/v1/chat/completions"
wait "${clients[@]}"
kill -TERM "$pid"
wait "$pid"
rc=$?
served=$(grep -c ' 200 ' "$log")
if [ "$rc" != 0 ] || grep -q "WARNING: ThreadSanitizer" "$log" || [ "$served" -lt 4 ]; then
    cat "$log"
    echo "tsan_server: exit status $rc, $served requests served" >&2
    exit 1
fi
echo "tsan_server: $served requests served, no ThreadSanitizer report"
rm -f "$log"
