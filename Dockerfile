# syntax=docker/dockerfile:1
#
# budget-lifecycle: `budgetctl` in a container. The default command runs the worker (budget workflows, the
# supervisor, /healthz, /readyz and /metrics on METRICS_PORT); any other subcommand works too, e.g.
#   docker run --rm -e DATABASE_URL=... budget-lifecycle migrate
#
# Three stages on the same Debian (glibc) base, so the native packages npm picks in one stage are the ones the
# runtime loads: @temporalio/core-bridge and @swc/core ship their binaries as optional, per-platform packages.
# Never install with --omit=optional: the worker could not connect (core-bridge) or bundle workflows (@swc/core).

ARG NODE_IMAGE=node:20-bookworm-slim

# --- build: every dependency, then tsc to dist/ (src, workflows, activities), the SQL migrations, and the -------
# workflow bundle (dist/workflow-bundle.js: webpack and swc run here, once, not in every worker at start-up) ----
FROM ${NODE_IMAGE} AS build
WORKDIR /app
# The lockfile is used exactly as committed (npm ci fails rather than rewrite it); its `overrides` and the
# `allowScripts` policy in package.json come along with package.json.
COPY package.json package-lock.json ./
RUN npm ci --no-audit --no-fund
COPY tsconfig.json tsconfig.build.json ./
COPY src ./src
COPY workflows ./workflows
COPY activities ./activities
COPY scripts/build-workflow-bundle.ts ./scripts/
RUN npm run build

# --- deps: production dependencies only (optional native packages included) ----------------------------------
FROM ${NODE_IMAGE} AS deps
WORKDIR /app
COPY package.json package-lock.json ./
RUN npm ci --omit=dev --no-audit --no-fund && npm cache clean --force

# --- runtime -------------------------------------------------------------------------------------------------
FROM ${NODE_IMAGE} AS runtime
ENV NODE_ENV=production \
    METRICS_PORT=9464
WORKDIR /app
COPY --from=deps /app/node_modules ./node_modules
COPY package.json ./
# dist/src (the CLI and worker), dist/activities, dist/workflows (the CLI and the supervisor start workflows by
# their functions) and dist/workflow-bundle.js, which the worker loads instead of bundling the workflows.
COPY --from=build /app/dist ./dist

# The image's unprivileged `node` user (uid 1000); the app files stay root-owned and read-only to it.
USER node

EXPOSE 9464
HEALTHCHECK --interval=30s --timeout=5s --start-period=60s --retries=3 \
  CMD ["node", "-e", "fetch('http://127.0.0.1:' + (process.env.METRICS_PORT || 9464) + '/healthz').then((r) => process.exit(r.ok ? 0 : 1), () => process.exit(1))"]

ENTRYPOINT ["node", "dist/src/cli/main.js"]
CMD ["worker"]
