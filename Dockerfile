# gatehouse: a static binary on a small Debian base, running as an
# unprivileged user that may still bind ports 80 and 443.

FROM golang:1.26-bookworm AS build
WORKDIR /src
# Modules first, so code changes reuse the download layer.
COPY go.mod go.sum ./
RUN go mod download
COPY . .
ARG VERSION=dev
RUN CGO_ENABLED=0 go build -trimpath -ldflags "-s -w -X main.version=${VERSION}" \
	-o /out/gatehouse ./cmd/gatehouse

FROM debian:bookworm-slim
# ca-certificates: to verify ACME CAs and https:// upstreams. setcap lets the
# non-root user bind 80/443; libcap2-bin is removed once it has done so.
COPY --from=build /out/gatehouse /usr/local/bin/gatehouse
RUN apt-get update \
	&& apt-get install -y --no-install-recommends ca-certificates libcap2-bin \
	&& setcap cap_net_bind_service=+ep /usr/local/bin/gatehouse \
	&& apt-get purge -y libcap2-bin && apt-get autoremove -y \
	&& rm -rf /var/lib/apt/lists/* \
	&& useradd --system --uid 10001 --home-dir /data --shell /usr/sbin/nologin gatehouse \
	&& mkdir -p /data /etc/gatehouse \
	&& chown gatehouse:gatehouse /data && chmod 0700 /data
COPY examples/docker-edge.yaml /etc/gatehouse/gatehouse.yaml

# Certificates, keys and ACME accounts live here: without a persistent
# volume every restart orders new certificates and soon hits CA rate limits.
VOLUME /data
ENV GATEHOUSE_CONFIG=/etc/gatehouse/gatehouse.yaml GATEHOUSE_STORAGE=/data
USER gatehouse
EXPOSE 80 443 443/udp
ENTRYPOINT ["/usr/local/bin/gatehouse"]
CMD ["run"]
