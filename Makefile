# workproof — run `make help` for the targets.
GO       ?= go
PKGS     ?= ./...
# CI passes -rapid.nofailfile so an interrupted run cannot leave a junk fail file.
TESTFLAGS ?=
SOAK_FLAGS ?= -duration 2m

.PHONY: help test test-short bench lint soak clean

help: ## list the targets
	@grep -E '^[a-z-]+:.*## ' $(MAKEFILE_LIST) | awk -F':.*## ' '{printf "  %-12s %s\n", $$1, $$2}'

test: ## run every test with the race detector (starts its own Postgres)
	$(GO) test -race -count=1 -timeout 9m $(TESTFLAGS) $(PKGS)

test-short: ## the quick subset
	$(GO) test -short -count=1 $(PKGS)

bench: ## benchmarks: Postgres start/clone, claim throughput, fakes, scenarios
	$(GO) test -run '^$$' -bench . -benchtime 3x -count 1 ./sim/pgenv/
	$(GO) test -run '^$$' -bench . -count 1 ./work/ ./fakes/

lint: ## gofmt and go vet
	@out=$$(gofmt -l $$(git ls-files '*.go')); if [ -n "$$out" ]; then echo "gofmt needed:"; echo "$$out"; exit 1; fi
	$(GO) vet $(PKGS)

soak: ## a 2-minute soak of the reference system on the embedded Postgres
	$(GO) run ./cmd/simrun soak $(SOAK_FLAGS)

clean: ## remove build and report output
	rm -rf out/
