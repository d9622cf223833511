#!/bin/sh
# Installs the Debian packages that building, testing and the demo need,
# only those missing, so a second run is quick and needs no network.
set -eu
# The list lives in scripts/packages.txt, which .ci/run installs too.
PACKAGES=$(cat "$(dirname "$0")/packages.txt")
missing=""
for p in $PACKAGES; do
  dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || missing="$missing $p"
done
# The browser tests drive Debian's chromium with playwright-core, from the
# npm registry at the version browser/package-lock.json pins (node and npm
# come with the machine).
install_browser_driver() {
  [ -d browser/node_modules/playwright-core ] && return 0
  command -v npm > /dev/null || { echo "deps: npm is needed for the browser tests (install Node.js 20 or later)"; exit 1; }
  echo "installing playwright-core (npm)"
  (cd browser && npm ci --no-audit --no-fund --loglevel=error)
}
cd "$(dirname "$0")/.."
if [ -z "$missing" ]; then
  install_browser_driver
  sh scripts/exim.sh
  exit 0
fi
echo "installing:$missing"
SUDO=""
[ "$(id -u)" -eq 0 ] || SUDO=sudo
# postfix is wanted for its smtp-sink (make bench) and for the real-server
# specs, which run it from their own configuration folder: no system mail
# setup is configured or started.
echo "postfix postfix/main_mailer_type select No configuration" | $SUDO debconf-set-selections
$SUDO apt-get update -qq
DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq $missing >/dev/null
install_browser_driver
# Exim for the real-server specs: unpacked, never installed (it conflicts
# with postfix as a package).
sh scripts/exim.sh
