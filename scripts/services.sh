#!/usr/bin/env bash
# Makes sure Postgres (5432) and RabbitMQ (5672, management 15672) answer on localhost:
# local services first (started if installed but stopped), else Docker compose.
set -euo pipefail
port_open() { (exec 3<>"/dev/tcp/127.0.0.1/$1") 2>/dev/null; }
wait_for() { for _ in $(seq "$3"); do port_open "$2" && return 0; sleep 1; done; echo "$1 is not answering on port $2" >&2; return 1; }

if ! port_open 5432 && command -v pg_ctlcluster >/dev/null && [ -d /etc/postgresql ]; then
  pg_ctlcluster --skip-systemctl-redirect "$(ls /etc/postgresql | head -n1)" main start
fi
if ! port_open 5672 && command -v rabbitmq-server >/dev/null; then
  rabbitmq-server -detached
  wait_for RabbitMQ 5672 120
fi
if port_open 5672 && ! port_open 15672 && command -v rabbitmq-plugins >/dev/null; then
  # Tests and the demo create their own vhosts through the management API.
  rabbitmq-plugins enable rabbitmq_management >/dev/null
fi
if { ! port_open 5432 || ! port_open 5672; } && command -v docker >/dev/null && docker info >/dev/null 2>&1; then
  echo "starting Postgres and RabbitMQ with docker compose"
  docker compose up -d postgres rabbitmq
fi
wait_for PostgreSQL 5432 60
wait_for RabbitMQ 5672 120
wait_for "RabbitMQ management" 15672 60
