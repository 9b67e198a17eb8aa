#!/usr/bin/env bash
# The walkthrough on the real one-node cluster of `make realnode-up`:
# installs the chart with the locally built operator image, deploys the
# walkthrough's workloads, applies the sample WorkloadIsolation, shows
# traffic before and after, and leaves the cluster up for kubectl and helm.
# Usage: hack/realnode-demo/run.sh <bin dir with kubectl and helm>
set -euo pipefail
cd "$(dirname "$0")/../.."
bin="$1"
export KUBECONFIG=/var/lib/isolator-realnode/pki/admin.kubeconfig
kubectl() { "$bin/kubectl" "$@"; }
helm() { "$bin/helm" "$@"; }
step() { printf '\n\033[1m== %s\033[0m\n' "$*"; }
get() { # get <namespace> <deployment> <url>: one request from that pod
  kubectl exec -n "$1" "deploy/$2" -- /probe get --timeout 2s "$3" | sed "s|^|  from $1/$2: |"
}

step "helm install of charts/isolator with the image built from this tree"
helm upgrade --install isolator charts/isolator --namespace isolator-system --create-namespace \
  --set image.repository=isolator.local/isolator --set image.tag=dev --set image.pullPolicy=Never --wait --timeout 3m
kubectl -n isolator-system get pods -o wide

step "the walkthrough's workloads"
kubectl apply -f hack/realnode-demo/walkthrough.yaml
kubectl wait --for=condition=Available --timeout=2m -n local-ai deploy/local-ai
kubectl wait --for=condition=Available --timeout=2m -n nginx deploy/ingress-nginx-controller
kubectl wait --for=condition=Available --timeout=2m -n team-a deploy/client
ip="$(kubectl -n local-ai get svc local-ai -o jsonpath='{.spec.clusterIP}')"
url="http://$ip:8080/v1/models"

step "before isolation: everyone reaches LocalAI ($url)"
get nginx ingress-nginx-controller "$url"
get team-a client "$url"

step "apply the sample WorkloadIsolation"
kubectl apply -f config/samples/isolation_v1alpha1_workloadisolation.yaml
kubectl wait --for=condition=Ready --timeout=1m -n local-ai workloadisolation/local-ai
kubectl get workloadisolations -A
kubectl -n local-ai get networkpolicies

step "after isolation: only the ingress-nginx controller reaches LocalAI"
sleep 1
get nginx ingress-nginx-controller "$url"
get team-a client "$url"

cat <<EOT

The cluster stays up. Try it:
  export KUBECONFIG=$KUBECONFIG
  export PATH=$bin:\$PATH
  kubectl get wi -A
  kubectl -n local-ai describe wi local-ai
  kubectl exec -n team-a deploy/client -- /probe get $url
  helm -n isolator-system status isolator
Stop it and remove everything it made on this host with: make realnode-down
EOT
