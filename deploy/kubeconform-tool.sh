#!/usr/bin/env bash
# kubeconform and the Kubernetes schemas it validates against, both from the Go module proxy
# (no prebuilt binary and no schema repository is reachable from this project's machines),
# into the git-ignored .cache/, once:
#   .cache/bin/kubeconform           built from source with `go install`
#   .cache/kubernetes-schemas/       JSON schemas converted by deploy/kubernetes_schemas.py from
#     v<release>-standalone-strict/    the OpenAPI v3 documents of k8s.io/kubernetes@<release>,
#                                      for each release in KUBERNETES_VERSIONS
#     crds/monitoring.coreos.com/      prometheus-operator's ServiceMonitor and PrometheusRule CRDs (its Go module)
#
#   deploy/kubeconform-tool.sh                 # build and convert what is missing; print the binary's path
#   deploy/kubeconform-tool.sh check [FLAG...] FILE...|-
#                                              # kubeconform -strict against those schemas for
#                                              # KUBERNETES_VERSION, nothing missing allowed; extra
#                                              # kubeconform flags pass through:
#   helm template wallet deploy/helm/streamwallet | deploy/kubeconform-tool.sh check -summary -
#
#   KUBERNETES_VERSIONS (k8s.io/kubernetes module versions: v1.34.4 is Kubernetes 1.34.4; by
#   default the chart's oldest supported minor and a current one), KUBERNETES_VERSION (the one
#   `check` uses; by default the last), KUBECONFORM_VERSION, PROMETHEUS_OPERATOR_VERSION choose
#   other releases.
#
# A cold run downloads about 25 MB of module zips and builds kubeconform (the chart's README,
# "Validation", has the figures); a warm one checks version stamps.
set -euo pipefail

KUBECONFORM_VERSION="${KUBECONFORM_VERSION:-v0.8.0}"
KUBERNETES_VERSIONS="${KUBERNETES_VERSIONS:-v1.25.16 v1.34.4}"
KUBERNETES_VERSION="${KUBERNETES_VERSION:-${KUBERNETES_VERSIONS##* }}"
PROMETHEUS_OPERATOR_VERSION="${PROMETHEUS_OPERATOR_VERSION:-v0.85.0}"
CRD_FILES=(jsonnet/prometheus-operator/servicemonitors-crd.json jsonnet/prometheus-operator/prometheusrules-crd.json)
CONVERTER_REVISION=2  # bump when deploy/kubernetes_schemas.py writes something else (or CRD_FILES change)
root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
bin_dir="$root/.cache/bin"
kubeconform="$bin_dir/kubeconform"
kubeconform_stamp="$bin_dir/kubeconform.version"
schemas="$root/.cache/kubernetes-schemas"

source "$root/deploy/go-env.sh"

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

# The schemas of one Kubernetes release (and the CRDs), unless its stamp says they are there.
convert_schemas() {
    local release="$1"
    local stamp="$schemas/SOURCES-$release"
    local wanted="k8s.io/kubernetes@$release prometheus-operator@$PROMETHEUS_OPERATOR_VERSION converter=$CONVERTER_REVISION"
    if [[ -f "$stamp" && "$(cat "$stamp")" == "$wanted" ]]; then
        return
    fi
    need_go "download the Kubernetes OpenAPI documents"
    echo "kubeconform-tool: converting $wanted into $schemas" >&2
    local started=$SECONDS kubernetes operator crds=()
    kubernetes="$(module_dir "k8s.io/kubernetes@$release")"
    operator="$(module_dir "github.com/prometheus-operator/prometheus-operator@$PROMETHEUS_OPERATOR_VERSION")"
    for file in "${CRD_FILES[@]}"; do crds+=(--crd "$operator/$file"); done
    "${PYTHON:-python3}" "$root/deploy/kubernetes_schemas.py" --openapi-v3 "$kubernetes/api/openapi-spec/v3" \
        --release "$release" "${crds[@]}" --out "$schemas" >&2
    echo "$wanted" >"$stamp"
    echo "kubeconform-tool: schemas of $release ready in $((SECONDS - started))s" >&2
}

hold_build_lock kubeconform
build_kubeconform
for release in $KUBERNETES_VERSIONS $KUBERNETES_VERSION; do
    convert_schemas "$release"
done
exec 9>&-  # built: checks need no lock

if [[ "${1:-}" == "check" ]]; then
    shift
    exec "$kubeconform" -strict -kubernetes-version "${KUBERNETES_VERSION#v}" \
        -schema-location "$schemas/{{ .NormalizedKubernetesVersion }}-standalone{{ .StrictSuffix }}/{{ .ResourceKind }}{{ .KindSuffix }}.json" \
        -schema-location "$schemas/crds/{{ .Group }}/{{ .ResourceKind }}_{{ .ResourceAPIVersion }}.json" \
        "$@"
fi
echo "$kubeconform"
