# One image, two services: the CMD picks the gateway (default) or the relay. Node is the box's Node (24 LTS),
# fetched from the npm registry by scripts/fetch-node.sh, as the appliance image and CI's Node-24 run do.
#
# On a machine with Docker (the base image comes from Docker Hub):
#   docker build -t pbx-presence .
#   docker run -p 127.0.0.1:8443:8443 -v pbx-data:/data pbx-presence        # setup page: https://127.0.0.1:8443/
#   docker run -v $PWD/relay.json:/config/relay.json -e HEALTHCHECK_URL=http://127.0.0.1:8080/healthz \
#     pbx-presence node dist/cloud-relay.js --config /config/relay.json
# Without Docker Hub (our dev and CI machines): `npm run container:build` makes the Debian base locally with
# mmdebstrap and builds with buildah, passing BASE_IMAGE and the host's CA bundle (see container/README.md).
#
# BASE_IMAGE: any Debian bookworm root with apt. Default docker.io/library/debian:bookworm-slim.
ARG BASE_IMAGE=docker.io/library/debian:bookworm-slim

FROM ${BASE_IMAGE} AS node
RUN apt-get update && apt-get install -y --no-install-recommends ca-certificates curl && apt-get clean && rm -rf /var/lib/apt/lists/*
COPY scripts/fetch-node.sh /usr/local/bin/fetch-node
# ca-bundle (optional build secret): the host's CA bundle, for machines whose HTTPS goes through an inspecting
# proxy. A secret is mounted for this one command only and never stored in a layer.
RUN --mount=type=secret,id=ca-bundle \
    if [ -s /run/secrets/ca-bundle ]; then set -- --cafile /run/secrets/ca-bundle; fi; \
    fetch-node --with-npm --cache /tmp/node-downloads "$@" /opt/node && rm -rf /tmp/node-downloads

FROM node AS build
ENV PATH=/opt/node/bin:$PATH
WORKDIR /app
COPY package.json package-lock.json ./
RUN --mount=type=secret,id=ca-bundle \
    if [ -s /run/secrets/ca-bundle ]; then export npm_config_cafile=/run/secrets/ca-bundle; fi; \
    npm ci --no-audit --no-fund
COPY tsconfig.json ./
COPY gateway ./gateway
COPY cloud-relay ./cloud-relay
COPY scripts ./scripts
COPY web-ui ./web-ui
# dist/gateway.js, dist/cloud-relay.js and dist/web/{box,console} (the setup page and the console).
RUN npm run build && npm prune --omit=dev

FROM ${BASE_IMAGE}
RUN apt-get update && apt-get install -y --no-install-recommends ca-certificates tini && apt-get clean && rm -rf /var/lib/apt/lists/*
# Only the node binary: the services need no npm at run time.
COPY --from=node /opt/node/bin/node /usr/local/bin/node
COPY --from=node /opt/node/LICENSE /usr/local/share/doc/node/LICENSE
# A fixed numeric id, so a /data volume's owner is the same across rebuilds and hosts.
RUN groupadd --gid 10001 pbx && \
    useradd --uid 10001 --gid pbx --home-dir /data --no-create-home --shell /usr/sbin/nologin pbx && \
    mkdir -p /data /config && chown pbx:pbx /data
WORKDIR /app
ENV NODE_ENV=production
COPY --from=build /app/node_modules ./node_modules
COPY --from=build /app/dist ./dist
COPY package.json ./
COPY gateway/examples ./examples/gateway
COPY cloud-relay/examples ./examples/cloud-relay
COPY container/gateway.json /config/gateway.json
COPY container/healthcheck.mjs ./container/healthcheck.mjs
USER pbx:pbx
VOLUME ["/data"]
# Relay: 8883 mqtts and 443 wss (embedded broker, client certificates), 8443 HTTPS (enrollment, console, API);
# 1883 the optional password listener. Gateway: 8443 its setup page (not root, so not 443).
EXPOSE 1883 8883 8443 443
# The gateway's setup page by default; the relay sets HEALTHCHECK_URL to its /healthz.
ENV HEALTHCHECK_URL=https://127.0.0.1:8443/
HEALTHCHECK --interval=30s --timeout=5s --start-period=30s --retries=3 CMD ["node", "container/healthcheck.mjs"]
LABEL org.opencontainers.image.title="pbx-presence-gateway" \
      org.opencontainers.image.description="PBX <-> Microsoft Teams presence sync: gateway and cloud relay" \
      org.opencontainers.image.licenses="Apache-2.0"
ENTRYPOINT ["/usr/bin/tini", "--"]
# The gateway with the memory settings of the appliance's unit (firmware/systemd/pbx-gateway.service, npm run bench:memory).
CMD ["node", "--max-semi-space-size=1", "--optimize-for-size", "--no-turbofan", "--no-maglev", "dist/gateway.js", "--config", "/config/gateway.json"]
