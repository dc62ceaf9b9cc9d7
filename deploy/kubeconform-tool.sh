#!/usr/bin/env bash
# kubeconform and the Kubernetes schemas it validates against, both from the Go module proxy
# (no prebuilt binary and no schema repository is reachable from this project's machines),
# into the git-ignored .cache/, once:
#   .cache/bin/kubeconform           built from source with `go install`
#   .cache/kubernetes-schemas/       JSON schemas converted by deploy/kubernetes_schemas.py from
#     v<release>-standalone-strict/    the OpenAPI v3 documents of k8s.io/kubernetes@<release>
#     crds/monitoring.coreos.com/      prometheus-operator's ServiceMonitor CRD (its Go module)
#
#   deploy/kubeconform-tool.sh                 # build and convert if missing; print the binary's path
#   deploy/kubeconform-tool.sh check [FLAG...] FILE...|-
#                                              # kubeconform -strict against those schemas, nothing
#                                              # missing allowed; extra kubeconform flags pass through:
#   helm template wallet deploy/helm/streamwallet | deploy/kubeconform-tool.sh check -summary -
#
#   KUBECONFORM_VERSION, KUBERNETES_VERSION (a k8s.io/kubernetes module version, v1.34.4 is
#   Kubernetes 1.34.4), PROMETHEUS_OPERATOR_VERSION choose other releases.
#
# A cold run downloads about 22 MB of module zips and builds kubeconform (README of the chart,
# "Validation", has the figures); a warm one checks two version stamps.
set -euo pipefail

KUBECONFORM_VERSION="${KUBECONFORM_VERSION:-v0.8.0}"
KUBERNETES_VERSION="${KUBERNETES_VERSION:-v1.34.4}"
PROMETHEUS_OPERATOR_VERSION="${PROMETHEUS_OPERATOR_VERSION:-v0.85.0}"
CRD_FILES=(jsonnet/prometheus-operator/servicemonitors-crd.json)
CONVERTER_REVISION=1  # bump when deploy/kubernetes_schemas.py writes something else
root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
bin_dir="$root/.cache/bin"
kubeconform="$bin_dir/kubeconform"
kubeconform_stamp="$bin_dir/kubeconform.version"
schemas="$root/.cache/kubernetes-schemas"
schemas_stamp="$schemas/SOURCES"
schemas_wanted="k8s.io/kubernetes@$KUBERNETES_VERSION prometheus-operator@$PROMETHEUS_OPERATOR_VERSION converter=$CONVERTER_REVISION"

# Everything Go writes stays in the project's .cache/ (shared with deploy/helm-tool.sh). GOFLAGS
# is replaced, not inherited; GOTOOLCHAIN=local: use the installed Go, never download another.
go_env=(
    GOBIN="$bin_dir"
    GOPATH="$root/.cache/go"
    GOMODCACHE="$root/.cache/go/mod"
    GOCACHE="$root/.cache/go/build"
    GOFLAGS="-trimpath"
    GOTOOLCHAIN=local
    CGO_ENABLED=0
)

need_go() {
    command -v go >/dev/null || { echo "kubeconform-tool: go is not on PATH; it is needed to $1" >&2; exit 1; }
}

# The folder a module version was extracted to (downloaded on first use).
module_dir() {
    local json
    json="$(env "${go_env[@]}" go mod download -json "$1")"
    if grep -q '"Error"' <<<"$json"; then
        echo "kubeconform-tool: go mod download $1 failed:" >&2
        echo "$json" >&2
        exit 1
    fi
    sed -n 's/^[[:space:]]*"Dir": "\(.*\)",\{0,1\}$/\1/p' <<<"$json"
}

build_kubeconform() {
    if [[ -x "$kubeconform" && -f "$kubeconform_stamp" && "$(cat "$kubeconform_stamp")" == "$KUBECONFORM_VERSION" ]]; then
        return
    fi
    need_go "build kubeconform"
    mkdir -p "$bin_dir"
    echo "kubeconform-tool: building kubeconform $KUBECONFORM_VERSION with $(go version)" >&2
    local started=$SECONDS
    env "${go_env[@]}" go install -ldflags "-s -w -X main.version=$KUBECONFORM_VERSION" \
        "github.com/yannh/kubeconform/cmd/kubeconform@$KUBECONFORM_VERSION" >&2
    echo "$KUBECONFORM_VERSION" >"$kubeconform_stamp"
    echo "kubeconform-tool: built kubeconform in $((SECONDS - started))s" >&2
}

convert_schemas() {
    if [[ -f "$schemas_stamp" && "$(cat "$schemas_stamp")" == "$schemas_wanted" ]]; then
        return
    fi
    need_go "download the Kubernetes OpenAPI documents"
    echo "kubeconform-tool: converting $schemas_wanted into $schemas" >&2
    local started=$SECONDS kubernetes operator crds=()
    kubernetes="$(module_dir "k8s.io/kubernetes@$KUBERNETES_VERSION")"
    operator="$(module_dir "github.com/prometheus-operator/prometheus-operator@$PROMETHEUS_OPERATOR_VERSION")"
    for file in "${CRD_FILES[@]}"; do crds+=(--crd "$operator/$file"); done
    "${PYTHON:-python3}" "$root/deploy/kubernetes_schemas.py" --openapi-v3 "$kubernetes/api/openapi-spec/v3" \
        --release "$KUBERNETES_VERSION" "${crds[@]}" --out "$schemas" >&2
    echo "$schemas_wanted" >"$schemas_stamp"
    echo "kubeconform-tool: schemas ready in $((SECONDS - started))s ($(du -sh "$schemas" | cut -f1))" >&2
}

build_kubeconform
convert_schemas

if [[ "${1:-}" == "check" ]]; then
    shift
    exec "$kubeconform" -strict -kubernetes-version "${KUBERNETES_VERSION#v}" \
        -schema-location "$schemas/{{ .NormalizedKubernetesVersion }}-standalone{{ .StrictSuffix }}/{{ .ResourceKind }}{{ .KindSuffix }}.json" \
        -schema-location "$schemas/crds/{{ .Group }}/{{ .ResourceKind }}_{{ .ResourceAPIVersion }}.json" \
        "$@"
fi
echo "$kubeconform"
