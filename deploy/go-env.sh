# Sourced by the scripts that build a Go tool from source into .cache/bin (deploy/helm-tool.sh,
# deploy/promtool.sh): where everything Go writes goes, and the environment `go install` runs in.
# Sets root, bin_dir and go_env; fails when go is missing.
root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
bin_dir="$root/.cache/bin"

require_go() {
    command -v go >/dev/null || { echo "$1: go is not on PATH; it is needed to build $1" >&2; exit 1; }
    mkdir -p "$bin_dir" "$root/.cache/go"
}

# Everything Go writes stays in the project's .cache/. GOFLAGS is replaced, not inherited, so a
# developer's -mod=vendor or the like cannot break a module-mode install. GOTOOLCHAIN=local: use
# the installed Go, never download another toolchain. CGO_ENABLED=0, as both tools' own releases.
go_env=(
    GOBIN="$bin_dir"
    GOPATH="$root/.cache/go"
    GOMODCACHE="$root/.cache/go/mod"
    GOCACHE="$root/.cache/go/build"
    GOFLAGS="-trimpath"
    GOTOOLCHAIN=local
    CGO_ENABLED=0
)

# One build of a tool at a time: `./sw test` builds the tools in the background while the tests
# run (sw, prebuild_go_tools), and a test may ask for the same tool meanwhile. The second caller
# waits here for the first, then finds the tool built. Held until the script exits (or `exec 9>&-`).
hold_build_lock() {
    mkdir -p "$bin_dir"
    exec 9>"$bin_dir/.$1.lock"
    flock 9
}
