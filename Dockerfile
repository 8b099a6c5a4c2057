# mdb: build with the Rust toolchain, run on a small Debian base as a
# non-root user. The same `cargo build --release --locked` runs in CI.
FROM rust:1.95-bookworm AS build
WORKDIR /src
COPY . .
RUN cargo build --release --locked \
 && cp target/release/mdb /mdb

FROM debian:bookworm-slim
# libcap2-bin only for setcap, removed again in the same layer.
RUN apt-get update \
 && apt-get install -y --no-install-recommends ca-certificates libssl3 libcap2-bin \
 && rm -rf /var/lib/apt/lists/*
COPY --from=build /mdb /usr/local/bin/mdb
# The scanner's copy alone carries cap_net_raw (raw ARP and ICMP sockets);
# the API replicas run /usr/local/bin/mdb with no capabilities at all, since
# a file capability outside a pod's bounding set would make exec fail.
RUN cp /usr/local/bin/mdb /usr/local/bin/mdb-scanner \
 && setcap cap_net_raw+ep /usr/local/bin/mdb-scanner \
 && apt-get purge -y libcap2-bin && apt-get autoremove -y \
 && useradd --system --uid 10001 --home-dir /var/lib/mdb --create-home mdb
USER 10001
WORKDIR /var/lib/mdb
# gRPC, metrics
EXPOSE 50051 9090
ENTRYPOINT ["/usr/local/bin/mdb"]
CMD ["serve", "--config", "/etc/mdb/api.toml"]
