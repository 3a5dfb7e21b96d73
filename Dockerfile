# One image, two services: the CMD picks the gateway (default) or the relay.
#   docker build -t pbx-presence .
#   docker run -v $PWD/gateway.json:/config/gateway.json pbx-presence
#   docker run -v $PWD/relay.json:/config/relay.json pbx-presence node dist/cloud-relay.js --config /config/relay.json
# (Not built in this project's CI: the CI machines have no Docker engine.)
FROM node:20-bookworm-slim AS build
WORKDIR /app
COPY package.json package-lock.json ./
RUN npm ci --no-audit --no-fund
COPY tsconfig.json ./
COPY gateway ./gateway
COPY cloud-relay ./cloud-relay
COPY scripts ./scripts
COPY web-ui ./web-ui
# dist/gateway.js, dist/cloud-relay.js and dist/web/{box,console} (the setup page and the console).
RUN npm run build && npm prune --omit=dev

FROM node:20-bookworm-slim
RUN apt-get update && apt-get install -y --no-install-recommends tini && rm -rf /var/lib/apt/lists/*
WORKDIR /app
ENV NODE_ENV=production
COPY --from=build /app/node_modules ./node_modules
COPY --from=build /app/dist ./dist
COPY package.json ./
COPY gateway/examples ./examples/gateway
COPY cloud-relay/examples ./examples/cloud-relay
RUN mkdir -p /data /config && chown -R node:node /data
USER node
VOLUME ["/data"]
# Relay: 8883 mqtts and 443 wss (embedded broker, client certificates), 8443 HTTPS (enrollment, console, API);
# 1883 the optional password listener. Gateway: 8443 its setup page (443 when run as root).
EXPOSE 1883 8883 8443 443
LABEL org.opencontainers.image.title="pbx-presence-gateway" \
      org.opencontainers.image.description="PBX <-> Microsoft Teams presence sync: gateway and cloud relay" \
      org.opencontainers.image.licenses="Apache-2.0"
ENTRYPOINT ["/usr/bin/tini", "--"]
CMD ["node", "dist/gateway.js", "--config", "/config/gateway.json"]
