#!/bin/sh
# Runs every spec under Lua 5.4 and under LuaJIT, then prints the one line
# CI reads: "N passed, M failed". Fails when anything failed or nothing ran.
set -u
cd "$(dirname "$0")/.."
out=$(mktemp -d /tmp/kfsmtp-check.XXXXXX)
status=0
# ONLY=lua5.4 runs one interpreter (the sanitizer build is Lua 5.4's).
for lua in ${ONLY:-lua5.4 luajit}; do
  echo "== specs under $lua"
  exclude=""
  # valgrind runs the Lua 5.4 build, not LuaJIT's; under a sanitizer build
  # neither valgrind nor resident-memory figures (ASan keeps freed memory in
  # quarantine) mean anything. The browser tests drive nginx, whose LuaJIT
  # and module are the same whatever busted runs under: once is enough. The
  # real mail servers (Postfix, Exim) answer the same whichever interpreter
  # asks: once too, and under the sanitizers. make demo-cluster's spec runs
  # the script as make does (lua5.4, nginx, PostgreSQL) whatever busted
  # runs under: once, in the plain Lua 5.4 pass.
  [ "$lua" = luajit ] && exclude="--exclude-tags=memcheck,browser,realmail,democluster"
  [ -n "${KFSMTP_BUILD:-}" ] && exclude="--exclude-tags=memcheck,rss,browser,democluster"
  busted --lua="$lua" -o TAP $exclude ${SPECS:-spec} > "$out/$lua.tap" 2>&1 || status=1
  grep -v '^ok ' "$out/$lua.tap" || true
  printf '%s: %s passed, %s failed\n' "$lua" \
    "$(grep -c '^ok ' "$out/$lua.tap")" "$(grep -c '^not ok ' "$out/$lua.tap")"
done
passed=$(cat "$out"/*.tap | grep -c '^ok ')
failed=$(cat "$out"/*.tap | grep -c '^not ok ')
skipped=$(cat "$out"/*.tap | grep -c '^ok .*# SKIP')
rm -rf "$out"
[ "$passed" -gt 0 ] || status=1
[ "$failed" -eq 0 ] || status=1
[ "$skipped" -eq 0 ] || { echo "skipped specs are not allowed: $skipped"; status=1; }
echo "$passed passed, $failed failed"
exit $status
