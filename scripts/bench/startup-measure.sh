#!/bin/bash
# usage: startup-measure.sh <repo> <datadir> <port>
# Starts the server, polls /fhir/metadata from process start; prints first-answer time, start-up steps, idle RSS.
repo=$1; data=$2; port=$3
cd "$repo"
t0=$(date +%s.%N)
DATABASE_URL="$data" PORT=$port HOST=127.0.0.1 LOG_LEVEL=info node --import tsx src/main.ts > ${TMPDIR:-/tmp}/dossier-startup-$port.log 2>&1 &
pid=$!
until curl -sf -o /dev/null "http://127.0.0.1:$port/fhir/metadata"; do sleep 0.05; done
t1=$(date +%s.%N)
echo "first answer: $(echo "$t1 - $t0" | bc) s"
sleep 25
grep -o '"step":"[^"]*","ms":[0-9]*' ${TMPDIR:-/tmp}/dossier-startup-$port.log
echo "idle RSS: $(( $(awk '/VmRSS/{print $2}' /proc/$pid/status) / 1024 )) MB; HWM: $(( $(awk '/VmHWM/{print $2}' /proc/$pid/status) / 1024 )) MB"
kill $pid; wait $pid 2>/dev/null
