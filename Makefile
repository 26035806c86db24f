# workproof — run `make help` for the targets.
GO       ?= go
PKGS     ?= ./...
TESTFLAGS ?=
SOAK_FLAGS ?= -duration 2m
FALSEALARM_RUNS ?= 20
FALSEALARM_CHECKS ?= 200

.PHONY: help test test-short test-container bench bench-mutants lint soak clean

help: ## list the targets
	@grep -E '^[a-z-]+:.*## ' $(MAKEFILE_LIST) | awk -F':.*## ' '{printf "  %-12s %s\n", $$1, $$2}'

test: ## run every test with the race detector (starts its own Postgres)
	$(GO) test -race -count=1 -timeout 9m $(TESTFLAGS) $(PKGS)

test-container: ## Postgres in containers: loopback-only dockerd, local image, pgenv + Verify, work/kvx/sim without binaries (root)
	scripts/test-container.sh

test-short: ## the quick subset
	$(GO) test -short -count=1 $(PKGS)

bench: ## Go benchmarks: Postgres start/clone, claim throughput vs pgbench, fakes, checkers, scenarios
	$(GO) test -run '^$$' -bench . -benchtime 20x -count 1 ./sim/pgenv/
	scripts/bench-pgbench.sh 3s 5
	$(GO) test -run '^$$' -bench . -count 1 ./fakes/ ./sim/check/ ./sim/netfault/
	$(GO) test -run '^$$' -bench . -benchtime 10x -count 1 ./scenarios/

bench-mutants: ## the seeded-bug catalogue: every family, then explore alone with replays (~1 h)
	$(GO) run ./cmd/simrun bench -systems all -runs 3
	$(GO) run ./cmd/simrun bench -systems all -families explore -runs 3 -replays 3

falsealarms: ## the reference through every family, 20 seeds x 200 programs x 4 families + explore: any violation is a false alarm (hours; not in make test)
	scripts/falsealarms.sh $(FALSEALARM_RUNS) $(FALSEALARM_CHECKS)

lint: ## gofmt and go vet
	@out=$$(gofmt -l $$(git ls-files '*.go')); if [ -n "$$out" ]; then echo "gofmt needed:"; echo "$$out"; exit 1; fi
	$(GO) vet $(PKGS)

soak: ## a 2-minute soak of the reference system on the embedded Postgres
	$(GO) run ./cmd/simrun soak $(SOAK_FLAGS)

clean: ## remove build and report output
	rm -rf out/
