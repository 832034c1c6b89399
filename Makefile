# Bouncer's build and test entry points. `make test` is what CI runs.
GO ?= go
BIN := bin/bouncer
VERSION ?= $(shell git describe --tags --always --dirty 2>/dev/null || echo dev)
LDFLAGS := -X github.com/bouncer-policy/bouncer/pkg/cli.Version=$(VERSION)
# kustomize links Go's plugin package unless told not to; that makes the
# binary dynamically linked with every symbol exported (~35 MB larger, and
# ~30 MB more resident memory). Bouncer never loads kustomize Go plugins.
TAGS := kustomize_disable_go_plugin_support

.PHONY: build test unit e2e vet fmt bench fuzz image up down

build:
	$(GO) build -tags $(TAGS) -ldflags "$(LDFLAGS)" -o $(BIN) ./cmd/bouncer

# up starts a local control plane with Bouncer enforcing (see README); down stops it.
up: build
	$(BIN) up

down: build
	$(BIN) down

vet:
	@test -z "$$(gofmt -l $$(git ls-files '*.go'))" || { gofmt -l $$(git ls-files '*.go'); echo "gofmt needed"; exit 1; }
	$(GO) vet ./...

# test runs every test: unit, the example and library suites, and the
# end-to-end tests against a real control plane (built on first use).
test: vet build
	$(BIN) verify examples/... library/...
	$(BIN) verify --engine rego library/...
	$(GO) test -count=1 -timeout 40m ./...

unit:
	$(GO) test -short -count=1 ./...

bench:
	$(GO) test -run '^$$' -bench . -benchmem ./pkg/engine/... ./pkg/webhook/... ./pkg/mutation/

fuzz:
	$(GO) test -run '^$$' -fuzz '^FuzzRead$$' -fuzztime 30s ./pkg/load/
	$(GO) test -run '^$$' -fuzz FuzzDecodeValueMatchesRoundTrip -fuzztime 30s ./pkg/load/
	$(GO) test -run '^$$' -fuzz FuzzParsePath -fuzztime 30s ./pkg/mutation/
	$(GO) test -run '^$$' -fuzz FuzzMutate -fuzztime 30s ./pkg/mutation/
	$(GO) test -run '^$$' -fuzz FuzzGenerate -fuzztime 30s ./pkg/mapgen/
	$(GO) test -run '^$$' -fuzz '^FuzzMutationReview$$' -fuzztime 30s ./pkg/webhook/
	$(GO) test -run '^$$' -fuzz FuzzReadSet -fuzztime 30s ./pkg/engine/cel/
	$(GO) test -run '^$$' -fuzz FuzzRegoReadSet -fuzztime 30s ./pkg/engine/rego/

# image builds the container deploy/ refers to (needs a container runtime).
image:
	docker build --build-arg VERSION=$(VERSION) -t ghcr.io/bouncer-policy/bouncer:$(VERSION) .
