#!/usr/bin/env bash
# A 16 MiB string created through the API, by hand: prints the daemon's RSS before,
# right after and 10 s after the create, the slowest of 40 small edits made to another
# document meanwhile, and the RSS once glibc is asked (through gdb, if installed) to
# hand back every freed page, which shows how much of the RSS was in use.
# Usage: BIN=target/release/peerdoc bash contrib/repro/big-create-memory.sh
# Loopback only, mDNS off, a throwaway data directory.
set -eu
P=${BIN:-target/release/peerdoc}
D=$(mktemp -d /tmp/bigc.XXXX)
export HOME=$D/home XDG_CONFIG_HOME=$D/home/config
"$P" run --data-dir "$D/data" --no-mdns --listen /ip4/127.0.0.1/tcp/0 --api-listen 127.0.0.1:0 > "$D/out" 2> "$D/log" &
for _ in $(seq 50); do [ -s "$D/data/api.addr" ] && break; sleep 0.2; done
URL=$(cat "$D/data/api.addr"); TOK=$(cat "$D/data/api.token"); PID=$(cat "$D/data/daemon.lock")
rss() { grep VmRSS "/proc/$PID/status" | awk '{print $2/1024 " MB"}'; }
small=$(curl -s -H "Authorization: Bearer $TOK" -H 'content-type: application/json' -d '{"content":{"n":0}}' "$URL/v1/docs" | python3 -c 'import sys,json;print(json.load(sys.stdin)["id"])')
echo "rss before: $(rss)"
python3 -c 'import json;print(json.dumps({"content":{"notes":"x"*(16*1024*1024)}}))' > "$D/big.json"
( start=$(date +%s.%N); curl -s -o /dev/null -w "big create: %{http_code} " -H "Authorization: Bearer $TOK" -H 'content-type: application/json' --data-binary @"$D/big.json" "$URL/v1/docs"; echo "$(echo "$(date +%s.%N) - $start" | bc) s" ) &
sleep 0.3
worst=0
for i in $(seq 40); do
  t=$(curl -s -o /dev/null -w "%{time_total}" -X PATCH -H "Authorization: Bearer $TOK" -H 'content-type: application/json' -d "{\"ops\":[{\"op\":\"set\",\"path\":\"/n\",\"value\":$i}]}" "$URL/v1/docs/$small")
  worst=$(python3 -c "print(max($worst,$t))")
done
echo "worst small edit during the create: ${worst}s"
wait %2 2>/dev/null || true
sleep 1; echo "rss after create: $(rss)"; sleep 10; echo "rss 10 s later: $(rss)"
if command -v gdb > /dev/null; then
  gdb -p "$PID" -batch -ex "call (int)malloc_trim(0)" > /dev/null 2>&1 || true
  echo "rss after a malloc_trim from gdb: $(rss)"
fi
kill "$PID"; sleep 1; rm -rf "$D"
