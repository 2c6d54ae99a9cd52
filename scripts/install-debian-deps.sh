#!/bin/sh
# Make this Debian machine able to run the tests, judging each tool by what the tests ask of
# it, not by its presence (swaks without Net::SSLeay is installed but cannot do STARTTLS):
#   swaks with TLS and basic AUTH   tests/smtp (submission with STARTTLS + AUTH PLAIN)
#   smtp-sink, smtp-source          postfix's peers in /usr/sbin (tests, bench/)
#   initdb, pg_ctl, postgres        one PostgreSQL bin directory (tests/pgserver.py)
#   openssl                         certificates (postroom init, tests)
#   chromium (headless)             the browser tests (tests/web/test_browser.py, Playwright)
#   wrk                             the web benchmark (bench/bench_web.py)
#   rsync                           backup --to pushes (tests/ops: a daemon on 127.0.0.1)
# Whatever is missing is installed with apt-get, then every capability is checked again.
# Postfix is preseeded "Local only" and left stopped and disabled: the tests and benchmarks
# start their own private peers, and a system Postfix would be one more MTA on this machine.
#
# Usage: sh scripts/install-debian-deps.sh [--check]
#   --check   only report; exit 1 if a capability is missing
set -eu

check_only=false
case "${1:-}" in
  --check) check_only=true ;;
  "") ;;
  *) echo "usage: $0 [--check]" >&2; exit 2 ;;
esac

# swaks --support takes no argument in Debian 12's swaks: it lists "=== X supported" lines.
swaks_supports() {
  command -v swaks >/dev/null 2>&1 && swaks --support 2>&1 | grep -q "^=== $1 supported"
}

# Postfix's tools print their usage and exit 1 without arguments; 126/127 means they cannot run.
postfix_tool_runs() {
  [ -x "/usr/sbin/$1" ] || return 1
  rc=0
  "/usr/sbin/$1" >/dev/null 2>&1 </dev/null || rc=$?
  [ "$rc" -lt 126 ]
}

# The directories tests/pgserver.py searches: initdb's on PATH, then /usr/lib/postgresql/*/bin.
pg_bindir() {
  on_path=""
  if initdb=$(command -v initdb 2>/dev/null); then
    on_path=$(dirname "$(readlink -f "$initdb")")
  fi
  for d in $on_path /usr/lib/postgresql/*/bin; do
    if "$d/initdb" --version >/dev/null 2>&1 && "$d/pg_ctl" --version >/dev/null 2>&1 \
        && "$d/postgres" --version >/dev/null 2>&1; then
      echo "$d"
      return 0
    fi
  done
  return 1
}

# Installed is not enough: it must start headless and render a page (the browser tests).
chromium_runs() {
  [ -x /usr/bin/chromium ] || return 1
  timeout 60 /usr/bin/chromium --headless --no-sandbox --dump-dom about:blank 2>/dev/null \
    | grep -q "<body>"
}

# A missing capability: one line of $missing naming it and its package(s), added to $packages.
lack() {
  missing="$missing
  $1 (Debian: $2)"
  packages="$packages $2"
}

# Sets $missing and $packages.
check() {
  missing=""
  packages=""
  if ! command -v swaks >/dev/null 2>&1; then
    lack "swaks with TLS and basic AUTH" "swaks libnet-ssleay-perl libio-socket-ssl-perl"
  else
    swaks_supports TLS \
      || lack "swaks TLS, which needs Perl's Net::SSLeay" \
              "libnet-ssleay-perl libio-socket-ssl-perl"
    swaks_supports "Basic AUTH" \
      || lack "swaks basic AUTH, which needs Perl's MIME::Base64" "perl"
  fi
  postfix_tool_runs smtp-sink || lack "/usr/sbin/smtp-sink runnable" "postfix"
  postfix_tool_runs smtp-source || lack "/usr/sbin/smtp-source runnable" "postfix"
  pg_bindir >/dev/null || lack "PostgreSQL initdb, pg_ctl and postgres runnable \
(on PATH or in /usr/lib/postgresql/*/bin)" "postgresql"
  openssl version >/dev/null 2>&1 || lack "openssl runnable" "openssl"
  chromium_runs || lack "chromium that runs headless (--headless --no-sandbox)" "chromium"
  wrk --version 2>&1 | grep -q "^wrk " || lack "wrk runnable" "wrk"
  rsync --version >/dev/null 2>&1 || lack "rsync runnable" "rsync"
}

postfix_running() {
  [ -x /usr/sbin/postfix ] && /usr/sbin/postfix status >/dev/null 2>&1
}

postfix_enabled() {
  if [ -d /run/systemd/system ]; then
    systemctl -q is-enabled postfix 2>/dev/null
  else
    ls /etc/rc[2345].d/S*postfix >/dev/null 2>&1
  fi
}

check
if [ -z "$missing" ]; then
  echo "test dependencies: all present (PostgreSQL in $(pg_bindir))"
  exit 0
fi
if $check_only; then
  echo "test dependencies missing:$missing" >&2
  exit 1
fi
if [ "$(id -u)" != 0 ]; then
  echo "test dependencies missing:$missing" >&2
  echo "run 'sudo make deps' once to install them" >&2
  exit 1
fi

had_postfix=false
[ -x /usr/sbin/postfix ] && had_postfix=true
# shellcheck disable=SC2086 # $packages is a word list
packages=$(printf '%s\n' $packages | sort -u | tr '\n' ' ')
echo "installing Debian packages: $packages"
echo "postfix postfix/main_mailer_type select Local only" | debconf-set-selections
echo "postfix postfix/mailname string postroom.test" | debconf-set-selections
export DEBIAN_FRONTEND=noninteractive
apt-get update -q >/dev/null
# shellcheck disable=SC2086
apt-get install -y -q --no-install-recommends $packages >/dev/null

# Only a Postfix installed here is stopped: an MTA the machine already had is its owner's.
if ! $had_postfix && [ -x /usr/sbin/postfix ]; then
  if postfix_running; then
    echo "stopping the Postfix that apt-get started"
    service postfix stop >/dev/null 2>&1 || /usr/sbin/postfix stop >/dev/null 2>&1 || true
  fi
  if postfix_enabled; then
    if [ -d /run/systemd/system ]; then
      systemctl -q disable postfix
    else
      update-rc.d postfix disable >/dev/null 2>&1
    fi
  fi
  if postfix_running || postfix_enabled; then
    echo "the Postfix just installed is still running or enabled at boot;" \
         "stop it: service postfix stop; update-rc.d postfix disable" >&2
    exit 1
  fi
fi

check
if [ -n "$missing" ]; then
  echo "still missing after apt-get install:$missing" >&2
  exit 1
fi
echo "test dependencies: all present (PostgreSQL in $(pg_bindir))"
