#!/bin/sh
# Installs the Debian packages that building, testing and the demo need,
# only those missing, so a second run is quick and needs no network.
set -eu
PACKAGES="make gcc clang pkg-config liblua5.4-dev lua5.4 luajit2 libluajit2-5.1-dev
  libcurl4-openssl-dev libssl-dev lua-cjson lua-busted lua-socket python3-aiosmtpd
  openssl valgrind luarocks curl nginx libnginx-mod-http-lua lua-resty-core
  nftables libclang-rt-14-dev postfix swaks wrk"
missing=""
for p in $PACKAGES; do
  dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || missing="$missing $p"
done
[ -z "$missing" ] && exit 0
echo "installing:$missing"
SUDO=""
[ "$(id -u)" -eq 0 ] || SUDO=sudo
# postfix is wanted for its smtp-sink only (make bench): no mail system is
# configured or started.
echo "postfix postfix/main_mailer_type select No configuration" | $SUDO debconf-set-selections
$SUDO apt-get update -qq
DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq $missing >/dev/null
