# Sourced by the tool scripts that build or fetch Go modules (deploy/helm-tool.sh,
# deploy/kubeconform-tool.sh): `env "${go_env[@]}" go ...`, with $root (the project) and $bin_dir
# set. Everything Go writes stays in the project's .cache/. GOFLAGS is replaced, not inherited, so
# a developer's -mod=vendor or the like cannot break a module-mode install. GOTOOLCHAIN=local: use
# the installed Go, never download another toolchain. CGO_ENABLED=0, as the tools' own releases.
# shellcheck shell=bash
go_env=(
    GOBIN="$bin_dir"
    GOPATH="$root/.cache/go"
    GOMODCACHE="$root/.cache/go/mod"
    GOCACHE="$root/.cache/go/build"
    GOFLAGS="-trimpath"
    GOTOOLCHAIN=local
    CGO_ENABLED=0
)
