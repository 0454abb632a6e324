#!/usr/bin/env bash
# Makes sure the services the tests use are running: Redis on 127.0.0.1:6379 and PostgreSQL on 127.0.0.1:5432
# (trust auth for local TCP, database `test`). Installs them with apt-get when missing (needs root).
set -euo pipefail

port_open() { (exec 3<>"/dev/tcp/127.0.0.1/$1") 2>/dev/null; }
as_root() { if [ "$(id -u)" = 0 ]; then "$@"; else sudo "$@"; fi; }
apt_ready=0
apt_install() {
  if [ $apt_ready = 0 ]; then as_root apt-get update -qq; apt_ready=1; fi
  DEBIAN_FRONTEND=noninteractive as_root apt-get install -y -qq "$@" >/dev/null
}

if ! port_open 6379; then
  command -v redis-server >/dev/null || apt_install redis-server
  mkdir -p /tmp/llm-gateway-redis
  redis-server --daemonize yes --bind 127.0.0.1 --port 6379 --save "" --appendonly no \
    --dir /tmp/llm-gateway-redis --logfile /tmp/llm-gateway-redis/redis.log
  for _ in $(seq 50); do port_open 6379 && break; sleep 0.1; done
fi

if ! port_open 5432; then
  ls /etc/postgresql/*/main >/dev/null 2>&1 || apt_install postgresql
  version=$(ls /etc/postgresql | sort -V | tail -n 1)
  hba=/etc/postgresql/$version/main/pg_hba.conf
  if ! grep -q "llm-gateway tests" "$hba"; then
    as_root sed -i '1i host all all 127.0.0.1/32 trust # llm-gateway tests\nhost all all ::1/128 trust # llm-gateway tests' "$hba"
  fi
  as_root pg_ctlcluster --skip-systemctl-redirect "$version" main start
  for _ in $(seq 100); do port_open 5432 && break; sleep 0.1; done
fi
if command -v psql >/dev/null; then
  psql -h 127.0.0.1 -U postgres -d postgres -tAc "SELECT 1 FROM pg_database WHERE datname='test'" | grep -q 1 ||
    psql -h 127.0.0.1 -U postgres -d postgres -qc "CREATE DATABASE test" >/dev/null
fi
echo "services: redis $(port_open 6379 && echo up || echo DOWN), postgresql $(port_open 5432 && echo up || echo DOWN)"
