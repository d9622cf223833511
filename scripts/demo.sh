#!/bin/sh
# The main job on an embedded default: a loopback SMTP capture server, a
# store file in the working tree (./kfsmtp-store.json), a profile stored
# with the CLI, a real test delivery, and what the server received.
set -eu
cd "$(dirname "$0")/.."
run=demo-run
rm -rf "$run"
mkdir -p "$run"
/usr/bin/python3 spec/support/smtpd.py --dir "$run" --mode plain > "$run/server.log" 2>&1 &
server=$!
trap 'kill $server 2>/dev/null || true' EXIT INT TERM
i=0
while [ ! -f "$run/port" ]; do
  i=$((i + 1))
  [ $i -lt 250 ] || { echo "the capture server did not start:"; cat "$run/server.log"; exit 1; }
  sleep 0.02
done
port=$(cat "$run/port")
export KFSMTP_STORE="$PWD/kfsmtp-store.json"

echo "== capture SMTP server listening on 127.0.0.1:$port (aiosmtpd)"
echo "== kfsmtp update: store the profile in $KFSMTP_STORE"
bin/kfsmtp update --replace --host 127.0.0.1 --port "$port" --no-use-ssl \
  --sender-account kfsmtp-demo@example.com --sender-name "kfsmtp demo"
echo
echo "== kfsmtp get"
bin/kfsmtp get
echo
echo "== kfsmtp test --recipient operator@example.com --transcript"
bin/kfsmtp test --recipient operator@example.com --transcript
echo
echo "== the message the server captured ($run/msg-1.eml)"
i=0
while [ ! -f "$run/msg-1.json" ] && [ $i -lt 100 ]; do i=$((i + 1)); sleep 0.02; done
cat "$run/msg-1.json"; echo
tr -d '\r' < "$run/msg-1.eml"
echo
echo "== done: the capture server is stopped; try 'bin/kfsmtp --help'"
