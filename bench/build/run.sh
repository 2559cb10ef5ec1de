#!/usr/bin/env bash
# Whole-build benchmark: hoist against `docker build` (BuildKit), measured
# in the same run on the same machine, reported as ratios (hoist / docker).
#
#   bench/build/run.sh [RUNS]        (root; dockerd running or startable)
#
# Cases: the testdata contexts on the same busybox base, built cold
# (--no-cache) and as a no-op rebuild (everything cached), plus a
# Dockerfile of 20 `RUN true` steps whose time is almost all per-step
# overhead (sandbox setup, layer commit, cache bookkeeping).
# Builds use --network none so both sides do the same work.
set -euo pipefail
cd "$(dirname "$0")/../.."
runs=${1:-5}
docker=${DOCKER_CLI:-/usr/bin/docker}
export DOCKER_BUILDKIT=1

cargo build --release --locked -q
hoist=$PWD/target/release/hoist
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT
export HOIST_ROOT=$work/store

if ! "$docker" info >/dev/null 2>&1; then
  dockerd --iptables=false --bridge=none >"$work/dockerd.log" 2>&1 &
  dockerd_pid=$!
  trap 'kill $dockerd_pid 2>/dev/null; rm -rf "$work"' EXIT
  for _ in $(seq 60); do "$docker" info >/dev/null 2>&1 && break; sleep 1; done
fi

testdata/base/make-busybox-rootfs.sh "$work/busybox.tar" 2>/dev/null
"$hoist" import "$work/busybox.tar" busybox:latest >/dev/null
"$hoist" save busybox:latest -o "$work/busybox-docker.tar"
"$docker" load -i "$work/busybox-docker.tar" >/dev/null

mkdir -p "$work/many-runs"
{
  echo "FROM busybox"
  for i in $(seq 20); do echo "RUN true # step $i"; done
} >"$work/many-runs/Dockerfile"

# Prints the median wall time in seconds of RUNS runs of a command.
median() {
  local times=()
  for _ in $(seq "$runs"); do
    local start end
    start=$(date +%s.%N)
    "$@" >/dev/null 2>&1 || { echo "failed: $*" >&2; exit 1; }
    end=$(date +%s.%N)
    times+=("$(echo "$end - $start" | bc)")
  done
  printf '%s\n' "${times[@]}" | sort -n | awk '{a[NR]=$1} END {print a[int((NR+1)/2)]}'
}

printf '%-22s %-8s %10s %10s %8s\n' case mode hoist docker ratio
for ctx in testdata/contexts/hello testdata/contexts/build-config \
    testdata/contexts/build-whiteouts testdata/contexts/build-multistage "$work/many-runs"; do
  name=$(basename "$ctx")
  for mode in cold noop; do
    flags=(--network none -t "bench-$name:latest")
    [[ $mode == cold ]] && flags+=(--no-cache)
    # Warm both caches (and page caches) once before timing.
    "$hoist" build -q "${flags[@]}" "$ctx" >/dev/null
    "$docker" build -q "${flags[@]}" "$ctx" >/dev/null
    h=$(median "$hoist" build -q "${flags[@]}" "$ctx")
    d=$(median "$docker" build -q "${flags[@]}" "$ctx")
    printf '%-22s %-8s %9.3fs %9.3fs %8.2f\n' "$name" "$mode" "$h" "$d" "$(echo "$h / $d" | bc -l)"
  done
done
