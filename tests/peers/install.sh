#!/bin/bash
# install.sh - install the real test peers from Debian packages.
#
# Postfix (its smtp-source, smtp-sink, postmap, postconf and a real Postfix
# for comparisons), swaks, Dovecot LMTP and unbound.  Non-interactive; the
# postfix package is pre-seeded with "No configuration" so that it neither
# starts nor takes port 25.  Safe to run more than once.
set -euo pipefail

if [ "$(id -u)" != 0 ]; then
    echo "install.sh: must run as root (apt-get); skipping peer installation" >&2
    exit 0
fi

export DEBIAN_FRONTEND=noninteractive
PKGS="postfix postfix-pcre postfix-lmdb postfix-sqlite postfix-pgsql postgresql swaks dovecot-core dovecot-lmtpd unbound"

missing=""
for p in $PKGS; do
    dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || missing="$missing $p"
done
if [ -z "$missing" ]; then
    echo "install.sh: all peers present"
    exit 0
fi

echo "postfix postfix/main_mailer_type select No configuration" | debconf-set-selections
echo "postfix postfix/mailname string localhost" | debconf-set-selections

# Keep package scripts from starting daemons (no init system here anyway).
policy=/usr/sbin/policy-rc.d
created_policy=0
if [ ! -e "$policy" ]; then
    printf '#!/bin/sh\nexit 101\n' > "$policy"
    chmod 755 "$policy"
    created_policy=1
fi
trap '[ $created_policy = 1 ] && rm -f "$policy"' EXIT

apt-get update -q
apt-get install -y -q --no-install-recommends $missing

# Do not let a system Postfix, unbound or PostgreSQL hold ports: stop them if a package
# script started them after all.
for svc in postfix unbound dovecot postgresql; do
    (service "$svc" stop >/dev/null 2>&1 || true)
done
pkill -x master 2>/dev/null || true

echo "install.sh: installed:$missing"
