#!/usr/bin/env bash
# Lints the module: go vet, gofmt (any file listed fails) and staticcheck,
# installed at the pinned version if it is missing.
set -euo pipefail
cd "$(dirname "$0")/.."

STATICCHECK_VERSION=v0.8.2

echo "--- go vet"
go vet ./...

echo "--- gofmt"
unformatted=$(gofmt -l .)
if [ -n "$unformatted" ]; then
	echo "gofmt would change these files (run gofmt -w):"
	echo "$unformatted"
	exit 1
fi

echo "--- staticcheck"
staticcheck=$(go env GOPATH)/bin/staticcheck
if ! "$staticcheck" -version 2>/dev/null | grep -q "(${STATICCHECK_VERSION#v})"; then
	go install "honnef.co/go/tools/cmd/staticcheck@${STATICCHECK_VERSION}"
fi
"$staticcheck" ./...
