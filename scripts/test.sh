#!/usr/bin/env bash
# Runs domicile's whole test suite as CI does: installs what the tests need,
# lints, then runs every package's tests. `make test` and .ci/run come here.
#
# Sized for CI: 2 cores, well under 30 minutes. Heavy tests are made smaller
# to fit, never skipped.
set -euo pipefail
cd "$(dirname "$0")/.."

# --- What the tests need ---------------------------------------------------
# Go (with gcc, for -race) is on the machine already.
#
# Debian's sqlite3 (3.40): sqlite/TestTriggersSQLite340 checks that the
# trigger SQL domicile installs is readable by it. Installed if missing and
# we may (root); otherwise that one test says why it skips.
if ! command -v sqlite3 >/dev/null 2>&1 && [ "$(id -u)" = 0 ] && command -v apt-get >/dev/null 2>&1; then
	echo "--- installing sqlite3"
	(apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq sqlite3 >/dev/null) ||
		echo "could not install sqlite3: the SQLite 3.40 trigger check will skip" >&2
fi
#
# Debian's PostgreSQL server: the PostgreSQL backend's tests start their own
# throwaway clusters on loopback ports (scripts/pg-cluster.sh, through
# internal/pgtest). Installed if missing; with DOMICILE_REQUIRE_POSTGRES set
# the tests fail rather than skip when it cannot be started.
if ! ls /usr/lib/postgresql/*/bin/initdb >/dev/null 2>&1 && [ "$(id -u)" = 0 ] && command -v apt-get >/dev/null 2>&1; then
	echo "--- installing postgresql"
	apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq postgresql >/dev/null
fi
if ls /usr/lib/postgresql/*/bin/initdb >/dev/null 2>&1; then
	export DOMICILE_REQUIRE_POSTGRES=${DOMICILE_REQUIRE_POSTGRES:-1}
else
	echo "PostgreSQL is not installed: its tests will skip" >&2
fi

echo "--- build"
go build ./...

scripts/lint.sh

# --- Tests -----------------------------------------------------------------
# The race detector pays where goroutines share state (stores, mover, router,
# API, the command's end-to-end tests). Packages of pure functions gain
# nothing from it and run several times slower under it: they run without.
# NORACE_PKGS is an extended regular expression over import paths.
NORACE_PKGS=${NORACE_PKGS:-'^github\.com/domicile/domicile(/policy|/internal/example)?$'}
TIMEOUT=${TIMEOUT:-25m}

pkgs=$(go list ./...)
norace=$(grep -E "$NORACE_PKGS" <<<"$pkgs" || true)
race=$(grep -vE "$NORACE_PKGS" <<<"$pkgs" || true)

start=$SECONDS
if [ -n "$norace" ]; then
	echo "--- go test (no -race): $(echo $norace)"
	go test -count=1 -timeout "$TIMEOUT" $norace
fi
if [ -n "$race" ]; then
	echo "--- go test -race"
	go test -race -count=1 -timeout "$TIMEOUT" $race
fi
echo "--- tests passed in $((SECONDS - start))s"
