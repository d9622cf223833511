#!/bin/sh
# `make serve`: the HTTP API on 127.0.0.1:$PORT (default 8080) with nginx +
# lua-nginx-module, the working tree's store (./kfsmtp-store.json, shared
# with bin/kfsmtp), a first administrator, and a loopback capture SMTP server
# to try POST /SMTP/Test against, and the browser page at /KeyfactorAPI/Portal/.
# Runs until Ctrl-C. KFSMTP_ADMIN_PASSWORD chooses the administrator's
# password; KFSMTP_SERVE_DIR (default ./serve-run) and KFSMTP_STORE move
# the run folder and the store. Secret provider 1 (type file) reads files
# from KFSMTP_SECRETS_DIR (default serve-run/secrets, made mode 0700), so a
# version 2 client can store {"Provider": 1, "Parameters": {"Path": "..."}}
# instead of a password. KFSMTP_SECRET_ENV (variable names, separated by
# spaces) adds provider 2 (type env) for those variables, which nginx then
# keeps for its workers. KFSMTP_KEY_FILE (a file `bin/kfsmtp keygen FILE`
# made) seals the stored password and client secret with that key: it
# goes to serve{} as key_file, since nginx's workers see no environment.
set -eu
# The password goes to `bin/kfsmtp user-add` alone: out of the environment
# before anything starts, so nginx and the capture server never hold it.
admin_password=${KFSMTP_ADMIN_PASSWORD:-}
unset KFSMTP_ADMIN_PASSWORD KFSMTP_USER_PASSWORD
started_in=$PWD
cd "$(dirname "$0")/.."
PORT=${PORT:-8080}
run=${KFSMTP_SERVE_DIR:-$PWD/serve-run}
store=${KFSMTP_STORE:-$PWD/kfsmtp-store.json}
if [ -f "$run/logs/nginx.pid" ]; then
  nginx -p "$run" -c "$run/nginx.conf" -s stop 2>/dev/null || true
  sleep 0.3
fi
# Only a folder this script made (or an empty one) is wiped.
if [ -d "$run" ] && [ ! -f "$run/nginx.conf" ] && [ -n "$(ls -A "$run")" ]; then
  echo "$run is not a folder of make serve's: not removing it" >&2; exit 1
fi
rm -rf "$run"
mkdir -p "$run/smtp"
secrets=${KFSMTP_SECRETS_DIR:-$run/secrets}
mkdir -p "$secrets"
chmod 0700 "$secrets"

# The capture server offers AUTH (not required) as svc with a password
# made here, which also waits in the file provider as "relay": a version 2
# client can test with {"Provider": 1, "Parameters": {"Path": "relay"}}.
relay_password=$(openssl rand -hex 12)
(umask 077
 printf 'svc:%s' "$relay_password" > "$run/smtp-auth"
 [ -e "$secrets/relay" ] || printf '%s\n' "$relay_password" > "$secrets/relay")
/usr/bin/python3 spec/support/smtpd.py --dir "$run/smtp" --mode plain \
  --auth-file "$run/smtp-auth" --auth-plaintext > "$run/smtp.log" 2>&1 &
smtp_pid=$!
cleanup() {
  nginx -p "$run" -c "$run/nginx.conf" -s stop 2>/dev/null || true
  kill "$smtp_pid" 2>/dev/null || true
}
trap cleanup EXIT
trap 'exit 0' INT TERM
i=0
while [ ! -f "$run/smtp/port" ]; do
  i=$((i + 1)); [ $i -lt 250 ] || { cat "$run/smtp.log"; exit 1; }
  sleep 0.02
done
smtp_port=$(cat "$run/smtp/port")

generated=""
if [ -z "$admin_password" ]; then
  admin_password=$(openssl rand -base64 18 | tr -d '/+=' | cut -c1-20)
  generated=1
fi
KFSMTP_USER_PASSWORD=$admin_password bin/kfsmtp user-add admin \
  --users-file "$run/users.json" --permissions all > /dev/null

providers="[1] = { type = \"file\", dir = \"$secrets\" },"
env_names=""
if [ -n "${KFSMTP_SECRET_ENV:-}" ]; then
  set -f
  for name in $KFSMTP_SECRET_ENV; do env_names="$env_names\"$name\", "; done
  set +f
  providers="$providers [2] = { type = \"env\", names = { $env_names} },"
fi
key_option=""
key_file=${KFSMTP_KEY_FILE:-}
if [ -n "$key_file" ]; then
  # nginx's workers run elsewhere: the path they get is absolute. It goes
  # into a Lua string in nginx.conf, so it may not hold what ends one.
  case $key_file in /*) ;; *) key_file=$started_in/$key_file ;; esac
  case $key_file in
    *'"'* | *'\'* | *'
'*) echo "KFSMTP_KEY_FILE: a path with a quote, backslash or line break cannot go into nginx.conf" >&2; exit 1 ;;
  esac
  [ -f "$key_file" ] || { echo "KFSMTP_KEY_FILE: $key_file is not a file (make one with bin/kfsmtp keygen FILE)" >&2; exit 1; }
  key_option="key_file = \"$key_file\","
fi
KFSMTP_NGINX_ENV=${KFSMTP_SECRET_ENV:-} sh scripts/nginx-conf.sh "$run" "$PORT" "$store" "$run/users.json" 2 \
  "secret_providers = { $providers }, $key_option"
nginx -p "$run" -c "$run/nginx.conf"

base="http://127.0.0.1:$PORT/KeyfactorAPI"
# A database URI may carry its password: never printed.
shown_store=$(printf '%s' "$store" | sed -E 's#^([A-Za-z]+://[^:/@?]*):[^@/?]*@#\1@#; s#([?&][Pp][Aa][Ss][Ss][Ww][Oo][Rr][Dd]=)[^&]*#\1***#')
cat <<MSG
kfsmtp API on $base (nginx, 2 workers; logs in serve-run/logs/)
store: $shown_store   users: serve-run/users.json   capture SMTP server: 127.0.0.1:$smtp_port
secret provider 1 (file): $secrets${KFSMTP_SECRET_ENV:+   secret provider 2 (env): $KFSMTP_SECRET_ENV}
MSG
if [ -n "$key_file" ]; then
  echo "secrets at rest: a password or client secret entered is stored sealed with the key file $key_file"
else
  cat <<MSG
secrets at rest: NOT encrypted. A password or client secret entered is stored as typed in
  $store. To seal them: bin/kfsmtp keygen FILE, then KFSMTP_KEY_FILE=FILE make serve
  (and bin/kfsmtp rekey --new-key-file FILE --store $store seals what is stored now).
MSG
fi
if [ -n "$generated" ]; then
  echo "administrator: admin / $admin_password   (generated, shown once; set KFSMTP_ADMIN_PASSWORD to choose it)"
else
  echo "administrator: admin / (the password in KFSMTP_ADMIN_PASSWORD)"
fi
cat <<MSG

In a browser: http://127.0.0.1:$PORT/KeyfactorAPI/Portal/
  sign in as admin with the password above; to try a test email, set Host 127.0.0.1,
  Port $smtp_port, Use SSL/TLS off, a sender account, then "Send test email".

Or with curl (paste into another shell):

  export KF_AUTH='admin:$( [ -n "$generated" ] && echo "$admin_password" || echo '<password>')'
  curl -s -u "\$KF_AUTH" -H 'X-Keyfactor-Requested-With: APIClient' $base/SMTP
  curl -s -u "\$KF_AUTH" -H 'X-Keyfactor-Requested-With: APIClient' -H 'Content-Type: application/json' \\
       -X PUT $base/SMTP \\
       -d '{"Host":"127.0.0.1","Port":$smtp_port,"UseSSL":false,"SenderAccount":"keyfactor@example.com","SenderName":"Keyfactor Command"}'
  curl -s -u "\$KF_AUTH" -H 'X-Keyfactor-Requested-With: APIClient' -H 'Content-Type: application/json' \\
       -X POST $base/SMTP/Test \\
       -d '{"Host":"127.0.0.1","Port":$smtp_port,"UseSSL":false,"SenderAccount":"keyfactor@example.com","TestRecipient":"ops@example.com"}'

Version 2 (Keyfactor's v2 models), the capture server's password (user svc)
from the file "relay" of secret provider 1, never typed:

  curl -s -u "\$KF_AUTH" -H 'X-Keyfactor-Requested-With: APIClient' -H 'x-keyfactor-api-version: 2' \\
       -H 'Content-Type: application/json' -X PUT $base/SMTP \\
       -d '{"Host":"127.0.0.1","Port":$smtp_port,"UseSSL":false,"RelayAuthenticationType":2,"RelayUsername":{"SecretValue":"svc"},"RelayPassword":{"Provider":1,"Parameters":{"Path":"relay"}},"SenderAccount":"keyfactor@example.com","SenderName":"Keyfactor Command"}'
  curl -s -u "\$KF_AUTH" -H 'X-Keyfactor-Requested-With: APIClient' -H 'x-keyfactor-api-version: 2' \\
       -H 'Content-Type: application/json' -X POST $base/SMTP/Test -w '%{http_code}\\n' \\
       -d '{"Host":"127.0.0.1","Port":$smtp_port,"UseSSL":false,"RelayAuthenticationType":2,"RelayUsername":{"SecretValue":"svc"},"SenderAccount":"keyfactor@example.com","SenderName":"Keyfactor Command","TestRecipient":"ops@example.com"}'

Captured test messages land in serve-run/smtp/. Add callers with:
  KFSMTP_USER_PASSWORD=... bin/kfsmtp user-add 'CORP\\alice' --users-file serve-run/users.json --permissions read

Press Ctrl-C to stop.
MSG
while [ -f "$run/logs/nginx.pid" ] && kill -0 "$(cat "$run/logs/nginx.pid")" 2>/dev/null; do
  sleep 1
done
