#!/usr/bin/env bash
# Starts or stops a throwaway PostgreSQL cluster on a loopback port, for
# domicile's tests, benchmarks and `demo --backend postgres`.
#
#   scripts/pg-cluster.sh start DIR PORT   prints the cluster's URL
#   scripts/pg-cluster.sh stop DIR
#
# DOMICILE_PG_SETTINGS, if set, is passed to the server after the throwaway
# settings and overrides them: "-c fsync=on -c synchronous_commit=on" makes a
# durable cluster.
#
# Needs Debian's postgresql package; installs it when missing and run as root.
# initdb refuses root, so as root the server runs as the postgres user.
set -euo pipefail
cmd=${1:?usage: pg-cluster.sh start DIR PORT | stop DIR}
dir=${2:?data directory}
port=${3:-55432}

find_bin() { ls -d /usr/lib/postgresql/*/bin 2>/dev/null | sort -V | tail -n1; }
bin=$(find_bin)
if [ ! -x "$bin/initdb" ] && [ "$cmd" = start ] && [ "$(id -u)" = 0 ] && command -v apt-get >/dev/null; then
	echo "installing postgresql" >&2
	apt-get update -qq >&2
	DEBIAN_FRONTEND=noninteractive apt-get install -y -qq postgresql >/dev/null
	bin=$(find_bin)
fi
[ -x "$bin/initdb" ] || { echo "postgresql is not installed: apt-get install -y postgresql" >&2; exit 1; }

as() { if [ "$(id -u)" = 0 ]; then runuser -u postgres -- "$@"; else "$@"; fi; }

case $cmd in
start)
	mkdir -p "$dir"
	if [ "$(id -u)" = 0 ]; then chown postgres:postgres "$dir"; fi
	chmod 700 "$dir"
	if [ ! -f "$dir/PG_VERSION" ]; then
		as "$bin/initdb" -D "$dir" -U postgres --auth=trust -E UTF8 --locale=C.UTF-8 --no-sync >/dev/null
	fi
	# Throwaway settings: no fsync; logical replication on for live copies.
	as "$bin/pg_ctl" -D "$dir" -l "$dir/server.log" -w -t 60 start -o \
		"-p $port -k $dir -c listen_addresses=127.0.0.1 -c wal_level=logical -c max_replication_slots=20 -c max_wal_senders=20 -c max_connections=200 -c fsync=off -c synchronous_commit=off -c full_page_writes=off ${DOMICILE_PG_SETTINGS:-}" >/dev/null
	echo "postgres://postgres@127.0.0.1:$port/postgres?sslmode=disable"
	;;
stop)
	if [ -f "$dir/PG_VERSION" ]; then
		as "$bin/pg_ctl" -D "$dir" -m fast -w stop >/dev/null || true
	fi
	;;
*)
	echo "usage: $0 start DIR PORT | stop DIR" >&2
	exit 2
	;;
esac
