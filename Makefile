# Isolator development targets. `make help` lists them.

# Tool versions, installed from the Go module proxy into ./bin.
CONTROLLER_TOOLS_VERSION ?= v0.23.0
GOLANGCI_LINT_VERSION ?= v2.15.0

# Local control plane (kube-apiserver + etcd) for envtest and the demo.
ENVTEST_K8S_VERSION ?= 1.37.2
ENVTEST_ETCD_VERSION ?= 3.7.3

IMG ?= ghcr.io/isolator-dev/isolator:dev
GO_BUILD_FLAGS ?= -trimpath -ldflags "-s -w"

# kube-controller-manager runs the garbage collector in the tests and the demo.
SETUP_ENVTEST = ENVTEST_K8S_VERSION=$(ENVTEST_K8S_VERSION) ENVTEST_ETCD_VERSION=$(ENVTEST_ETCD_VERSION) ENVTEST_WITH_KCM=1 hack/setup-envtest.sh

LOCALBIN ?= $(CURDIR)/bin
CONTROLLER_GEN ?= $(LOCALBIN)/controller-gen
GOLANGCI_LINT ?= $(LOCALBIN)/golangci-lint

SHELL := /usr/bin/env bash -o pipefail
.SHELLFLAGS := -ec

.PHONY: all
all: build

##@ General

.PHONY: help
help: ## Show this help.
	@awk 'BEGIN {FS = ":.*##"; printf "Usage: make \033[36m<target>\033[0m\n"} /^[a-zA-Z_0-9-]+:.*?##/ { printf "  \033[36m%-18s\033[0m %s\n", $$1, $$2 } /^##@/ { printf "\n\033[1m%s\033[0m\n", substr($$0, 5) } ' $(MAKEFILE_LIST)

##@ Main commands

.PHONY: demo
demo: envtest build ## Run the local demo: control plane, operator, walkthrough scene (KEEP=1 keeps it running).
	KUBEBUILDER_ASSETS="$$($(SETUP_ENVTEST))" \
		go run ./hack/demo --manager $(LOCALBIN)/manager --plugin $(LOCALBIN)/kubectl-isolator --crds config/crd/bases \
		--sample config/samples/isolation_v1alpha1_workloadisolation.yaml $(if $(KEEP),--keep,)

.PHONY: test
test: envtest ## Run all unit, envtest and oracle suites (vet and format checks included).
	$(MAKE) fmt-check vet
	KUBEBUILDER_ASSETS="$$($(SETUP_ENVTEST))" \
		go test ./... -count=1 -timeout 20m $(TEST_FLAGS)
	cd test/oracle && go test ./... -count=1 -timeout 20m -v -run . $(TEST_FLAGS) | grep -E '^(--- |ok|FAIL|PASS|oracle|panic)|_test.go'

.PHONY: test-oracle
test-oracle: ## Run the oracle property tests alone (ORACLE_SEED, ORACLE_CASES to vary them).
	cd test/oracle && go test ./... -count=1 -v

##@ Benchmark

BENCH_FLAGS ?=

.PHONY: bench
bench: envtest build ## Full benchmark (M=100, P=10000, N=1000, 60 s idle window); results in bench.json.
	KUBEBUILDER_ASSETS="$$($(SETUP_ENVTEST))" go run ./test/bench --manager $(LOCALBIN)/manager --json bench.json $(BENCH_FLAGS)

.PHONY: bench-smoke
bench-smoke: envtest build ## Small benchmark run (N=50), as CI runs it to prove the benchmark works.
	KUBEBUILDER_ASSETS="$$($(SETUP_ENVTEST))" go run ./test/bench --manager $(LOCALBIN)/manager --json bin/bench-smoke.json \
		--namespaces 10 --pods 500 --workloadisolations 50 --idle 5s --samples 20 $(BENCH_FLAGS)

##@ Development

.PHONY: manifests
manifests: controller-gen ## Generate the CRD and RBAC manifests into config/.
	$(CONTROLLER_GEN) rbac:roleName=manager-role crd paths="./..." output:crd:artifacts:config=config/crd/bases

.PHONY: generate
generate: controller-gen ## Generate the DeepCopy methods.
	$(CONTROLLER_GEN) object paths="./api/..."

.PHONY: verify-generated
verify-generated: manifests generate ## Fail when generated files differ from the committed ones.
	@git diff --exit-code -- config api || { echo "generated files are stale: run 'make manifests generate' and commit"; exit 1; }

.PHONY: fmt
fmt: ## Format the code.
	gofmt -w $$(git ls-files '*.go')

.PHONY: fmt-check
fmt-check: ## Fail when a file is not gofmt-formatted.
	@out="$$(gofmt -l $$(git ls-files '*.go'))"; [ -z "$$out" ] || { echo "not gofmt-formatted: $$out"; exit 1; }

.PHONY: vet
vet: ## Run go vet (the operator module and the oracle module).
	go vet ./...
	cd test/oracle && go vet ./...

.PHONY: lint
lint: golangci-lint ## Run golangci-lint (configuration in .golangci.yml).
	$(GOLANGCI_LINT) run ./...

.PHONY: envtest
envtest: ## Provide kube-apiserver and etcd (setup-envtest, or built from the Go module proxy).
	@$(SETUP_ENVTEST) >/dev/null

##@ Build

.PHONY: build
build: ## Build the manager into bin/manager and the kubectl plugin into bin/kubectl-isolator.
	CGO_ENABLED=0 go build $(GO_BUILD_FLAGS) -o $(LOCALBIN)/manager ./cmd
	CGO_ENABLED=0 go build $(GO_BUILD_FLAGS) -o $(LOCALBIN)/kubectl-isolator ./cmd/kubectl-isolator

.PHONY: run
run: ## Run the manager against the cluster of the current kubeconfig.
	go run ./cmd --metrics-bind-address=:8080 --health-probe-bind-address=:8081

.PHONY: docker-build
docker-build: ## Build the container image (needs a Docker engine).
	docker build -t $(IMG) .

##@ Tools

$(LOCALBIN):
	mkdir -p $(LOCALBIN)

.PHONY: controller-gen
controller-gen: $(CONTROLLER_GEN)
$(CONTROLLER_GEN): | $(LOCALBIN)
	GOBIN=$(LOCALBIN) go install sigs.k8s.io/controller-tools/cmd/controller-gen@$(CONTROLLER_TOOLS_VERSION)

.PHONY: golangci-lint
golangci-lint: $(GOLANGCI_LINT)
$(GOLANGCI_LINT): | $(LOCALBIN)
	GOBIN=$(LOCALBIN) go install github.com/golangci/golangci-lint/v2/cmd/golangci-lint@$(GOLANGCI_LINT_VERSION)
