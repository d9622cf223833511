#!/bin/sh
# Writes DIR/nginx.conf for serving kfsmtp's API from this checkout with
# Debian's nginx and lua-nginx-module. Used by `make serve` and the specs.
# usage: nginx-conf.sh DIR PORT STORE USERS_FILE [WORKERS] [EXTRA_LUA_OPTIONS]
#   EXTRA_LUA_OPTIONS is pasted into the serve{} table, e.g. 'ca_file = "/x/ca.pem",'
#   or 'key_file = "/etc/kfsmtp/smtp.key",' (the key file that seals stored
#   secrets: nginx's workers see no KFSMTP_KEY_FILE)
#   KFSMTP_NGINX_ENV (in the environment) names variables for nginx to keep,
#   separated by spaces, e.g. KFSMTP_NGINX_ENV="SMTP_PASSWORD".
set -eu
dir=$1 port=$2 store=$3 users=$4 workers=${5:-2} extra=${6:-}
root=$(cd "$(dirname "$0")/.." && pwd)
mkdir -p "$dir/logs" "$dir/tmp"
# nginx hands its workers none of the variables it was started with, but
# those an env directive names: a secret provider of type env reads them
# there.
env_lines=""
set -f # the names are split on spaces, never expanded as file patterns
for name in ${KFSMTP_NGINX_ENV:-}; do
  case $name in
    [!A-Za-z_]* | *[!A-Za-z0-9_]*) echo "nginx-conf.sh: KFSMTP_NGINX_ENV: $name is not a variable name" >&2; exit 2 ;;
  esac
  env_lines="${env_lines}env $name;
"
done
set +f
# As root the workers would otherwise drop to nobody, who cannot reach
# these private folders: this is a local server, so they stay root.
user_line=""
[ "$(id -u)" -eq 0 ] && user_line="user root root;"
cat > "$dir/nginx.conf" <<CONF
load_module /usr/lib/nginx/modules/ndk_http_module.so;
load_module /usr/lib/nginx/modules/ngx_http_lua_module.so;
$user_line
${env_lines}worker_processes $workers;
pid $dir/logs/nginx.pid;
error_log $dir/logs/error.log warn;
daemon on;
# SMTP tests and store writes run here, off the event loop.
thread_pool kfsmtp threads=16 max_queue=256;
# Password checks (PBKDF2, CPU-bound) have their own: a flood of guesses
# cannot starve the pool above. kfsmtp lets at most 32 per worker wait.
thread_pool kfsmtp_auth threads=2 max_queue=64;

events { worker_connections 512; }

http {
  access_log $dir/logs/access.log;
  client_body_temp_path $dir/tmp/body;
  proxy_temp_path $dir/tmp/proxy;
  fastcgi_temp_path $dir/tmp/fastcgi;
  uwsgi_temp_path $dir/tmp/uwsgi;
  scgi_temp_path $dir/tmp/scgi;
  lua_package_path "$root/lua/?.lua;;";
  lua_package_cpath "$root/build/luajit/?.so;;";
  init_by_lua_block { require "kfsmtp.openresty" }
  # Passwords checked (as HMACs), shared by the workers.
  lua_shared_dict kfsmtp_auth 1m;

  server {
    listen 127.0.0.1:$port;
    # kfsmtp answers bodies over 64 KiB itself (413 with a JSON body);
    # nginx's own limit sits above it, and its page is replaced too.
    client_max_body_size 1m;
    client_body_buffer_size 128k;
    error_page 413 = @kfsmtp_too_large;

    # Another case of the page's path is sent to the page (which finds the
    # API from its own address); regex locations are tried in this order.
    location ~* ^/keyfactorapi/portal(/|\$) { return 301 /KeyfactorAPI/Portal/; }
    # The API's paths match in any letter case, the base's too: a regex
    # location (~*), since prefix locations are case-sensitive.
    location ~* ^/keyfactorapi/ {
      content_by_lua_block {
        require("kfsmtp.openresty").serve {
          store = "$store",
          users_file = "$users",
          thread_pool = "kfsmtp",
          auth_thread_pool = "kfsmtp_auth",
          auth_shared_dict = "kfsmtp_auth",
          $extra
        }
      }
    }
    location = / { return 302 /KeyfactorAPI/Portal/; }
    # The browser page: static files, a client of the API above. ^~ keeps
    # the regex locations off its exact-case path.
    location ^~ /KeyfactorAPI/Portal/ {
      alias $root/www/;
      index index.html;
      include /etc/nginx/mime.types;
      charset utf-8;
      charset_types text/css application/javascript;
      add_header Content-Security-Policy "default-src 'self'; frame-ancestors 'none'; form-action 'self'; base-uri 'none'" always;
      add_header X-Content-Type-Options nosniff always;
      add_header Referrer-Policy no-referrer always;
      add_header Cache-Control no-cache always;
    }
    location @kfsmtp_too_large {
      content_by_lua_block { require("kfsmtp.openresty").too_large() }
    }
    # The same JSON as GET /SMTP of an empty store, for benchmarks.
    location = /static-smtp {
      default_type "application/json; charset=utf-8";
      return 200 '{"Host":"","Id":1,"Port":25,"RelayAuthenticationType":0,"RelayUsername":"","SenderAccount":"","SenderAddress":"","SenderName":"","UseSSL":false}';
    }
  }
}
CONF
