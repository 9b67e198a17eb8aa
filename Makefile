# Isolator development targets. `make help` lists them.

# Tool versions, installed from the Go module proxy into ./bin.
CONTROLLER_TOOLS_VERSION ?= v0.23.0
GOLANGCI_LINT_VERSION ?= v2.15.0
# Test-only NetworkPolicy dataplane of the real-node cluster (never shipped).
KUBE_ROUTER_VERSION ?= v2.1.0
# Helm CLI for the real-node demo (the suites use Helm's Go SDK at the same version).
HELM_VERSION ?= v3.22.0

# Local control plane (kube-apiserver + etcd) for envtest and the demo.
ENVTEST_K8S_VERSION ?= 1.37.2
ENVTEST_ETCD_VERSION ?= 3.7.3

IMG ?= ghcr.io/isolator-dev/isolator:dev
GO_BUILD_FLAGS ?= -trimpath -ldflags "-s -w"

# kube-controller-manager runs the garbage collector in the tests and the demo.
SETUP_ENVTEST = ENVTEST_K8S_VERSION=$(ENVTEST_K8S_VERSION) ENVTEST_ETCD_VERSION=$(ENVTEST_ETCD_VERSION) ENVTEST_WITH_KCM=1 hack/setup-envtest.sh
# The real one-node cluster also needs kube-scheduler, kubelet, kube-proxy and kubectl.
SETUP_NODE = ENVTEST_WITH_NODE=1 $(SETUP_ENVTEST)

LOCALBIN ?= $(CURDIR)/bin
CONTROLLER_GEN ?= $(LOCALBIN)/controller-gen
GOLANGCI_LINT ?= $(LOCALBIN)/golangci-lint
KUBE_ROUTER ?= $(LOCALBIN)/kube-router-$(KUBE_ROUTER_VERSION)
HELM ?= $(LOCALBIN)/helm-$(HELM_VERSION)

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
demo: envtest build ## Run the local demo: control plane, operator, walkthrough scene (CNI=canal for Canal instead of Cilium, KEEP=1 keeps it running; CLUSTER=real: a real one-node cluster with the chart installed, kept up).
ifeq ($(CLUSTER),real)
	$(MAKE) realnode-up helm
	ln -sf "$$($(SETUP_NODE))/kubectl" $(LOCALBIN)/kubectl
	hack/realnode-demo/run.sh $(LOCALBIN)
else
	KUBEBUILDER_ASSETS="$$($(SETUP_ENVTEST))" \
		go run ./hack/demo --manager $(LOCALBIN)/manager --plugin $(LOCALBIN)/kubectl-isolator --crds config/crd/bases \
		--sample config/samples/isolation_v1alpha1_workloadisolation.yaml $(if $(CNI),--cni $(CNI),) $(if $(KEEP),--keep,)
endif

.PHONY: test
test: envtest ## Run all unit, envtest, oracle and chart suites (vet and format checks included).
	$(MAKE) fmt-check vet
	KUBEBUILDER_ASSETS="$$($(SETUP_ENVTEST))" \
		go test ./... -count=1 -timeout 20m $(TEST_FLAGS)
	cd test/oracle && go test ./... -count=1 -timeout 20m -v -run . $(TEST_FLAGS) | grep -E '^(--- |ok|FAIL|PASS|oracle|panic)|_test.go'
	cd test/adminoracle && go test ./... -count=1 -timeout 20m -v -run . $(TEST_FLAGS) | grep -E '^(--- |ok|FAIL|PASS|admin oracle|panic)|_test.go'
	cd test/ciliumcheck && go test ./... -count=1 -timeout 20m -v -run . $(TEST_FLAGS) | grep -E '^(--- |ok|FAIL|PASS|panic)|_test.go'
	cd test/helm && KUBEBUILDER_ASSETS="$$(cd ../.. && $(SETUP_ENVTEST))" go test ./... -count=1 -timeout 20m $(TEST_FLAGS)

##@ Real one-node cluster (root; containerd, runc, CNI plugins, iptables, ipset, nftables from Debian)

REALNODE ?= $(LOCALBIN)/realnode
REALNODE_FLAGS = --bin-dir "$$($(SETUP_NODE))" --kube-router $(KUBE_ROUTER) --root $(CURDIR) --images $(LOCALBIN)/realnode-images

.PHONY: realnode-bin
realnode-bin: | $(LOCALBIN) ## Build the cluster harness into bin/realnode.
	cd test/realnode && CGO_ENABLED=0 go build -o $(REALNODE) ./cmd/realnode

.PHONY: realnode-test
realnode-test: envtest kube-router realnode-bin ## Run the real-node suite: its own cluster up, chart, upgrade, failover, walkthrough on real pods, KKP, cluster down.
	cd test/realnode && REALNODE_BIN_DIR="$$(cd ../.. && $(SETUP_NODE))" KUBE_ROUTER=$(KUBE_ROUTER) REALNODE_SUPERVISOR=$(REALNODE) \
		go test ./... -count=1 -v -timeout 20m $(TEST_FLAGS); rc=$$?; \
		$(REALNODE) down --state /var/lib/isolator-realnode-test >/dev/null || rc=1; exit $$rc

.PHONY: realnode-up
realnode-up: envtest kube-router realnode-bin ## Start a real one-node cluster and keep it up (KUBECONFIG printed; stop it with make realnode-down).
	$(REALNODE) up $(REALNODE_FLAGS)

.PHONY: realnode-down
realnode-down: realnode-bin ## Stop the cluster of realnode-up and check that nothing is left on the host.
	$(REALNODE) down

.PHONY: test-oracle
test-oracle: ## Run the oracle property tests alone (ORACLE_SEED, ORACLE_CASES to vary them).
	cd test/oracle && go test ./... -count=1 -v

##@ Benchmark

BENCH_FLAGS ?=

.PHONY: bench
bench: envtest build ## Full benchmark (N=1,000 and N=10,000, 3 runs each, churn, restart, failover; about 50 min); results in bench.json.
	KUBEBUILDER_ASSETS="$$($(SETUP_ENVTEST))" go run ./test/bench --manager $(LOCALBIN)/manager --json bench.json $(BENCH_FLAGS)

.PHONY: bench-smoke
bench-smoke: envtest build ## Small benchmark run (N=50, every scenario), as CI runs it to prove the benchmark works.
	KUBEBUILDER_ASSETS="$$($(SETUP_ENVTEST))" go run ./test/bench --manager $(LOCALBIN)/manager --json bin/bench-smoke.json \
		--sizes 10:500:50 --runs 1 --idle 5s --samples 20 --pod-churn-rate 20 --pod-churn-duration 5s --namespace-churn 10 $(BENCH_FLAGS)

##@ Development

.PHONY: manifests
manifests: controller-gen ## Generate the CRD and RBAC manifests into config/, and sync them into the chart.
	$(CONTROLLER_GEN) rbac:roleName=manager-role crd paths="./..." output:crd:artifacts:config=config/crd/bases
	$(MAKE) chart-sync

.PHONY: chart-sync
chart-sync: ## Copy the generated CRDs and manager rules into charts/isolator (one source of truth).
	cp config/crd/bases/*.yaml charts/isolator/crds/
	{ echo "# Generated by 'make chart-sync' from config/rbac/role.yaml. Do not edit."; \
	  sed -n '/^rules:/,$$p' config/rbac/role.yaml | tail -n +2; } > charts/isolator/files/manager-rules.yaml

.PHONY: generate
generate: controller-gen ## Generate the DeepCopy methods.
	$(CONTROLLER_GEN) object paths="./api/..."

.PHONY: verify-generated
verify-generated: manifests generate ## Fail when generated files differ from the committed ones.
	@git diff --exit-code -- config api charts || { echo "generated files are stale: run 'make manifests generate' and commit"; exit 1; }

.PHONY: fmt
fmt: ## Format the code.
	gofmt -w $$(git ls-files '*.go')

.PHONY: fmt-check
fmt-check: ## Fail when a file is not gofmt-formatted.
	@out="$$(gofmt -l $$(git ls-files '*.go'))"; [ -z "$$out" ] || { echo "not gofmt-formatted: $$out"; exit 1; }

.PHONY: vet
vet: ## Run go vet (the operator module and the test modules).
	go vet ./...
	cd test/oracle && go vet ./...
	cd test/adminoracle && go vet ./...
	cd test/adminoracle/npguard && go vet ./...
	cd test/ciliumcheck && go vet ./...
	cd test/helm && go vet ./...
	cd test/realnode && go vet ./...

.PHONY: lint
lint: golangci-lint ## Run golangci-lint (configuration in .golangci.yml) on the operator and the real-node module.
	$(GOLANGCI_LINT) run ./...
	cd test/realnode && $(GOLANGCI_LINT) run --config ../../.golangci.yml ./...

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
	go run ./cmd --metrics-bind-address=:8443 --health-probe-bind-address=:8081

.PHONY: docker-build
docker-build: ## Build the container image (needs a Docker engine).
	docker build -t $(IMG) .

.PHONY: image-binary
image-binary: ## Run the Dockerfile's own build command (no engine needed) and check the binary is static.
	sh -xc "$$(grep '^RUN CGO_ENABLED' Dockerfile | sed 's/^RUN //; s/$${TARGETOS}/linux/; s/$${TARGETARCH}/amd64/; s/-o manager/-o bin\/manager-image/')"
	go version -m bin/manager-image | grep -q 'CGO_ENABLED=0' && echo "bin/manager-image: static, built as the Dockerfile builds it"

##@ Tools

$(LOCALBIN):
	mkdir -p $(LOCALBIN)

.PHONY: controller-gen
controller-gen: $(CONTROLLER_GEN)
$(CONTROLLER_GEN): | $(LOCALBIN)
	GOBIN=$(LOCALBIN) go install sigs.k8s.io/controller-tools/cmd/controller-gen@$(CONTROLLER_TOOLS_VERSION)

.PHONY: kube-router
kube-router: $(KUBE_ROUTER)
$(KUBE_ROUTER): | $(LOCALBIN)
	@echo "building kube-router $(KUBE_ROUTER_VERSION) (test-only dataplane; about 4 minutes the first time)"
	GOBIN=$(LOCALBIN)/kube-router-build CGO_ENABLED=0 go install github.com/cloudnativelabs/kube-router/v2/cmd/kube-router@$(KUBE_ROUTER_VERSION)
	mv $(LOCALBIN)/kube-router-build/kube-router $(KUBE_ROUTER) && rmdir $(LOCALBIN)/kube-router-build

.PHONY: helm
helm: $(HELM)
$(HELM): | $(LOCALBIN)
	GOBIN=$(LOCALBIN)/helm-build CGO_ENABLED=0 go install helm.sh/helm/v3/cmd/helm@$(HELM_VERSION)
	mv $(LOCALBIN)/helm-build/helm $(HELM) && rmdir $(LOCALBIN)/helm-build
	ln -sf $(notdir $(HELM)) $(LOCALBIN)/helm

.PHONY: golangci-lint
golangci-lint: $(GOLANGCI_LINT)
$(GOLANGCI_LINT): | $(LOCALBIN)
	GOBIN=$(LOCALBIN) go install github.com/golangci/golangci-lint/v2/cmd/golangci-lint@$(GOLANGCI_LINT_VERSION)
