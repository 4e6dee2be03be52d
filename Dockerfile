# gatehouse: a static binary on a small Debian base, running as an
# unprivileged user that may still bind ports 80 and 443.

FROM golang:1.26-bookworm AS build
WORKDIR /src
# Modules first, so code changes reuse the download layer; the cache
# mounts keep modules and compiled packages between builds.
COPY go.mod go.sum ./
RUN --mount=type=cache,target=/go/pkg/mod go mod download
COPY . .
ARG VERSION=dev
# nobadger, nomysql, nopgx: the ACME server's smallstep database drivers
# other than bbolt, which gatehouse never uses (6 MB less).
RUN --mount=type=cache,target=/go/pkg/mod --mount=type=cache,target=/root/.cache/go-build \
	CGO_ENABLED=0 go build -tags nobadger,nomysql,nopgx -trimpath -ldflags "-s -w -X main.version=${VERSION}" \
	-o /out/gatehouse ./cmd/gatehouse

FROM debian:bookworm-slim
# ca-certificates: to verify ACME CAs and https:// upstreams. libcap2-bin's
# setcap lets the non-root user bind 80/443. Installed before the binary
# is copied, so a rebuild reuses this layer.
RUN apt-get update \
	&& apt-get install -y --no-install-recommends ca-certificates libcap2-bin \
	&& rm -rf /var/lib/apt/lists/* \
	&& useradd --system --uid 10001 --home-dir /data --shell /usr/sbin/nologin gatehouse \
	&& mkdir -p /data /etc/gatehouse \
	&& chown gatehouse:gatehouse /data && chmod 0700 /data
COPY --from=build /out/gatehouse /usr/local/bin/gatehouse
RUN setcap cap_net_bind_service=+ep /usr/local/bin/gatehouse
COPY examples/docker-edge.yaml /etc/gatehouse/gatehouse.yaml

# Certificates, keys and ACME accounts live here: without a persistent
# volume every restart orders new certificates and soon hits CA rate limits.
VOLUME /data
ENV GATEHOUSE_CONFIG=/etc/gatehouse/gatehouse.yaml GATEHOUSE_STORAGE=/data
USER gatehouse
EXPOSE 80 443 443/udp
ENTRYPOINT ["/usr/local/bin/gatehouse"]
CMD ["run"]
