#!/usr/bin/env bash
# Build a real helm binary from source with the Go toolchain (no prebuilt download is
# possible on this project's machines) into the git-ignored .cache/bin/helm, once.
# Prints the binary's absolute path on stdout; progress goes to stderr.
#
#   deploy/helm-tool.sh                          # build if missing (or another version), print the path
#   HELM_VERSION=v3.22.0 deploy/helm-tool.sh     # another release
#
# The first build downloads helm's modules and compiles them (about 1.5 minutes on 2 cores,
# 1.2 GB of module and build cache in .cache/go); later runs only check the binary's version.
set -euo pipefail

HELM_VERSION="${HELM_VERSION:-v3.19.0}"
source "$(dirname "${BASH_SOURCE[0]}")/go-env.sh"
helm="$bin_dir/helm"
hold_build_lock helm

if [[ -x "$helm" && "$("$helm" version --template '{{.Version}}' 2>/dev/null || true)" == "$HELM_VERSION" ]]; then
    echo "$helm"
    exit 0
fi

require_go helm-tool
echo "helm-tool: building helm $HELM_VERSION with $(go version) into $helm" >&2
started=$(date +%s)

# helm's Makefile stamps the Kubernetes version it was built against (its client-go module's
# version, v0.X.Y -> 1.X) into the binary; without it `helm template` and `helm lint` assume
# Kubernetes 1.20. Read it from the release's go.mod, as the Makefile does.
gomod="$(env "${go_env[@]}" go mod download -json "helm.sh/helm/v3@$HELM_VERSION" |
    sed -n 's/^[[:space:]]*"GoMod": "\(.*\)",\{0,1\}$/\1/p')"
client_go="$(sed -n 's/^[[:space:]]*k8s\.io\/client-go v\([0-9]*\)\.\([0-9]*\)\..*/\1 \2/p' "$gomod")"
read -r client_major k8s_minor <<<"$client_go"
[[ -n "${k8s_minor:-}" ]] || { echo "helm-tool: no k8s.io/client-go version in $gomod" >&2; exit 1; }
k8s_major=$((client_major + 1))

ldflags="-s -w -X helm.sh/helm/v3/internal/version.version=$HELM_VERSION"
for package in helm.sh/helm/v3/pkg/chartutil helm.sh/helm/v3/pkg/lint/rules; do
    ldflags+=" -X $package.k8sVersionMajor=$k8s_major -X $package.k8sVersionMinor=$k8s_minor"
done
env "${go_env[@]}" go install -ldflags "$ldflags" "helm.sh/helm/v3/cmd/helm@$HELM_VERSION" >&2

echo "helm-tool: built $("$helm" version --short) (Kubernetes $k8s_major.$k8s_minor) in $(($(date +%s) - started))s" >&2
echo "$helm"
