# mxwarden's container image: built in one stage, run in a small Debian one.
#
#   docker build -t mxwarden .
#   docker run -d --name mxwarden -v mxwarden-state:/var/lib/mxwarden \
#     -v "$PWD/mxwarden.yaml:/etc/mxwarden/mxwarden.yaml:ro" --env-file mxwarden.env \
#     -p 127.0.0.1:8090:8090 mxwarden
#
# The config must say `listen: 0.0.0.0:8090` (HEALTHCHECK and -p reach it) and keep its
# `store:` and `backup.dir` under /var/lib/mxwarden (the volume). See docs/deploy.md.

# ---- build: the release binary (fat LTO, size-optimised; see Cargo.toml)
FROM rust:1.95-bookworm AS build
WORKDIR /src
COPY . .
RUN cargo build --release --locked --bin mxwarden \
 && install -D -m 0755 target/release/mxwarden /out/mxwarden \
 && /out/mxwarden completions bash > /out/mxwarden.bash \
 && /out/mxwarden man > /out/mxwarden.1

# ---- run: the binary, CA certificates, the PostgreSQL client tools for backups (pg_dump must
# be at least the server's major version: PostgreSQL's own apt repository has every major; the
# Debian 12 package is 15), and curl for the HEALTHCHECK.
FROM debian:bookworm-slim
ARG PG_MAJOR=15
RUN apt-get update \
 && apt-get install -y --no-install-recommends ca-certificates curl "postgresql-client-${PG_MAJOR}" \
 && rm -rf /var/lib/apt/lists/* \
 && useradd --system --uid 10001 --home-dir /var/lib/mxwarden --shell /usr/sbin/nologin mxwarden \
 && install -d -o mxwarden -g mxwarden -m 0700 /var/lib/mxwarden \
 && install -d -m 0755 /etc/mxwarden
COPY --from=build /out/mxwarden /usr/local/bin/mxwarden
COPY --from=build /out/mxwarden.bash /usr/share/bash-completion/completions/mxwarden
COPY --from=build /out/mxwarden.1 /usr/share/man/man1/mxwarden.1
ENV MXWARDEN_CONFIG=/etc/mxwarden/mxwarden.yaml
USER mxwarden
WORKDIR /var/lib/mxwarden
VOLUME ["/var/lib/mxwarden"]
EXPOSE 8090
# /healthz answers 200 while the store takes writes, 503 when it refuses them.
HEALTHCHECK --interval=30s --timeout=5s --start-period=20s --retries=3 \
  CMD ["curl", "-fsS", "--max-time", "4", "http://127.0.0.1:8090/healthz"]
# mxwarden is PID 1: it handles SIGTERM (exit 0) and SIGHUP (reload) itself.
STOPSIGNAL SIGTERM
ENTRYPOINT ["/usr/local/bin/mxwarden"]
CMD ["run"]
