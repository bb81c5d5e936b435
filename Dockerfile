# syntax=docker/dockerfile:1
# The bank-server image: one static binary on an empty base, run as a non-root user with a
# read-only root file system. The process kind is the command:
#   api | worker | notifications | serve | statements --period YYYY-MM | migrate | …
# Base images are build arguments. With a registry (users, CI elsewhere) the defaults are the
# official images and the binary is compiled in the `build` stage:
#   docker build -t bank-server .
# Without one (this repository's own check), scripts/build-image.sh makes a Debian base with
# debootstrap, compiles the binary on the host, and builds with
#   --build-arg DEBIAN_IMAGE=localhost/bank-debian-base --build-arg BINARY_FROM=context
# Run it read-only with a writable data directory:
#   docker run --read-only --tmpfs /tmp --mount type=volume,dst=/var/lib/bank -p 8080:8080 bank-server serve --demo

ARG RUST_IMAGE=docker.io/library/rust:1-bookworm
ARG DEBIAN_IMAGE=docker.io/library/debian:bookworm-slim
# `build`: compile bank-server in the Rust stage; `context`: take .image/bank-server from the
# build context (compiled beforehand with the same flags as the `build` stage).
ARG BINARY_FROM=build

# --- The static binary, compiled. ---------------------------------------------------------------
FROM ${RUST_IMAGE} AS build
WORKDIR /src
COPY . .
RUN RUSTFLAGS='-C target-feature=+crt-static' \
    cargo build --release --locked --target x86_64-unknown-linux-gnu -p bank-server \
 && install -D -m 0755 target/x86_64-unknown-linux-gnu/release/bank-server /out/bank-server

# --- …or the static binary, compiled beforehand. ----------------------------------------------------
FROM scratch AS context
COPY .image/bank-server /out/bank-server

FROM ${BINARY_FROM} AS binary

# --- The runtime file system, assembled on Debian. ---------------------------------------------------
# Only what the server needs at run time: CA certificates (TLS to AWS, Aurora, Redis), time
# zones, the user, an nsswitch.conf for the static resolver, the health probe, and two writable
# mount points. No shell, no package manager.
FROM ${DEBIAN_IMAGE} AS rootfs
RUN if ! command -v gcc >/dev/null || [ ! -e /etc/ssl/certs/ca-certificates.crt ] || [ ! -d /usr/share/zoneinfo ]; then \
      apt-get update && apt-get install -y --no-install-recommends gcc libc6-dev ca-certificates tzdata; \
    fi
COPY deploy/image/healthcheck.c /tmp/healthcheck.c
RUN set -eu; \
    r=/rootfs; \
    mkdir -p $r/etc/ssl/certs $r/usr/local/bin $r/usr/share $r/tmp $r/var/lib/bank; \
    gcc -static -O2 -Wall -Wextra -Werror -o $r/usr/local/bin/bank-healthcheck /tmp/healthcheck.c; \
    strip $r/usr/local/bin/bank-healthcheck; \
    cp /etc/ssl/certs/ca-certificates.crt $r/etc/ssl/certs/; \
    cp -a /usr/share/zoneinfo $r/usr/share/; \
    printf 'root:x:0:0:root:/root:/sbin/nologin\nbank:x:65532:65532:bank-server:/var/lib/bank:/sbin/nologin\n' > $r/etc/passwd; \
    printf 'root:x:0:\nbank:x:65532:\n' > $r/etc/group; \
    printf 'hosts: files dns\n' > $r/etc/nsswitch.conf; \
    printf '127.0.0.1 localhost\n::1 localhost\n' > $r/etc/hosts; \
    chmod 1777 $r/tmp; \
    chown 65532:65532 $r/var/lib/bank; \
    chmod 0750 $r/var/lib/bank

# --- The image. -----------------------------------------------------------------------------------
FROM scratch
COPY --from=rootfs /rootfs/ /
COPY --from=binary /out/bank-server /usr/local/bin/bank-server
ENV BANK_LISTEN=0.0.0.0:8080 \
    BANK_DATA_DIR=/var/lib/bank \
    BANK_LOG_FORMAT=json \
    SSL_CERT_FILE=/etc/ssl/certs/ca-certificates.crt
USER 65532:65532
WORKDIR /var/lib/bank
EXPOSE 8080
HEALTHCHECK --interval=15s --timeout=5s --start-period=30s --retries=3 CMD ["/usr/local/bin/bank-healthcheck"]
ENTRYPOINT ["/usr/local/bin/bank-server"]
CMD ["serve"]
