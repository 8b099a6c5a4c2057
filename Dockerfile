# mdb from source: a static binary (glibc, crt-static, OpenSSL linked in)
# on an empty base, as UID 10001. The release workflow uses
# Containerfile.release with prebuilt binaries instead; both take their
# root filesystem from scripts/image-rootfs.sh, so the layout is the same.
FROM rust:1.95-bookworm AS build
RUN apt-get update \
 && apt-get install -y --no-install-recommends libssl-dev libcap2-bin ca-certificates \
 && rm -rf /var/lib/apt/lists/*
WORKDIR /src
COPY . .
ENV RUSTFLAGS="-C target-feature=+crt-static" OPENSSL_STATIC=1 \
    CARGO_PROFILE_RELEASE_DEBUG=false CARGO_PROFILE_RELEASE_STRIP=debuginfo
# The build machine's own architecture, so buildx builds arm64 under arm64.
RUN target="$(uname -m)-unknown-linux-gnu" \
 && cargo build --release --locked --target "$target" \
 && scripts/image-rootfs.sh "target/$target/release/mdb" /rootfs

FROM scratch
COPY --from=build /rootfs/ /
ENV SSL_CERT_FILE=/etc/ssl/certs/ca-certificates.crt
USER 10001:10001
WORKDIR /var/lib/mdb
# gRPC, metrics and the web page
EXPOSE 50051 9090
ENTRYPOINT ["/usr/local/bin/mdb"]
CMD ["serve", "--config", "/etc/mdb/api.toml"]
