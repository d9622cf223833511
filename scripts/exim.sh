#!/bin/sh
# Exim 4.96 for spec/realmail_spec.lua, unpacked from Debian's
# exim4-daemon-light into build/exim/root (usr/sbin/exim4). Exim cannot be
# installed as a package beside postfix (both are a mail-transport-agent),
# so it is fetched with `apt-get download` and unpacked with `dpkg -x`:
# nothing is configured or started, /etc/exim4 stays absent, and the specs
# run it with their own configuration (`exim4 -C FILE`).
#
# The binary looks up its compiled-in user, Debian-exim, before it reads any
# configuration, so the system user exim4-base would create is created here
# the same way (no home, no login). Its library libidn12 comes from
# scripts/packages.txt.
#
# Idempotent: does nothing when build/exim/root/usr/sbin/exim4 is there and
# the user exists. Needs root (or sudo) for adduser and Debian's archive
# only the first time.
set -eu
cd "$(dirname "$0")/.."
dir=build/exim
SUDO=""
[ "$(id -u)" -eq 0 ] || SUDO=sudo
if ! getent passwd Debian-exim > /dev/null; then
  $SUDO adduser --system --group --quiet --home /var/spool/exim4 \
    --no-create-home --disabled-login --force-badname Debian-exim
fi
[ -x "$dir/root/usr/sbin/exim4" ] && exit 0
rm -rf "$dir"
mkdir -p "$dir/debs"
# As root, apt drops to its _apt user to download, which cannot write here.
# Package lists older than the archive's current version: update, then retry.
download() {
  (cd "$dir/debs" && apt-get -q -o APT::Sandbox::User=root download exim4-daemon-light > /dev/null)
}
download 2>/dev/null || { $SUDO apt-get update -qq && download; }
dpkg -x "$dir"/debs/exim4-daemon-light_*.deb "$dir/root.tmp"
mv "$dir/root.tmp" "$dir/root"
"$dir/root/usr/sbin/exim4" -C /dev/null -bV 2>/dev/null | head -1
