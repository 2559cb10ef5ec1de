#!/usr/bin/env bash
# The whole-build benchmark suite of issue 9: hoist against BuildKit HEAD
# (buildctl + buildkitd with the OCI worker on overlayfs, built from
# moby/buildkit's source into $BKREF) as the reference peer, and Debian's docker
# and `buildah bud --layers` as secondary peers (buildah is skipped, with a
# note, when it is not installed), on the same busybox base and contexts, in
# the same run.
#
#   bench/suite/run.sh [--runs N] [--only REGEX] [--no-docker] [--no-buildah]
#                      [--record FILE] [--realworld]
#   bench/suite/run.sh --ci [--peer buildkit|docker]
#
# Every workload is measured RUNS times (default 3), the builders taking
# turns within each round (interleaved, so that a noisy minute hurts all of
# them alike); the table shows medians, the ratio hoist / fastest peer, and
# hoist's peak RSS (/usr/bin/time, which counts the processes hoist reaps,
# the RUNs' among them: the real-world workload's figure is pip's; the
# peers' work happens in their daemons, so their client RSS would mean
# nothing). RUN steps have no network on
# every side (--network none, BuildKit's force-network-mode=none).
#
# --realworld adds the real-world workload, which needs Debian's mirror and
# PyPI: a `debootstrap --variant=minbase bookworm` root imported as the base
# of every builder (DEBIAN_TAR: a tarball of such a root, to skip
# debootstrap), `apt-get install python3-pip` through `type=cache` mounts
# and a `pip install`. Its RUNs get the host's network on every side
# (--network host; BuildKit's worker runs RUN in the host's network).
#
# --record appends the table, with the date, versions and load average, to
# FILE (creating it with a title when missing).
#
# --ci runs the short version that scripts/test runs: a few small workloads,
# one warming round and 3 timed ones, against one peer: BuildKit HEAD when
# it is set up in $BKREF, docker otherwise (--peer buildkit|docker picks
# one). The hoist binary is the debug build CI already has (HOIST to change
# it). It exits non-zero when hoist's median is over 2x the peer's on some
# workload, and when its peer is missing or fails; it never skips.
#
# Two rows give the work after the big RUN, per builder:
# - "work after the 237 MB RUN (the two above less)": the build whose RUN
#   keeps its output less the same build whose RUN writes to /dev/null. It
#   also counts the RUN writing its 237 MB into the step's overlay (page
#   cache allocated and filled inside the RUN's processes), the same work in
#   every builder but a large and variable share of the difference.
# - "work after the 237 MB RUN ends (measured from the RUN's last command)":
#   from the RUN's last command, `cat /proc/uptime`, to the build command's
#   return, read on the host's /proc/uptime (no builder gives its RUNs a time
#   namespace; a stamp outside the build's window fails the run). It counts
#   the RUN's exit and all that follows: the layer, the image, the naming.
#   The two big-RUN workloads are built with their output shown for it
#   (--progress plain, buildah without -q), and --ci has neither the row nor
#   the output: its one job is the 2x gate on whole builds, and a 48 MB
#   RUN's tail of a few hundred ms read at 10 ms would gate on noise.
#
# Env: HOIST (a hoist binary; default: cargo build --release, or the debug
# build with --ci), HOIST_BEFORE (another hoist binary, e.g. an older
# commit's, measured in the same run with a store of its own: before/after
# figures), BKREF (default /opt/bkref), DOCKER_CLI (default /usr/bin/docker),
# BENCH_DIR (scratch; default a temp dir).
set -euo pipefail
cd "$(dirname "$0")/../.."

runs=3 only=. use_docker=1 use_buildah=1 record="" ci=0 ci_peer=auto realworld=0
while [[ $# -gt 0 ]]; do
  case $1 in
    --runs) runs=$2; shift 2 ;;
    --only) only=$2; shift 2 ;;
    --no-docker) use_docker=0; shift ;;
    --no-buildah) use_buildah=0; shift ;;
    --realworld) realworld=1; shift ;;
    --record) record=$2; shift 2 ;;
    --ci) ci=1; shift ;;
    --peer) ci_peer=$2; shift 2 ;;
    -h | --help) sed -n '2,/^set -euo/p' "$0" | sed '$d' | sed 's/^# \{0,1\}//'; exit 0 ;;
    *) echo "unknown argument $1" >&2; exit 2 ;;
  esac
done

die() { echo "bench: $*" >&2; exit 1; }
[[ $(id -u) == 0 ]] || die "needs root (overlayfs, namespaces, the peers' daemons)"
bkref=${BKREF:-/opt/bkref}
bk_missing="BuildKit HEAD is missing: build buildkitd and buildctl from moby/buildkit and install them in $bkref/bin (or set BKREF)"
have_buildkit=0
[[ -x $bkref/bin/buildctl && -x $bkref/bkbuild.sh ]] && have_buildkit=1
use_buildkit=1
if [[ $ci == 1 ]]; then
  # One peer, the reference one when it is there; buildah never (slow to
  # set up, and the slowest builder in every workload).
  use_buildah=0
  [[ $ci_peer == auto ]] && { ((have_buildkit)) && ci_peer=buildkit || ci_peer=docker; }
  case $ci_peer in
    buildkit) ((have_buildkit)) || die "--ci: $bk_missing"; use_docker=0 ;;
    docker)
      use_buildkit=0 use_docker=1
      command -v "${DOCKER_CLI:-docker}" >/dev/null ||
        die "--ci: no peer to compare with: BuildKit HEAD is not set up in $bkref and docker is not installed (apt-get install docker.io)"
      ;;
    *) die "--peer takes buildkit or docker, not $ci_peer" ;;
  esac
else
  ((have_buildkit)) || die "$bk_missing"
fi
[[ -x /usr/bin/time ]] || die "/usr/bin/time is required (apt-get install time)"
hoist=${HOIST:-}
if [[ -z $hoist && $ci == 1 ]]; then
  # The debug build, which CI has already built for its tests: no second
  # (release) build of the workspace inside CI's time.
  cargo build --locked -q -p hoist
  hoist=$PWD/target/debug/hoist
elif [[ -z $hoist ]]; then
  cargo build --release --locked -q -p hoist
  hoist=$PWD/target/release/hoist
fi
[[ -x $hoist ]] || die "no hoist binary at $hoist"

work=${BENCH_DIR:-$(mktemp -d)}
mkdir -p "$work"
cleanup() {
  # The bench's images leave docker's store (its build cache stays).
  if [[ ${use_docker:-0} == 1 ]]; then
    "$docker" image rm -f bench-{small,many-runs,big-run,big-null,big-context,stages,realworld}:latest >/dev/null 2>&1 || true
  fi
  [[ -n ${dockerd_pid:-} ]] && kill "$dockerd_pid" 2>/dev/null
  # A buildkitd this run started (through bkbuild.sh) stops with it.
  [[ -n ${started_buildkitd:-} ]] && kill "$started_buildkitd" 2>/dev/null
  [[ -z ${BENCH_DIR:-} ]] && rm -rf "$work"
  return 0
}
trap cleanup EXIT
export HOIST_ROOT=$work/hoist-store
before=${HOIST_BEFORE:-}

# ---------------------------------------------------------------- peers
bk_addr=unix:///run/bkref/buildkitd.sock
buildctl=("$bkref/bin/buildctl" --addr "$bk_addr")
docker=${DOCKER_CLI:-/usr/bin/docker}
export DOCKER_BUILDKIT=1
if [[ $use_docker == 1 ]] && ! "$docker" info >/dev/null 2>&1; then
  command -v dockerd >/dev/null || die "docker does not answer and dockerd is not installed (apt-get install docker.io)"
  dockerd --iptables=false --bridge=none >"$work/dockerd.log" 2>&1 &
  dockerd_pid=$!
  for _ in $(seq 60); do "$docker" info >/dev/null 2>&1 && break; sleep 1; done
  "$docker" info >/dev/null 2>&1 || die "dockerd did not start (see $work/dockerd.log)"
fi
if [[ $use_buildah == 1 ]] && ! command -v buildah >/dev/null; then
  echo "bench: buildah is not installed (apt-get install buildah): its column is skipped" >&2
  use_buildah=0
fi
# A store of its own, removed with the scratch directory.
buildah=(buildah --root "$work/buildah-root" --runroot "$work/buildah-run" --storage-driver overlay)

# ---------------------------------------------------------------- base image
testdata/base/make-busybox-rootfs.sh "$work/busybox.tar" 2>/dev/null
"$hoist" import "$work/busybox.tar" busybox:latest >/dev/null
[[ -n $before ]] && HOIST_ROOT=$work/before-store "$before" import "$work/busybox.tar" busybox:latest >/dev/null
if [[ $use_buildkit == 1 ]]; then
  "$hoist" save --format oci busybox:latest -o "$work/busybox-oci.tar"
  mkdir -p "$work/busybox-layout"
  tar -xf "$work/busybox-oci.tar" -C "$work/busybox-layout"
  base_digest=$(jq -r '.manifests[0].digest' "$work/busybox-layout/index.json")
fi
"$hoist" save busybox:latest -o "$work/busybox-docker.tar"
[[ $use_docker == 1 ]] && "$docker" load -i "$work/busybox-docker.tar" >/dev/null
[[ $use_buildah == 1 ]] && "${buildah[@]}" pull -q "docker-archive:$work/busybox-docker.tar" >/dev/null

# ---------------------------------------------------------------- workloads
if [[ $ci == 1 ]]; then
  small_files=100 runs_steps=15 big_mb=48 ctx_files=2000 stage_loops=60000
else
  small_files=200 runs_steps=30 big_mb=237 ctx_files=20000 stage_loops=300000
fi

mk() { mkdir -p "$work/ctx/$1"; printf '%s\n' "${@:2}" >"$work/ctx/$1/Dockerfile"; }

mk small "FROM busybox" "COPY . /app" "RUN cat /app/src/* | wc -c > /app/bytes" \
  "RUN mkdir /out && cp -r /app/src /out/" "RUN ls /out/src | wc -l > /out/count"
mkdir -p "$work/ctx/small/src"
for i in $(seq "$small_files"); do
  seq -f "small file $i line %g" 1 40 >"$work/ctx/small/src/f$i.txt"
done

lines=("FROM busybox")
for i in $(seq "$runs_steps"); do lines+=("RUN echo step $i > /step$i"); done
mk many-runs "${lines[@]}"

# Half random (incompressible), half text: what real RUN outputs look like.
# The RUN ends by printing the time, for the row measured from it.
half=$((big_mb / 2))
mk big-run "FROM busybox" \
  "RUN mkdir /data && head -c $((half * 1000000)) /dev/urandom > /data/random && yes 'a line of text that compresses like source code or logs do' | head -c $(((big_mb - half) * 1000000)) > /data/text && cat /proc/uptime"

# The same commands with nothing kept: the build less the work after the RUN.
mk big-null "FROM busybox" \
  "RUN mkdir /data && head -c $((half * 1000000)) /dev/urandom > /dev/null && yes 'a line of text that compresses like source code or logs do' | head -c $(((big_mb - half) * 1000000)) > /dev/null && cat /proc/uptime"

mk big-context "FROM busybox" "COPY . /app" "RUN ls -R /app | wc -l > /files"
# 4 KiB files, each different, 500 a directory (d0/f000 to d0/f499, d1/...):
# ctx_files x 4 KiB (80 MB for 20,000).
for d in $(seq 0 $(((ctx_files - 1) / 500))); do
  n=$((ctx_files - d * 500 < 500 ? ctx_files - d * 500 : 500))
  mkdir -p "$work/ctx/big-context/d$d"
  head -c $((n * 4096)) /dev/urandom | split -b 4096 -a 3 -d - "$work/ctx/big-context/d$d/f"
done

lines=()
for s in 1 2 3 4; do
  lines+=("FROM busybox AS s$s" "RUN i=0; while [ \$i -lt $stage_loops ]; do i=\$((i+1)); done; echo $s > /done$s")
done
lines+=("FROM busybox")
for s in 1 2 3 4; do lines+=("COPY --from=s$s /done$s /"); done
mk stages "${lines[@]}"

# ---------------------------------------------------------------- real world
if [[ $realworld == 1 ]]; then
  debian_tar=${DEBIAN_TAR:-}
  if [[ -z $debian_tar ]]; then
    command -v debootstrap >/dev/null || die "debootstrap is not installed (apt-get install debootstrap)"
    debootstrap --variant=minbase bookworm "$work/debian-root" "${DEBIAN_MIRROR:-http://deb.debian.org/debian}" \
      >"$work/debootstrap.log" 2>&1 || die "debootstrap failed (see $work/debootstrap.log)"
    tar -C "$work/debian-root" --numeric-owner -cf "$work/debian.tar" .
    rm -rf "$work/debian-root"
    debian_tar=$work/debian.tar
  fi
  "$hoist" import "$debian_tar" minbase:latest >/dev/null
  [[ -n $before ]] && HOIST_ROOT=$work/before-store "$before" import "$debian_tar" minbase:latest >/dev/null
  "$hoist" save --format oci minbase:latest -o "$work/minbase-oci.tar"
  mkdir -p "$work/minbase-layout"
  tar -xf "$work/minbase-oci.tar" -C "$work/minbase-layout"
  minbase_digest=$(jq -r '.manifests[0].digest' "$work/minbase-layout/index.json")
  "$hoist" save minbase:latest -o "$work/minbase-docker.tar"
  [[ $use_docker == 1 ]] && "$docker" load -i "$work/minbase-docker.tar" >/dev/null
  [[ $use_buildah == 1 ]] && "${buildah[@]}" pull -q "docker-archive:$work/minbase-docker.tar" >/dev/null
  rm -f "$work/minbase-oci.tar" "$work/minbase-docker.tar"
  # pip is given the host's CA bundle, so that it trusts what the host
  # trusts (a TLS-intercepting proxy's CA, for one), in every builder alike.
  mk realworld "FROM minbase" "COPY host-ca.crt /etc/host-ca.crt" \
    "RUN rm -f /etc/apt/apt.conf.d/docker-clean && echo 'Binary::apt::APT::Keep-Downloaded-Packages \"true\";' > /etc/apt/apt.conf.d/keep-cache" \
    "RUN --mount=type=cache,target=/var/cache/apt,sharing=locked --mount=type=cache,target=/var/lib/apt,sharing=locked apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -qq -y --no-install-recommends python3-pip >/dev/null" \
    "RUN pip install -q --no-cache-dir --break-system-packages --cert /etc/host-ca.crt six==1.16.0 idna==3.7 && python3 -c 'import six, idna'"
  cp "${SSL_CERT_FILE:-/etc/ssl/certs/ca-certificates.crt}" "$work/ctx/realworld/host-ca.crt"
fi

# ---------------------------------------------------------------- builders
# RUN's network: none, but the host's for the real-world workload.
net() { [[ $1 == realworld ]] && echo host || echo none; }

# The big RUN's workloads show the RUN's output (their RUN ends with
# `cat /proc/uptime`), outside --ci; the others build quietly.
stamped() { [[ $ci == 0 && $1 =~ ^big-(run|null)$ ]]; }
# Sets the variable named $1 to the host's uptime in ms (10 ms steps),
# without a fork, so that it is read right when a build returns.
uptime_ms() {
  local -n ms_out=$1
  local up _
  read -r up _ </proc/uptime
  ms_out=$((10#${up/./} * 10))
}

# Runs one build of builder $1 on context $2 with its output in $work/$1.log,
# shown if it fails; for a stamped workload, the host's uptime before and
# right after it goes to $work/$1.window, for after_run.
run_build() {
  local b=$1 ctx=$2 start end
  shift 2
  uptime_ms start
  "$@" >"$work/$b.log" 2>&1 || { cat "$work/$b.log" >&2; return 1; }
  uptime_ms end
  if stamped "$ctx"; then echo "$start $end" >"$work/$b.window"; fi
}

# ms from the last /proc/uptime builder $1's RUN printed (`UP IDLE`, after
# whatever prefix the builder gives a RUN's line, `#5 1.234 ` for one) to
# the build's return. Fails when the stamp is missing or outside the build.
after_run() {
  local b=$1 start end stamp
  read -r start end <"$work/$b.window"
  rm "$work/$b.window"
  stamp=$(tr -d '\r' <"$work/$b.log" | grep -Eo '(^|[[:space:]])[0-9]+\.[0-9]{2} [0-9]+\.[0-9]{2}$' |
    tail -1 | awk '{ printf "%.0f", $1 * 1000 }') || true
  [[ -n $stamp ]] || { cat "$work/$b.log" >&2; die "$b: no /proc/uptime line in the RUN's output (above)"; }
  ((start <= stamp && stamp <= end)) ||
    die "$b: the RUN's uptime $stamp ms is outside the build's ($start-$end ms): not the host's clock?"
  echo $((end - stamp))
}

# Each fails loudly; $1 = context name, $2 = cold|noop|changed.
build_hoist() {
  local flags=(--network "$(net "$1")" -t "bench-$1:latest")
  [[ $2 == cold ]] && flags+=(--no-cache)
  if stamped "$1"; then flags+=(--progress plain); else flags+=(-q); fi
  run_build hoist "$1" /usr/bin/time -f '%M' -o "$work/rss" "$hoist" build "${flags[@]}" "$work/ctx/$1"
}
build_before() {
  local flags=(--network "$(net "$1")" -t "bench-$1:latest")
  [[ $2 == cold ]] && flags+=(--no-cache)
  if stamped "$1"; then flags+=(--progress plain); else flags+=(-q); fi
  HOIST_ROOT=$work/before-store run_build before "$1" /usr/bin/time -f '%M' -o "$work/rss-before" \
    "$before" build "${flags[@]}" "$work/ctx/$1"
}
build_buildkit() {
  local flags=()
  [[ $2 == cold ]] && flags+=(--no-cache)
  if stamped "$1"; then flags+=(--progress plain); else flags+=(--progress quiet); fi
  if [[ $1 == realworld ]]; then
    flags+=(--oci-layout "minbase=$work/minbase-layout" --opt "context:minbase=oci-layout://minbase@$minbase_digest")
  else
    flags+=(--opt force-network-mode=none)
  fi
  run_build buildkit "$1" "${buildctl[@]}" build --frontend dockerfile.v0 \
    --local "context=$work/ctx/$1" --local "dockerfile=$work/ctx/$1" \
    --opt cmdline= \
    --oci-layout "base=$work/busybox-layout" \
    --opt "context:busybox=oci-layout://base@$base_digest" \
    --output "type=image,name=bench/$1:latest" "${flags[@]}"
}
build_docker() {
  local flags=(--network "$(net "$1")" -t "bench-$1:latest")
  [[ $2 == cold ]] && flags+=(--no-cache)
  if stamped "$1"; then flags+=(--progress plain); else flags+=(-q); fi
  run_build docker "$1" "$docker" build "${flags[@]}" "$work/ctx/$1"
}
build_buildah() {
  local flags=(--layers --network "$(net "$1")" --pull=false -t "bench-$1:latest")
  [[ $2 == cold ]] && flags+=(--no-cache)
  stamped "$1" || flags+=(-q)
  run_build buildah "$1" "${buildah[@]}" bud "${flags[@]}" "$work/ctx/$1"
}
builders=(hoist)
peers=()
[[ $use_buildkit == 1 ]] && peers+=(buildkit)
[[ $use_docker == 1 ]] && peers+=(docker)
[[ $use_buildah == 1 ]] && peers+=(buildah)
builders+=("${peers[@]}")
[[ -n $before ]] && builders+=(before)

if [[ $use_buildkit == 1 ]]; then
  # Starts buildkitd through bkbuild.sh (which knows how) with a first build.
  if [[ $ci == 1 ]] && ! "${buildctl[@]}" debug workers >/dev/null 2>&1; then
    bk_started_here=1
  fi
  BKREF_QUIET=1 "$bkref/bkbuild.sh" --base "busybox=$work/busybox-layout" \
    "$work/ctx/small" "$work/bk-warm.tar" >/dev/null
  [[ -n ${bk_started_here:-} ]] && started_buildkitd=$(cat /run/bkref/buildkitd.pid)
fi

# ms of one call.
timed() {
  local start end
  start=$(date +%s%N)
  "$@" || die "failed: $*"
  end=$(date +%s%N)
  echo $(((end - start) / 1000000))
}

median() { printf '%s\n' "$@" | sort -n | awk '{a[NR]=$1} END {print a[int((NR+1)/2)]}'; }

# The one-file change: a new content for one file before each build.
change_one() { echo "changed $RANDOM $(date +%s%N)" >"$work/ctx/big-context/d0/f000"; }

if [[ $ci == 1 ]]; then
  # Short ones, one of each kind of work: per-build and per-step overhead,
  # the no-op path, a layer made from a RUN's output, a COPY of a context.
  workloads=(
    "small cold|small project, cold ($small_files files, 3 RUNs)"
    "small noop|same, no-op rebuild"
    "many-runs cold|$runs_steps small RUN steps, cold"
    "big-run cold|one RUN writing $big_mb MB"
    "big-context cold|$ctx_files-file context ($((ctx_files * 4096 / 1000000)) MB), COPY + one RUN, cold"
    "big-context noop|same, no-op rebuild"
  )
else
  workloads=(
    "small cold|small project, cold ($small_files files, 3 RUNs)"
    "small noop|same, no-op rebuild"
    "many-runs cold|$runs_steps small RUN steps, cold"
    "big-run cold|one RUN writing $big_mb MB"
    "big-null cold|same RUN writing to /dev/null"
    "big-context cold|$ctx_files-file context ($((ctx_files * 4096 / 1000000)) MB), COPY + one RUN, cold"
    "big-context noop|same, no-op rebuild"
    "big-context changed|same, after changing one file"
    "stages cold|four independent CPU-bound stages"
  )
fi
[[ $realworld == 1 ]] && workloads+=(
  "realworld cold|debootstrap minbase bookworm, apt-get install python3-pip (cache mount), pip install, cold"
)

ms() { [[ $1 == - ]] && echo - || echo "$1 ms"; }
# A table row: label, then hoist's and each peer's figure, ratio, RSS.
row() {
  local label=$1 h=$2 k=$3 d=$4 a=$5 ratio=$6 peak=$7 extra=${8:-} row_extra=${9:-}
  printf '%-62s %9s %9s %9s %9s %6s %8s%s\n' "$label" "$(ms "$h")" "$(ms "$k")" "$(ms "$d")" "$(ms "$a")" "$ratio" "$peak" "$extra"
  results+=("| $label | $(ms "$h") | $(ms "$k") | $(ms "$d") | $(ms "$a") | $ratio | $peak |$row_extra")
}
ratio_of() { awk -v h="$1" -v p="$2" 'BEGIN { printf "%.2f", h / (p > 0 ? p : 1) }'; }

results=()
regressions=()
declare -A med=()
printf '%-62s %9s %9s %9s %9s %6s %8s%s\n' workload hoist buildkit docker buildah ratio "rss MiB" \
  "$([[ -n $before ]] && echo "    before  ratio")"
for entry in "${workloads[@]}"; do
  spec=${entry%%|*} label=${entry#*|}
  [[ $spec =~ $only ]] || continue
  read -r ctx mode <<<"$spec"
  # Warm every builder once (page cache, base image, and for no-op and
  # changed builds the cache the timed runs reuse).
  for b in "${builders[@]}"; do "build_$b" "$ctx" "$mode" || die "$b failed on $ctx"; done
  declare -A times=() afters=()
  rss=()
  for _ in $(seq "$runs"); do
    for b in "${builders[@]}"; do
      [[ $mode == changed ]] && change_one
      times[$b]+=" $(timed "build_$b" "$ctx" "$mode")"
      [[ $b == hoist ]] && rss+=("$(($(cat "$work/rss") / 1024))")
      if stamped "$ctx"; then afters[$b]+=" $(after_run "$b")"; fi
    done
  done
  for b in "${builders[@]}"; do
    med[$spec,$b]=$(median ${times[$b]})
    if stamped "$ctx"; then med[$spec,$b,after]=$(median ${afters[$b]}); fi
  done
  h=${med[$spec,hoist]}
  # The fastest peer's median.
  peer=
  for b in "${peers[@]}"; do
    [[ -z $peer ]] || ((${med[$spec,$b]} < ${med[$spec,$peer]})) && peer=$b
  done
  p=${med[$spec,$peer]}
  ratio=$(ratio_of "$h" "$p")
  peak=$(printf '%s\n' "${rss[@]}" | sort -n | tail -1)
  extra="" row_extra=""
  if [[ -n $before ]]; then
    bt=${med[$spec,before]}
    bratio=$(ratio_of "$bt" "$p")
    extra=$(printf ' %7sms %6s' "$bt" "$bratio")
    row_extra=" $bt ms | $bratio |"
  fi
  row "$label" "$h" "${med[$spec,buildkit]:--}" "${med[$spec,docker]:--}" "${med[$spec,buildah]:--}" \
    "$ratio" "$peak" "$extra" "$row_extra"
  if [[ $ci == 1 ]] && awk -v r="$ratio" 'BEGIN { exit !(r > 2) }'; then
    regressions+=("$spec ($label): hoist $h ms, $peer $p ms, ${ratio}x")
  fi
  unset times afters
done

# A row of the work after the big RUN from after[builder]; $1 = its label,
# with %s for the peer its ratio is to: docker, as issue 9's target is, or
# the fastest peer without docker.
after_row() {
  local ref=${peers[0]} b extra="" row_extra="" bratio
  for b in "${peers[@]}"; do ((${after[$b]} < ${after[$ref]})) && ref=$b; done
  [[ $use_docker == 1 ]] && ref=docker
  if [[ -n $before ]]; then
    bratio=$(ratio_of "${after[before]}" "${after[$ref]}")
    extra=$(printf ' %7sms %6s' "${after[before]}" "$bratio")
    row_extra=" ${after[before]} ms | $bratio |"
  fi
  # shellcheck disable=SC2059 # the label holds the %s
  row "$(printf "$1" "$ref")" "${after[hoist]}" \
    "${after[buildkit]:--}" "${after[docker]:--}" "${after[buildah]:--}" \
    "$(ratio_of "${after[hoist]}" "${after[$ref]}")" - "$extra" "$row_extra"
}

# The work after the big RUN, per builder: the build with the RUN's output
# less the same build whose RUN writes to /dev/null (the same commands, an
# empty layer). Writing the output into the step's overlay is counted in it
# alike for every builder, so hoist's ratio is, if anything, overstated.
if [[ -n ${med[big-run cold,hoist]:-} && -n ${med[big-null cold,hoist]:-} ]]; then
  declare -A after=()
  for b in "${builders[@]}"; do
    after[$b]=$((${med[big-run cold,$b]} - ${med[big-null cold,$b]}))
  done
  after_row "work after the $big_mb MB RUN (the two above less; ratio to %s)"
fi

# The same measured from the RUN's last command (see the header).
if [[ -n ${med[big-run cold,hoist,after]:-} ]]; then
  declare -A after=()
  for b in "${builders[@]}"; do after[$b]=${med[big-run cold,$b,after]}; done
  after_row "work after the $big_mb MB RUN ends (measured from the RUN's last command; ratio to %s)"
fi

if [[ -n $record ]]; then
  {
    [[ -s $record ]] || printf '# Whole-build figures (bench/suite/run.sh)\n'
    echo
    echo "$(date -u +%Y-%m-%d), hoist $(git rev-parse --short HEAD 2>/dev/null || echo '?'), BuildKit $([[ $use_buildkit == 1 ]] && "${buildctl[@]}" --version | awk '{print $3}' || echo -), docker $("$docker" version -f '{{.Server.Version}}' 2>/dev/null || echo -), buildah $([[ $use_buildah == 1 ]] && buildah --version | awk '{print $3}' || echo -)."
    echo "$(nproc) cores, load average $(cut -d' ' -f1-3 /proc/loadavg) at the end; medians of $runs interleaved runs;"
    echo "ratio = hoist / fastest peer; RSS = the peak of hoist and the RUN processes it reaps."
    echo
    if [[ -n $before ]]; then
      echo "| workload | hoist | BuildKit HEAD | docker | buildah | ratio | hoist RSS MiB | hoist before | ratio before |"
      echo "|---|---|---|---|---|---|---|---|---|"
    else
      echo "| workload | hoist | BuildKit HEAD | docker | buildah | ratio | hoist RSS MiB |"
      echo "|---|---|---|---|---|---|---|"
    fi
    printf '%s\n' "${results[@]}"
  } >>"$record"
  echo "figures appended to $record"
fi
if ((${#regressions[@]})); then
  echo "bench: hoist took over 2x its peer's median (the --ci limit) on:" >&2
  printf 'bench:   %s\n' "${regressions[@]}" >&2
  exit 1
fi
[[ $ci == 1 ]] && echo "bench: hoist is within 2x of ${peers[0]} on every workload"
exit 0
