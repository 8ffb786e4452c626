#!/bin/bash
# A full disk, by hand: the daemon's data directory on a 20 MB tmpfs, filled with
# 30 KB documents until writes are refused, then space is freed and the daemon stopped.
# Prints each refused write, /health, store_problem, the storage metrics, the writes
# after freeing space, and how long SIGTERM took. Needs root (it mounts a tmpfs).
# Loopback only, mDNS off.
#
#   sudo contrib/repro/disk-full.sh                          # with today's guard
#   sudo MIN_FREE=0 contrib/repro/disk-full.sh               # without it: sled meets ENOSPC
#   PEERDOC=target/release/peerdoc sudo -E contrib/repro/disk-full.sh
set -u
B=${PEERDOC:-target/debug/peerdoc}
MIN_FREE=${MIN_FREE:-2097152}
M=$(mktemp -d /tmp/peerdoc-full.XXXXXX)
mount -t tmpfs -o size=20m tmpfs "$M" || exit 1
trap 'kill -9 $PID 2>/dev/null; umount -l "$M"; rmdir "$M"' EXIT
dd if=/dev/zero of="$M/filler" bs=1M count=4 status=none
D=$M/d
LOG=$M.log
"$B" --data-dir "$D" run --set node.min_free_bytes="$MIN_FREE" --no-mdns \
  --api-listen 127.0.0.1:0 --listen /ip4/127.0.0.1/tcp/0 >"$LOG" 2>&1 &
PID=$!
for _ in $(seq 100); do [ -f "$D/api.addr" ] && [ -f "$D/api.token" ] && break; sleep 0.1; done
URL=$(cat "$D/api.addr")
TOK=$(cat "$D/api.token")
# The token goes to curl on stdin, never on a command line.
api() { printf 'header = "Authorization: Bearer %s"\n' "$TOK" | curl -s -m 10 -K - "$@"; }
body() { python3 -c "import json,random; print(json.dumps({'content': {'notes': ''.join(random.choice('abcdef0123456789') for _ in range(30000))}}))"; }
post() { body >"$M.body"; api -o "$M.resp" -w "%{http_code}" -H 'Content-Type: application/json' --data-binary @"$M.body" "$URL/v1/docs"; }

fails=0
for i in $(seq 800); do
  c=$(post)
  if [ "$c" != "201" ]; then
    echo "write $i -> $c $(head -c 300 "$M.resp")"
    fails=$((fails + 1))
    [ $fails -ge 3 ] && break
  fi
done
df -h "$M" | tail -1
echo "health: $(api "$URL/health")"
echo "store_problem: $(api "$URL/v1/status?docs=false" | python3 -c 'import json,sys; print(json.load(sys.stdin).get("store_problem"))')"
echo "metrics: $(api "$URL/metrics" | grep storage_ | grep -v '#' | tr '\n' ' ')"
echo "list: $(api -o /dev/null -w '%{http_code}' "$URL/v1/docs")"
rm -f "$M/filler"
echo "freed the filler"
for _ in 1 2 3; do echo "after freeing: $(post) $(head -c 200 "$M.resp")"; done
echo "health: $(api "$URL/health")"
start=$(date +%s.%N)
kill -TERM $PID
timeout 30 tail --pid=$PID -f /dev/null
end=$(date +%s.%N)
echo "SIGTERM: $(python3 -c "print(round($end - $start, 2))") s"
wait $PID
echo "exit code $?"
grep -iE "error|warn|panic" "$LOG" | sed 's/\x1b\[[0-9;]*m//g' | cut -c1-250 | tail -15
rm -f "$LOG" "$M.resp" "$M.body"
