#!/bin/bash
# usage: scripts/bench/startup-measure.sh <repo> <data-dir> <port>
# Starts the server on <data-dir> (a PGlite folder; new or existing), polls GET /fhir/metadata from process start,
# then prints the time to the first answer, the logged start-up steps and, 25 s later, idle and peak RSS.
set -u
repo=$1; data=$2; port=$3
log="${TMPDIR:-/tmp}/dossier-startup-$port.log"
cd "$repo" || exit 1
t0=$(date +%s%N)
DATABASE_URL="$data" PORT="$port" HOST=127.0.0.1 LOG_LEVEL=info node --import tsx src/main.ts > "$log" 2>&1 &
pid=$!
until curl -sf -o /dev/null "http://127.0.0.1:$port/fhir/metadata"; do
  # A server that died never answers: say so instead of polling forever.
  kill -0 "$pid" 2>/dev/null || { echo "the server exited before answering; its log: $log"; exit 1; }
  sleep 0.05
done
t1=$(date +%s%N)
echo "first answer: $(( (t1 - t0) / 1000000 )) ms"
sleep 25
grep -o '"step":"[^"]*","ms":[0-9]*' "$log"
echo "idle RSS: $(( $(awk '/VmRSS/{print $2}' /proc/$pid/status) / 1024 )) MB; peak: $(( $(awk '/VmHWM/{print $2}' /proc/$pid/status) / 1024 )) MB"
kill "$pid"; wait "$pid" 2>/dev/null
