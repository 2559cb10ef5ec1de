#!/usr/bin/env bash
# Archive throughput: `hoist load` / `hoist save` of a ~1 GiB image against
# `skopeo copy` to and from a local oci: layout, measured in the same run.
#
#   bench/archive/run.sh [SIZE_MIB]        (default 1024)
#
# The image has 4 layers, half random (incompressible) and half text-like
# (compressible) files, written as a docker archive with uncompressed layers
# (what `docker save` writes). Each tool gets the same warm page cache.
# Reports MB/s (archive bytes / wall time) and peak RSS from /usr/bin/time -v.
# Env: HOIST (binary, default target/release/hoist, built if missing),
# BENCH_DIR (scratch space, default a temp dir; needs ~4x SIZE free).
set -euo pipefail
cd "$(dirname "$0")/../.."

size_mib=${1:-1024}
hoist=${HOIST:-target/release/hoist}
if [[ -z ${HOIST:-} ]]; then
  cargo build --release -p hoist >&2
fi
command -v skopeo >/dev/null || { echo "skopeo is required" >&2; exit 1; }
[[ -x /usr/bin/time ]] || { echo "/usr/bin/time is required (apt-get install time)" >&2; exit 1; }

work=${BENCH_DIR:-$(mktemp -d)}
mkdir -p "$work"
trap '[[ -z ${BENCH_DIR:-} ]] && rm -rf "$work"' EXIT

# ---- the image: 4 layers of size/4, each half random, half compressible
layers=4
per_layer=$((size_mib / layers))
diff_ids=()
layer_files=()
mkdir -p "$work/img"
seq -f "line %g: the quick brown fox jumps over the lazy dog" 1 30000 >"$work/chunk.txt"
for i in $(seq 1 $layers); do
  d=$work/src$i
  mkdir -p "$d/random" "$d/text"
  half=$((per_layer / 2))
  # Random: 4 MiB files.
  for j in $(seq 1 $((half / 4))); do
    head -c $((4 << 20)) /dev/urandom >"$d/random/r$j.bin"
  done
  # Compressible: 1 MiB files of numbered text lines (ratio ~5:1 with gzip),
  # each with its own first line so no two files are identical.
  for j in $(seq 1 $half); do
    { echo "file $j of layer $i"; cat "$work/chunk.txt"; } | head -c $((1 << 20)) >"$d/text/t$j.txt" || true
  done
  tar --sort=name --mtime=@0 --owner=0 --group=0 --numeric-owner -C "$d" -cf "$work/img/layer$i.tar" .
  rm -rf "$d"
  sum=$(sha256sum "$work/img/layer$i.tar" | cut -d' ' -f1)
  mv "$work/img/layer$i.tar" "$work/img/$sum.tar"
  diff_ids+=("\"sha256:$sum\"")
  layer_files+=("\"$sum.tar\"")
done
ids=$(IFS=,; echo "${diff_ids[*]}")
files=$(IFS=,; echo "${layer_files[*]}")
printf '{"architecture":"amd64","os":"linux","config":{},"rootfs":{"type":"layers","diff_ids":[%s]}}' "$ids" >"$work/img/config.json"
csum=$(sha256sum "$work/img/config.json" | cut -d' ' -f1)
mv "$work/img/config.json" "$work/img/$csum.json"
printf '[{"Config":"%s.json","RepoTags":["bench:latest"],"Layers":[%s]}]' "$csum" "$files" >"$work/img/manifest.json"
tar -C "$work/img" -cf "$work/image.tar" .
rm -rf "$work/img"
bytes=$(stat -c %s "$work/image.tar")
echo "image: $((bytes >> 20)) MiB docker archive, $layers uncompressed layers" >&2

# ---- measurement helper: NAME CMD... -> "NAME  MB/s  peak RSS"
results=()
measure() {
  local name=$1; shift
  sync
  /usr/bin/time -v -o "$work/time.txt" "$@" >/dev/null
  local wall rss secs cpu
  cpu=$(awk -F': ' '/User time|System time/ { t += $2 } END { printf "%.2f", t }' "$work/time.txt")
  wall=$(grep 'Elapsed (wall clock)' "$work/time.txt" | awk '{print $NF}')
  rss=$(grep 'Maximum resident set size' "$work/time.txt" | awk '{print $NF}')
  secs=$(echo "$wall" | awk -F: '{ if (NF==3) print $1*3600+$2*60+$3; else print $1*60+$2 }')
  local mbs
  mbs=$(awk -v b="$bytes" -v s="$secs" 'BEGIN { printf "%.0f", (s > 0 ? b / s / 1e6 : 0) }')
  results+=("$(printf '%-36s %6s MB/s %7.1f MiB peak RSS %7.2f s wall %7s s CPU' "$name" "$mbs" "$(awk -v k="$rss" 'BEGIN{print k/1024}')" "$secs" "$cpu")")
  echo "${results[-1]}" >&2
}

cat "$work/image.tar" >/dev/null # warm the page cache for everyone

export HOIST_ROOT=$work/hoist-root
measure "hoist load (docker-archive)" "$hoist" load -i "$work/image.tar"
measure "skopeo copy docker-archive -> oci:" skopeo copy -q "docker-archive:$work/image.tar" "oci:$work/layout:bench:latest"
measure "hoist save --format docker" "$hoist" save -o "$work/saved-docker.tar" bench:latest
measure "hoist save --format oci" "$hoist" save --format oci -o "$work/saved-oci.tar" bench:latest
measure "skopeo copy oci: -> docker-archive" skopeo copy -q "oci:$work/layout:bench:latest" "docker-archive:$work/skopeo-docker.tar:bench:latest"
measure "skopeo copy oci: -> oci-archive" skopeo copy -q "oci:$work/layout:bench:latest" "oci-archive:$work/skopeo-oci.tar:bench:latest"
rm -rf "$work/hoist-root"
measure "hoist load (stdin, oci archive)" sh -c "\"$hoist\" load < \"$work/saved-oci.tar\""

echo
echo "archive: $((bytes >> 20)) MiB, $(nproc) CPUs, load average $(cut -d' ' -f1 /proc/loadavg)"
printf '%s\n' "${results[@]}"
