# Duet's one Makefile. `make help` lists the targets.
SHELL := /bin/bash
GO ?= go
BIN := $(CURDIR)/bin

# Pinned tools, built from the Go module proxy into ./bin.
MINIO_VERSION := v0.0.0-20260212201848-7aac2a2c5b7c
MINIO := $(BIN)/minio
MINIO_STAMP := $(BIN)/.minio-$(MINIO_VERSION)
PEBBLE_VERSION := v2.10.3
PEBBLE := $(BIN)/pebble
PEBBLE_STAMP := $(BIN)/.pebble-$(PEBBLE_VERSION)
GOLANGCI_LINT_VERSION := v2.15.0
GOLANGCI_LINT := $(BIN)/golangci-lint
GOLANGCI_LINT_STAMP := $(BIN)/.golangci-lint-$(GOLANGCI_LINT_VERSION)

# The version `duet version` prints and the image is tagged with; the commit and its time label and
# date the image (its time makes the image reproducible).
VERSION ?= $(shell git describe --tags --always --dirty 2>/dev/null || echo dev)
REVISION ?= $(shell git rev-parse HEAD 2>/dev/null)
SOURCE_DATE_EPOCH ?= $(shell git log -1 --format=%ct 2>/dev/null || echo 0)

FUZZTIME ?= 60s
BENCHTIME ?= 1s

.DEFAULT_GOAL := help

#? help: list the targets
help:
	@grep -E '^#\? ' $(MAKEFILE_LIST) | sed -e 's/^#? /  /'

#? tools: install the pinned MinIO server, the Pebble ACME test CA and golangci-lint into ./bin (fast when already
#?        there). k6 is not installed: it is AGPL-licensed, which this project's dependency rules exclude (see loadtest/k6)
tools: $(MINIO_STAMP) $(PEBBLE_STAMP) $(GOLANGCI_LINT_STAMP)

$(MINIO_STAMP):
	@mkdir -p $(BIN)
	@echo "building MinIO $(MINIO_VERSION) into ./bin (once; takes a few minutes)"
	GOBIN=$(BIN) GOFLAGS=-buildvcs=false $(GO) install github.com/minio/minio@$(MINIO_VERSION)
	@rm -f $(BIN)/.minio-* && touch $@

# Pebble is Let's Encrypt's ACME test server: the edge's ACME tests obtain and renew
# certificates from it on loopback (internal/testenv).
$(PEBBLE_STAMP):
	@mkdir -p $(BIN)
	@echo "building Pebble $(PEBBLE_VERSION) into ./bin (once)"
	GOBIN=$(BIN) GOFLAGS=-buildvcs=false $(GO) install github.com/letsencrypt/pebble/v2/cmd/pebble@$(PEBBLE_VERSION)
	@rm -f $(BIN)/.pebble-* && touch $@

$(GOLANGCI_LINT_STAMP):
	@mkdir -p $(BIN)
	@echo "building golangci-lint $(GOLANGCI_LINT_VERSION) into ./bin (once; takes a few minutes)"
	GOBIN=$(BIN) GOFLAGS=-buildvcs=false $(GO) install github.com/golangci/golangci-lint/v2/cmd/golangci-lint@$(GOLANGCI_LINT_VERSION)
	@rm -f $(BIN)/.golangci-lint-* && touch $@

#? browser: install Debian's chromium (the player's browser test plays the sample in it); needs root
browser:
	@command -v chromium >/dev/null || { \
	  if [ "$$(id -u)" != 0 ]; then echo "chromium is missing: run 'sudo apt-get install -y chromium' (the player test needs it)"; exit 1; fi; \
	  echo "installing Debian's chromium for the player test"; \
	  DEBIAN_FRONTEND=noninteractive apt-get install -y --no-install-recommends chromium >/dev/null || \
	  { apt-get update >/dev/null && DEBIAN_FRONTEND=noninteractive apt-get install -y --no-install-recommends chromium >/dev/null; }; }

# `duet version` names the git commit: go build stamps it (-buildvcs=auto overrides a
# GOFLAGS=-buildvcs=false), except in a git worktree, whose .git is a file go build does not
# recognise: there the version comes through -ldflags.
WORKTREE_VERSION := $(if $(wildcard .git/HEAD),,$(shell git describe --always --dirty --tags 2>/dev/null))

#? build: build bin/duet
build:
	$(GO) build -buildvcs=auto $(if $(WORKTREE_VERSION),-ldflags "-X main.version=$(WORKTREE_VERSION)") -o $(BIN)/duet ./cmd/duet

#? image: the container image ghcr.io/duetcdn/duet:$(VERSION) without Docker (internal/image): FROM scratch,
#?        static duet, user 65532, OCI labels, reproducible; OCI layout in out/image, `docker load` tarball out/image.tar
image:
	$(GO) run ./internal/image/mkimage -out out -version "$(VERSION)" -revision "$(REVISION)" -created "$(SOURCE_DATE_EPOCH)"

#? test: MinIO, Pebble, under CI=true chromium, vet, lint, and every test (integration tests included) with the race detector
test: $(MINIO_STAMP) $(PEBBLE_STAMP) $(if $(filter true,$(CI)),browser) vet lint
	@# The hit path's allocation budget and the tiers' hit ratio against an LRU are checked
	@# without the race detector (it allocates, and it upsets ristretto's sampled counting), and
	@# so is the purge of 100,000 objects and their refill at the origin budget (200,000 requests).
	$(GO) test -count=1 -run 'Allocations|TiersBeatLRU|OriginBudgetAfterPurge100k' ./edge/ ./edge/hitratio/
	@# Build the race-enabled test binaries on every core first (running none of their tests)...
	$(GO) test -race -count=1 -run '^$$' ./... >/dev/null
	@# ...then test one package at a time: the integration tests start MinIO, NATS and edge processes, and
	@# timing-bound checks (trust, failover) should not share two cores with another package.
	CI=$${CI:-} $(GO) test -race -shuffle=on -count=1 -p 1 -timeout 15m ./...

#? vet: go vet
vet:
	$(GO) vet ./...

#? lint: golangci-lint (pinned, built into ./bin; .golangci.yml), go mod tidy -diff, generated files current
lint: $(GOLANGCI_LINT_STAMP) check-generated
	$(GOLANGCI_LINT) run ./...
	@$(GO) mod tidy -diff || { echo "go.mod/go.sum are not tidy: run 'go mod tidy' (the diff above is what it would change)"; exit 1; }

# The generated GeoIP data (steering/geoip: country.mmdb, countries_gen.go) is rebuilt by `make
# generate`, which needs npm and fetches its pinned inputs. The check does not regenerate: it
# compares the SHA-256 sums that `make generate` recorded, of the outputs and of the generator
# (whose pins name the inputs), so an output edited by hand or a generator changed without
# regenerating fails it, offline and in a second.
GEOIP_GENERATED := internal/gen/main.go country.mmdb countries_gen.go

#? check-generated: the generated GeoIP files are what their generator last produced
check-generated:
	@cd steering/geoip && sha256sum --quiet -c generated.sha256 || \
	  { echo "steering/geoip: generated files or their generator changed: run 'make generate'"; exit 1; }

#? generate: rebuild the generated GeoIP data (needs npm) and record its sums
generate:
	$(GO) generate ./steering/geoip/...
	cd steering/geoip && sha256sum $(GEOIP_GENERATED) > generated.sha256

#? fuzz: run every fuzz target in the tree for FUZZTIME (default 60s) each
fuzz:
	@set -e; for f in $$(grep -rl --include='*_test.go' '^func Fuzz' . | grep -v '^./bin/'); do \
	  pkg=$$(dirname $$f); \
	  for fn in $$(grep -o '^func Fuzz[A-Za-z0-9_]*' $$f | cut -d' ' -f2); do \
	    echo "== $$pkg $$fn"; $(GO) test -run='^$$' -fuzz="^$$fn\$$" -fuzztime=$(FUZZTIME) $$pkg; \
	  done; \
	done

#? bench: the Go benchmarks (allocs/op, the hit-ratio simulation against an LRU, the flash crowd, purge, steering) as one table
bench: $(MINIO_STAMP)
	@set -o pipefail; { $(GO) test -run='^$$' -bench=. -benchmem -benchtime=$(BENCHTIME) ./edge/... ./steering/... ./internal/... && \
	  $(GO) test -run='^$$' -bench='BenchmarkPurge|BenchmarkTagPurge' -benchmem -benchtime=1x ./cmd/duet/ ./edge/; } | $(GO) run ./edge/perf/benchtable

#? bench-upload: duet upload against the MinIO client mc (installed pinned into ./bin) on the same files
bench-upload: $(MINIO_STAMP) build
	origin/upload/bench/compare.sh

#? loadtest: duet dev (started unless running), k6 viewers if k6 is on PATH, the zipf, flash-crowd and failover scenarios; reports in out/
loadtest: $(MINIO_STAMP) build
	LOADTEST_DURATION=$${LOADTEST_DURATION:-30s} loadtest/run.sh

#? scale-test: one region of 8 edge processes with peer fill, steering and MinIO under duet loadtest's zipf load, one edge
#?        killed mid-run; logs origin fetches per object, origin bytes per viewer byte, each edge's share (RATE=req/s, default 200)
scale-test: $(MINIO_STAMP)
	@set -o pipefail; DUET_SCALE_RATE=$${RATE:-} $(GO) test -count=1 -v -run '^TestScaleOutRegionOfEight$$' ./cmd/duet/ | grep -E 'scaleregion_e2e_test|^(--- |ok|FAIL)'

#? run: the whole CDN on this machine: two regions, a sample stream, a player (Ctrl-C stops);
#?      ARGS are duet dev's flags, e.g. make run ARGS='--port-offset 1000' (bin/duet dev --help lists them)
run: $(MINIO_STAMP) build
	$(BIN)/duet dev $(ARGS)

.PHONY: help tools browser build image test vet lint check-generated generate fuzz bench bench-upload loadtest scale-test run
