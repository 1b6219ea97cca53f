# domicile: build, test and lint. `make test` is what CI runs (.ci/run).

GO        ?= go
FUZZTIME  ?= 10s
BENCHTIME ?= 1s
BENCH     ?= .

.PHONY: all build test test-race lint bench fuzz clean

all: build test

# A pure-Go binary, ./domicile (git ignores it).
build:
	CGO_ENABLED=0 $(GO) build -o domicile ./cmd/domicile

# Lint, then every test (-race where it pays): see scripts/test.sh.
test:
	scripts/test.sh

# Every package under the race detector.
test-race:
	$(GO) test -race -count=1 -timeout 25m ./...

# go vet, gofmt and staticcheck (installed if missing).
lint:
	scripts/lint.sh

# The go test benchmarks; e.g. make bench BENCH=Move BENCHTIME=5x.
bench:
	$(GO) test -run '^$$' -bench '$(BENCH)' -benchmem -benchtime $(BENCHTIME) ./...

# Every fuzz target for FUZZTIME each.
fuzz:
	FUZZTIME=$(FUZZTIME) scripts/fuzz.sh

clean:
	rm -f domicile
