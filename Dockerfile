# syntax=docker/dockerfile:1
# pyre production image on Node 24 LTS: build stage compiles TypeScript, the
# runtime stage holds production dependencies and the compiled code only.

FROM node:24-bookworm-slim AS build
WORKDIR /app
COPY package.json package-lock.json ./
RUN npm ci --no-audit --no-fund
COPY tsconfig.json tsconfig.build.json knexfile.ts ./
COPY src ./src
COPY migrations ./migrations
RUN npm run build && npm prune --omit=dev

FROM node:24-bookworm-slim AS runtime
ENV NODE_ENV=production \
    PORT=4000 \
    DATA_DIR=/data
WORKDIR /app
COPY --from=build --chown=node:node /app/package.json ./
COPY --from=build --chown=node:node /app/node_modules ./node_modules
COPY --from=build --chown=node:node /app/dist ./dist
COPY --chown=node:node bin ./bin
COPY --chown=node:node public ./public
RUN mkdir -p /data && chown node:node /data
USER node
VOLUME ["/data"]
EXPOSE 4000
# Outside loopback pyre requires AUTH_SECRET (open mode is loopback-only), so set
# AUTH_SECRET and HOST=0.0.0.0 when running the image.
HEALTHCHECK --interval=15s --timeout=3s --start-period=20s --retries=3 \
  CMD node -e "fetch('http://127.0.0.1:'+(process.env.PORT||4000)+'/healthz').then(r=>process.exit(r.ok?0:1),()=>process.exit(1))"
# SIGTERM stops pyre within 9 s (running tasks get 5 s, then are released and resume at the next
# start), inside `docker stop`'s default 10 s before SIGKILL; no longer stop timeout is needed.
STOPSIGNAL SIGTERM
CMD ["node", "dist/src/main.js"]
