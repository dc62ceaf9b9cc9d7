#!/usr/bin/env bash
# Build a real promtool (Prometheus's own checker of the text exposition format) from source
# with the Go toolchain (no prebuilt download is possible on this project's machines) into
# the git-ignored .cache/bin/promtool, once. Prints the binary's absolute path on stdout;
# progress goes to stderr.
#
#   deploy/promtool.sh                                   # build if missing (or another version), print the path
#   PROMETHEUS_VERSION=v0.316.0 deploy/promtool.sh       # another release (Go module versions: v0.3XX.Y is 3.XX.Y)
#
# The first build downloads Prometheus's modules and compiles promtool (see the README,
# "Observability", for how long it takes); later runs only check the binary's version.
set -euo pipefail

PROMETHEUS_VERSION="${PROMETHEUS_VERSION:-v0.316.0}"
root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
bin_dir="$root/.cache/bin"
promtool="$bin_dir/promtool"
stamp="$bin_dir/promtool.version"

if [[ -x "$promtool" && -f "$stamp" && "$(cat "$stamp")" == "$PROMETHEUS_VERSION" ]]; then
    echo "$promtool"
    exit 0
fi

command -v go >/dev/null || { echo "promtool: go is not on PATH; it is needed to build promtool" >&2; exit 1; }
mkdir -p "$bin_dir" "$root/.cache/go"
# Everything Go writes stays in the project's .cache/ (shared with deploy/helm-tool.sh). GOFLAGS
# is replaced, not inherited; GOTOOLCHAIN=local: use the installed Go, never download another
# toolchain. CGO_ENABLED=0, as Prometheus's own releases.
go_env=(
    GOBIN="$bin_dir"
    GOPATH="$root/.cache/go"
    GOMODCACHE="$root/.cache/go/mod"
    GOCACHE="$root/.cache/go/build"
    GOFLAGS="-trimpath"
    GOTOOLCHAIN=local
    CGO_ENABLED=0
)
echo "promtool: building promtool $PROMETHEUS_VERSION with $(go version) into $promtool" >&2
started=$(date +%s)
ldflags="-s -w -X github.com/prometheus/common/version.Version=$PROMETHEUS_VERSION"
env "${go_env[@]}" go install -ldflags "$ldflags" "github.com/prometheus/prometheus/cmd/promtool@$PROMETHEUS_VERSION" >&2
echo "$PROMETHEUS_VERSION" >"$stamp"
echo "promtool: built $PROMETHEUS_VERSION in $(($(date +%s) - started))s" >&2
echo "$promtool"
