#!/usr/bin/env bash
# Regenerates test/parity/fixtures/{schedule,cache,windows}-litellm-<version>.json from LiteLLM's own code.
#
#   npm run parity:fixture                     # LiteLLM 1.108.14 (the version we are compatible with)
#   LITELLM_VERSION=1.110.2 npm run parity:fixture
#
# LiteLLM and its dependencies go into a virtualenv cached in $BUDGET_LIFECYCLE_CACHE (default
# ~/.cache/budget-lifecycle), one per LiteLLM version. Time-zone rules come from PyPI's tzdata at the release
# Node's ICU carries (TZDATA_VERSION; `node -p process.versions.tz` says 2025c for Node 20.20, which is tzdata
# 2025.3), and PYTHONTZPATH is emptied so the system's zoneinfo cannot differ from it.
set -euo pipefail

LITELLM_VERSION="${LITELLM_VERSION:-1.108.14}"
TZDATA_VERSION="${TZDATA_VERSION:-2025.3}"
here="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
cache="${BUDGET_LIFECYCLE_CACHE:-$HOME/.cache/budget-lifecycle}"
venv="$cache/litellm-$LITELLM_VERSION-tzdata-$TZDATA_VERSION-venv"
out="$here/fixtures/schedule-litellm-$LITELLM_VERSION.json"
cache_out="$here/fixtures/cache-litellm-$LITELLM_VERSION.json"
windows_out="$here/fixtures/windows-litellm-$LITELLM_VERSION.json"
# The window fixture imports LiteLLM's reset job, which needs these of its `proxy` extra (not the whole extra:
# its database and Redis are recorders, see generate-window-fixture.py). Exact versions, so reruns agree.
PROXY_MODULES=(fastapi==0.165.0 backoff==2.2.1 orjson==3.13.0 redis==8.1.0)

node_tz="$(node -p 'process.versions.tz' 2>/dev/null || echo unknown)"
echo "Node's time-zone data: $node_tz; PyPI tzdata: $TZDATA_VERSION (2025.3 is 2025c)"

if [ ! -f "$venv/.complete" ]; then
  echo "Installing litellm==$LITELLM_VERSION and tzdata==$TZDATA_VERSION into $venv"
  rm -rf "$venv"
  python3 -m venv "$venv"
  "$venv/bin/pip" install --quiet --disable-pip-version-check \
    "litellm==$LITELLM_VERSION" "tzdata==$TZDATA_VERSION"
  touch "$venv/.complete"
fi
proxy_marker="$venv/.proxy-modules-$(echo "${PROXY_MODULES[*]}" | tr ' =' '_-')"
if [ ! -f "$proxy_marker" ]; then
  echo "Installing ${PROXY_MODULES[*]} into $venv"
  "$venv/bin/pip" install --quiet --disable-pip-version-check "${PROXY_MODULES[@]}"
  touch "$proxy_marker"
fi

mkdir -p "$here/fixtures"
# LiteLLM fetches a model price list at import; the packaged copy is enough and needs no network.
export LITELLM_LOCAL_MODEL_COST_MAP=True PYTHONTZPATH=''
"$venv/bin/python" "$here/generate-schedule-fixture.py" "$out" "$cache_out"
"$venv/bin/python" "$here/generate-window-fixture.py" "$windows_out"
