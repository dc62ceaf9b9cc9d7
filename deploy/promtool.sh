#!/usr/bin/env bash
# Build a real promtool (Prometheus's own checker of the text exposition format) from source
# with the Go toolchain (no prebuilt download is possible on this project's machines) into
# the git-ignored .cache/bin/promtool, once. Prints the binary's absolute path on stdout;
# progress goes to stderr.
#
#   deploy/promtool.sh                                   # build if missing (or another version), print the path
#   PROMETHEUS_VERSION=v0.316.0 deploy/promtool.sh       # another release (Go module versions: v0.3XX.Y is 3.XX.Y)
#
# Built with the tag `remove_all_sd`: Prometheus leaves out its service-discovery plugins (AWS,
# Azure, GCE, ...), which promtool's checks of metrics and rules never use. The first build,
# from empty caches, downloads and compiles in 2 min 17 s on a quiet 2-core machine (1.8 GB of
# module and build cache in .cache/go); without the tag it took 6 min 17 s inside a CI run.
# Later runs only check the version stamp.
set -euo pipefail

PROMETHEUS_VERSION="${PROMETHEUS_VERSION:-v0.316.0}"
build_tags="remove_all_sd"
source "$(dirname "${BASH_SOURCE[0]}")/go-env.sh"
promtool="$bin_dir/promtool"
stamp="$bin_dir/promtool.version"
hold_build_lock promtool

if [[ -x "$promtool" && -f "$stamp" && "$(cat "$stamp")" == "$PROMETHEUS_VERSION $build_tags" ]]; then
    echo "$promtool"
    exit 0
fi

require_go promtool
echo "promtool: building promtool $PROMETHEUS_VERSION with $(go version) into $promtool" >&2
started=$(date +%s)
ldflags="-s -w -X github.com/prometheus/common/version.Version=$PROMETHEUS_VERSION"
env "${go_env[@]}" go install -tags "$build_tags" -ldflags "$ldflags" "github.com/prometheus/prometheus/cmd/promtool@$PROMETHEUS_VERSION" >&2
echo "$PROMETHEUS_VERSION $build_tags" >"$stamp"
echo "promtool: built $PROMETHEUS_VERSION in $(($(date +%s) - started))s" >&2
echo "$promtool"
