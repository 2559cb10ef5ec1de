# hoist's own image: the hoist binary, newuidmap/newgidmap for rootless
# builds, busybox and CA certificates for registries. newuidmap and
# newgidmap get file capabilities instead of their setuid bit: in a
# container without CAP_SYS_ADMIN (a pod, Docker's default set) a setuid
# root helper cannot write the user's namespace's ID maps, while the user
# given CAP_SETUID/CAP_SETGID by the file can.
#
#   hoist build -t hoist:dev .       # hoist builds itself
#   docker build -t hoist:dev .      # so does any other builder
#
# The base images come from a registry (hoist pulls them for FROM), from
# `hoist load` of a `docker save` archive, or, with no registry at all,
# from deploy/local-bases.sh (debootstrap and the host's Rust toolchain).
ARG RUST_VERSION=1.95
ARG DEBIAN=bookworm

FROM docker.io/library/rust:${RUST_VERSION}-slim-${DEBIAN} AS builder
WORKDIR /src
COPY . .
# The image's own toolchain, not rust-toolchain.toml's (which would make
# rustup download one).
RUN export RUSTUP_TOOLCHAIN="$(rustup default | cut -d' ' -f1)" \
 && cargo build --release --locked -p hoist \
 && install -m 0755 target/release/hoist /usr/local/bin/hoist

FROM docker.io/library/debian:${DEBIAN}-slim
RUN apt-get update \
 && apt-get install -y --no-install-recommends uidmap busybox-static ca-certificates libcap2-bin \
 && chmod u-s /usr/bin/newuidmap /usr/bin/newgidmap \
 && setcap cap_setuid=ep /usr/bin/newuidmap \
 && setcap cap_setgid=ep /usr/bin/newgidmap \
 && rm -rf /var/lib/apt/lists/* \
 && useradd --create-home --uid 1000 --shell /bin/sh hoist \
 && echo 'hoist:1001:64535' > /etc/subuid \
 && echo 'hoist:1001:64535' > /etc/subgid
COPY --from=builder /usr/local/bin/hoist /usr/local/bin/hoist
USER hoist
WORKDIR /home/hoist
ENTRYPOINT ["hoist"]
CMD ["--help"]
