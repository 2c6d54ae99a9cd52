#!/bin/sh
# Install the Debian packages the tests use, if any is missing:
#   swaks (a real SMTP client), postfix (smtp-sink / smtp-source peers and the benchmark
#   reference), postgresql (initdb / pg_ctl for the PostgreSQL tests), openssl.
# Postfix is preseeded as "Local only" and is not started (the tests start what they need).
set -eu
need=""
command -v swaks >/dev/null 2>&1 || need="$need swaks"
[ -x /usr/sbin/smtp-sink ] || need="$need postfix"
command -v openssl >/dev/null 2>&1 || need="$need openssl"
if ! command -v initdb >/dev/null 2>&1 && ! ls /usr/lib/postgresql/*/bin/initdb >/dev/null 2>&1; then
  need="$need postgresql"
fi
[ -z "$need" ] && exit 0
if [ "$(id -u)" != 0 ]; then
  echo "missing Debian packages:$need (run 'sudo make deps' once)" >&2
  exit 1
fi
echo "installing Debian packages:$need"
echo "postfix postfix/main_mailer_type select Local only" | debconf-set-selections
echo "postfix postfix/mailname string postroom.test" | debconf-set-selections
export DEBIAN_FRONTEND=noninteractive
apt-get update -q >/dev/null
# shellcheck disable=SC2086
apt-get install -y -q --no-install-recommends $need >/dev/null
