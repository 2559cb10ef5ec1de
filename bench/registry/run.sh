#!/usr/bin/env bash
# Registry throughput: `hoist push` / `hoist pull` against `skopeo copy` and
# `docker push` / `docker pull` to and from one local docker-registry
# (distribution 2.8, plain HTTP on 127.0.0.1), measured in the same run.
#
#   bench/registry/run.sh [SIZE_MIB...] (default: 200 1024)
#   IMAGE=ARCHIVE bench/registry/run.sh   (a given image instead)
#
# Each image has 4 uncompressed layers, half random and half text-like
# files (as bench/archive makes them), loaded into a fresh hoist store;
# skopeo pushes the same docker archive (skopeo's blob-info cache is
# cleared before each of its pushes, so neither tool reuses an earlier
# compression). Then, per
# size and run:
#   push:  hoist push (compresses with gzip, uploads) vs skopeo copy
#          docker-archive: -> docker:// (compresses with gzip, uploads), each
#          to a new repository
#   pull:  hoist pull into an empty store vs skopeo copy docker:// -> oci:
#   no-op: hoist push of the unchanged image again (one manifest HEAD)
#   docker: a dockerd of the bench's own (its own socket, data root and
#          exec root, so it never touches another dockerd) loads the same
#          archive and pushes it to a new repository (compressing with
#          gzip), then, started again on an empty data root, pulls hoist's
#          push (download, verify, extract). It is restarted empty before
#          each, so it never mounts or skips a layer it knows.
# Reports medians of wall time, MB/s of image bytes, ratios to the fastest
# peer (and to each), the spread of the ratio over the runs (each run's
# fastest peer against hoist in the same run), the load average, and peak
# RSS from /usr/bin/time -v (docker's work is in the daemon, so no RSS is
# shown for it).
# Env: HOIST (binary, default target/release/hoist, built if missing),
# IMAGE (a `docker save` archive tagged bench:latest, e.g. a debootstrap
# root imported and saved by hoist, used in place of the generated image;
# the size is the archive's), RUNS (default 3), BENCH_DIR (scratch, default a temp dir; ~8x SIZE free),
# DOCKER=0 to leave docker out (it is required otherwise).
set -euo pipefail
cd "$(dirname "$0")/../.."

sizes=("$@")
if [[ -n ${IMAGE:-} ]]; then
  ((${#sizes[@]} == 0)) || { echo "IMAGE and SIZE_MIB exclude each other" >&2; exit 1; }
  sizes=($(($(stat -c %s "$IMAGE") >> 20)))
fi
((${#sizes[@]})) || sizes=(200 1024)
runs=${RUNS:-3}
hoist=${HOIST:-target/release/hoist}
if [[ -z ${HOIST:-} ]]; then
  cargo build --release -p hoist >&2
fi
hoist=$(realpath "$hoist")
use_docker=${DOCKER:-1}
tools=(skopeo docker-registry)
[[ $use_docker == 0 ]] || tools+=(docker dockerd)
for tool in "${tools[@]}"; do
  command -v "$tool" >/dev/null || { echo "$tool is required (DOCKER=0 leaves docker out)" >&2; exit 1; }
done
[[ -x /usr/bin/time ]] || { echo "/usr/bin/time is required (apt-get install time)" >&2; exit 1; }

work=${BENCH_DIR:-$(mktemp -d)}
mkdir -p "$work"
registry_pid=
dockerd_pid=
cleanup() {
  [[ -n $registry_pid ]] && kill "$registry_pid" 2>/dev/null || true
  stop_dockerd
  [[ -n ${BENCH_DIR:-} ]] || rm -rf "$work"
}

# ---- the bench's own dockerd, started on an empty data root
docker_sock=$work/docker/docker.sock
dock() { docker -H "unix://$docker_sock" "$@"; }
stop_dockerd() {
  [[ -n $dockerd_pid ]] || return 0
  kill "$dockerd_pid" 2>/dev/null || true
  wait "$dockerd_pid" 2>/dev/null || true
  dockerd_pid=
}
start_empty_dockerd() {
  stop_dockerd
  rm -rf "$work/docker"
  mkdir -p "$work/docker"
  dockerd --host "unix://$docker_sock" --data-root "$work/docker/data" \
    --exec-root "$work/docker/exec" --pidfile "$work/docker/dockerd.pid" \
    --iptables=false --ip6tables=false --bridge=none \
    >"$work/dockerd.log" 2>&1 &
  dockerd_pid=$!
  for _ in $(seq 120); do
    dock info >/dev/null 2>&1 && return 0
    sleep 0.5
  done
  cat "$work/dockerd.log" >&2
  exit 1
}
trap cleanup EXIT

# ---- the registry
port=$(python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])')
cat >"$work/registry.yml" <<YAML
version: 0.1
log:
  level: error
  accesslog:
    disabled: true
storage:
  filesystem:
    rootdirectory: $work/registry
http:
  addr: 127.0.0.1:$port
YAML
docker-registry serve "$work/registry.yml" >"$work/registry.log" 2>&1 &
registry_pid=$!
for _ in $(seq 100); do
  curl -fs "http://127.0.0.1:$port/v2/" >/dev/null 2>&1 && break
  sleep 0.1
done
reg=127.0.0.1:$port

# ---- an image of SIZE MiB as a docker archive: 4 layers, half random
make_image() {
  local size_mib=$1 out=$2 layers=4 i j
  local per_layer=$((size_mib / layers)) diff_ids=() layer_files=()
  local img=$work/img
  rm -rf "$img" && mkdir -p "$img"
  seq -f "line %g: the quick brown fox jumps over the lazy dog" 1 30000 >"$work/chunk.txt"
  for i in $(seq 1 $layers); do
    local d=$work/src$i half=$((per_layer / 2))
    mkdir -p "$d/random" "$d/text"
    for j in $(seq 1 $(((half + 3) / 4))); do
      head -c $((4 << 20)) /dev/urandom >"$d/random/r$j.bin"
    done
    for j in $(seq 1 $half); do
      { echo "file $j of layer $i"; cat "$work/chunk.txt"; } | head -c $((1 << 20)) >"$d/text/t$j.txt" || true
    done
    tar --sort=name --mtime=@0 --owner=0 --group=0 --numeric-owner -C "$d" -cf "$img/layer$i.tar" .
    rm -rf "$d"
    local sum
    sum=$(sha256sum "$img/layer$i.tar" | cut -d' ' -f1)
    mv "$img/layer$i.tar" "$img/$sum.tar"
    diff_ids+=("\"sha256:$sum\"")
    layer_files+=("\"$sum.tar\"")
  done
  local ids files csum
  ids=$(IFS=,; echo "${diff_ids[*]}")
  files=$(IFS=,; echo "${layer_files[*]}")
  printf '{"architecture":"amd64","os":"linux","config":{},"rootfs":{"type":"layers","diff_ids":[%s]}}' "$ids" >"$img/config.json"
  csum=$(sha256sum "$img/config.json" | cut -d' ' -f1)
  mv "$img/config.json" "$img/$csum.json"
  printf '[{"Config":"%s.json","RepoTags":["bench:latest"],"Layers":[%s]}]' "$csum" "$files" >"$img/manifest.json"
  tar -C "$img" -cf "$out" .
  rm -rf "$img"
}

# ---- measurement: NAME CMD... -> appends "seconds rss_kib" to $work/NAME.txt
measure() {
  local key=$1; shift
  sync
  /usr/bin/time -v -o "$work/time.txt" "$@" >/dev/null 2>"$work/stderr.txt" || {
    cat "$work/stderr.txt" >&2; exit 1; }
  local wall rss secs
  wall=$(grep 'Elapsed (wall clock)' "$work/time.txt" | awk '{print $NF}')
  rss=$(grep 'Maximum resident set size' "$work/time.txt" | awk '{print $NF}')
  secs=$(echo "$wall" | awk -F: '{ if (NF==3) print $1*3600+$2*60+$3; else print $1*60+$2 }')
  echo "$secs $rss" >>"$work/$key.txt"
}

median() { sort -n | awk '{ a[NR] = $1 } END { print (NR % 2 ? a[(NR + 1) / 2] : (a[NR / 2] + a[NR / 2 + 1]) / 2) }'; }

rows=()
load_before=$(cut -d' ' -f1 /proc/loadavg)
for size in "${sizes[@]}"; do
  if [[ -n ${IMAGE:-} ]]; then
    cp "$IMAGE" "$work/image.tar"
  else
    make_image "$size" "$work/image.tar"
  fi
  bytes=$(stat -c %s "$work/image.tar")
  echo "image: $((bytes >> 20)) MiB, ${IMAGE:-4 uncompressed layers}" >&2
  rm -f "$work"/*-"$size".txt
  for run in $(seq 1 "$runs"); do
    echo "  run $run/$runs" >&2
    # Fresh stores, so every hoist push compresses again.
    rm -rf "$work/push-root" "$work/pull-root" "$work/pulled"
    HOIST_ROOT=$work/push-root "$hoist" load -q -i "$work/image.tar"
    HOIST_ROOT=$work/push-root "$hoist" tag bench:latest "$reg/hoist-$size-$run/bench:latest"
    measure "hoist-push-$size" env HOIST_ROOT="$work/push-root" "$hoist" push -q "$reg/hoist-$size-$run/bench:latest"
    # skopeo remembers compressed digests in its blob-info cache and would
    # mount instead of compressing again: forget them, as hoist's fresh
    # store does.
    rm -f /var/lib/containers/cache/blob-info-cache-v1.* \
      "${XDG_DATA_HOME:-$HOME/.local/share}"/containers/cache/blob-info-cache-v1.*
    measure "skopeo-push-$size" skopeo copy -q --dest-tls-verify=false \
      "docker-archive:$work/image.tar" "docker://$reg/skopeo-$size-$run/bench:latest"
    measure "noop-push-$size" env HOIST_ROOT="$work/push-root" "$hoist" push -q "$reg/hoist-$size-$run/bench:latest"
    measure "hoist-pull-$size" env HOIST_ROOT="$work/pull-root" "$hoist" pull -q "$reg/hoist-$size-$run/bench:latest"
    measure "skopeo-pull-$size" skopeo copy -q --src-tls-verify=false \
      "docker://$reg/hoist-$size-$run/bench:latest" "oci:$work/pulled:bench:latest"
    if [[ $use_docker != 0 ]]; then
      # dockerd treats 127.0.0.0/8 as an insecure registry: plain HTTP.
      start_empty_dockerd
      dock load -q -i "$work/image.tar" >/dev/null
      dock tag bench:latest "$reg/docker-$size-$run/bench:latest"
      measure "docker-push-$size" docker -H "unix://$docker_sock" push -q "$reg/docker-$size-$run/bench:latest"
      start_empty_dockerd
      measure "docker-pull-$size" docker -H "unix://$docker_sock" pull -q "$reg/hoist-$size-$run/bench:latest"
      stop_dockerd
    fi
  done
  stat_of() { # KEY COLUMN -> median
    awk -v c="$2" '{ print $c }' "$work/$1-$size.txt" | median
  }
  for op in push pull; do
    h=$(stat_of "hoist-$op" 1); s=$(stat_of "skopeo-$op" 1)
    hr=$(stat_of "hoist-$op" 2); sr=$(stat_of "skopeo-$op" 2)
    d=0
    [[ $use_docker == 0 ]] || d=$(stat_of "docker-$op" 1)
    # The ratio of each run (its fastest peer's time / hoist's, the same
    # run's), for the spread.
    if [[ $use_docker != 0 ]]; then
      per_run=$(paste "$work/hoist-$op-$size.txt" "$work/skopeo-$op-$size.txt" "$work/docker-$op-$size.txt" |
        awk '{ f = $3 < $5 ? $3 : $5; print f / $1 }')
    else
      per_run=$(paste "$work/hoist-$op-$size.txt" "$work/skopeo-$op-$size.txt" | awk '{ print $3 / $1 }')
    fi
    spread=$(echo "$per_run" | sort -n | awk 'NR == 1 { lo = $1 } { hi = $1 } END { printf "%.2f-%.2f", lo, hi }')
    peak=$(awk '{ print $2 }' "$work/hoist-$op-$size.txt" | sort -n | tail -1)
    rows+=("$(awk -v n="$size" -v op="$op" -v b="$bytes" -v h="$h" -v s="$s" -v d="$d" -v hr="$hr" -v sr="$sr" 'BEGIN {
      line = sprintf("%5d MiB %-5s hoist %6.2f s %5.0f MB/s %6.1f MiB RSS | skopeo %6.2f s %5.0f MB/s %6.1f MiB RSS",
        n, op, h, b / h / 1e6, hr / 1024, s, b / s / 1e6, sr / 1024)
      fastest = s
      if (d > 0) {
        line = line sprintf(" | docker %6.2f s %5.0f MB/s", d, b / d / 1e6)
        if (d < fastest) fastest = d
        printf "%s | %.2fx the fastest peer (skopeo %.2fx, docker %.2fx)", line, fastest / h, s / h, d / h
      } else {
        printf "%s | %.2fx skopeo", line, s / h
      }
    }') | runs ${spread}x, hoist peak RSS $((peak / 1024)) MiB")
  done
  n=$(stat_of "noop-push" 1); nr=$(stat_of "noop-push" 2)
  rows+=("$(awk -v n="$size" -v t="$n" -v r="$nr" 'BEGIN { printf "%5d MiB no-op re-push: hoist %.0f ms, %.1f MiB RSS", n, t * 1000, r / 1024 }')")
done

echo
echo "registry: docker-registry $(docker-registry --version | awk '{print $NF}') on 127.0.0.1, $(nproc) CPUs, load average $load_before at the start and $(cut -d' ' -f1 /proc/loadavg) at the end, median of $runs runs (runs: min-max of each run's ratio)"
printf '%s\n' "${rows[@]}"
