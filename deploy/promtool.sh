#!/usr/bin/env bash
# Build a real promtool (Prometheus's own checker of the text exposition format) from source
# with the Go toolchain (no prebuilt download is possible on this project's machines) into
# the git-ignored .cache/bin/promtool, once. Prints the binary's absolute path on stdout;
# progress goes to stderr.
#
#   deploy/promtool.sh                                   # build if missing (or another version), print the path
#   PROMETHEUS_VERSION=v0.316.0 deploy/promtool.sh       # another release (Go module versions: v0.3XX.Y is 3.XX.Y)
#
# The first build downloads Prometheus's modules and compiles promtool: 36 minutes (11 of CPU)
# and about 2 GB of module and build cache in .cache/go on this project's shared 2-core machine;
# later runs only check the version stamp.
set -euo pipefail

PROMETHEUS_VERSION="${PROMETHEUS_VERSION:-v0.316.0}"
source "$(dirname "${BASH_SOURCE[0]}")/go-env.sh"
promtool="$bin_dir/promtool"
stamp="$bin_dir/promtool.version"

if [[ -x "$promtool" && -f "$stamp" && "$(cat "$stamp")" == "$PROMETHEUS_VERSION" ]]; then
    echo "$promtool"
    exit 0
fi

require_go promtool
echo "promtool: building promtool $PROMETHEUS_VERSION with $(go version) into $promtool" >&2
started=$(date +%s)
ldflags="-s -w -X github.com/prometheus/common/version.Version=$PROMETHEUS_VERSION"
env "${go_env[@]}" go install -ldflags "$ldflags" "github.com/prometheus/prometheus/cmd/promtool@$PROMETHEUS_VERSION" >&2
echo "$PROMETHEUS_VERSION" >"$stamp"
echo "promtool: built $PROMETHEUS_VERSION in $(($(date +%s) - started))s" >&2
echo "$promtool"
