#!/usr/bin/env bash
# meshroute setup for a fresh Debian or Ubuntu machine with Node.js 20.19+.
#
# Installs what is missing and builds the project:
#   - Debian packages: nats-server, redis-server, and the build packages native dependencies need
#     (librdkafka is built from source by @confluentinc/kafka-javascript with CKJS_LINKING=dynamic);
#   - npm packages (npm ci), with onnxruntime-node's CUDA download skipped (ONNXRUNTIME_NODE_INSTALL=skip);
#   - the TypeScript build (turbo run build).
# The native Kafka client build (about 2.5 minutes on 2 cores) is cached in
# ${MESHROUTE_CACHE_DIR:-~/.cache/meshroute} and reused while its version and the Node ABI match.
#
# Usage: bash scripts/setup.sh [--skip-apt] [--skip-build]
set -euo pipefail

cd "$(dirname "$0")/.."
ROOT=$(pwd)
SKIP_APT=0
SKIP_BUILD=0
for arg in "$@"; do
  case "$arg" in
    --skip-apt) SKIP_APT=1 ;;
    --skip-build) SKIP_BUILD=1 ;;
    -h|--help) sed -n '2,14p' "$0"; exit 0 ;;
    *) echo "setup: unknown option $arg" >&2; exit 2 ;;
  esac
done

say() { printf '\033[1msetup:\033[0m %s\n' "$*"; }
die() { printf '\033[1;31msetup: %s\033[0m\n' "$*" >&2; exit 1; }

# --- Node.js -------------------------------------------------------------------------------------
command -v node >/dev/null || die "Node.js 20.19 or newer is required and 'node' is not on PATH. Install it (https://nodejs.org or your distribution) and run this again."
command -v npm >/dev/null || die "npm is required and not on PATH."
node -e 'const [a,b]=process.versions.node.split(".").map(Number); process.exit(a>20||(a===20&&b>=19)?0:1)' \
  || die "Node.js $(node --version) is too old: meshroute needs 20.19 or newer."

# --- Debian packages -----------------------------------------------------------------------------
APT_PACKAGES=(nats-server redis-server python3 make g++ pkg-config zlib1g-dev libssl-dev libzstd-dev libsasl2-dev libcurl4-openssl-dev)
missing=()
for p in "${APT_PACKAGES[@]}"; do
  dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q 'install ok installed' || missing+=("$p")
done
if [ "${#missing[@]}" -gt 0 ]; then
  if [ "$SKIP_APT" = 1 ]; then
    die "missing Debian packages: ${missing[*]} (rerun without --skip-apt, or: apt-get install ${missing[*]})"
  fi
  [ -f /etc/debian_version ] || die "this is not Debian or Ubuntu; install these yourself, then rerun with --skip-apt: ${missing[*]}"
  SUDO=""
  if [ "$(id -u)" != 0 ]; then
    command -v sudo >/dev/null || die "not root and no sudo: as root run 'apt-get install ${missing[*]}', then this again"
    SUDO="sudo"
  fi
  say "installing Debian packages: ${missing[*]}"
  $SUDO apt-get update -qq
  DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
fi
for bin in nats-server redis-server; do
  command -v "$bin" >/dev/null || die "$bin is still not on PATH after installing its package"
done
say "$(nats-server --version), $(redis-server --version | cut -d' ' -f1-3)"

# --- npm packages --------------------------------------------------------------------------------
export ONNXRUNTIME_NODE_INSTALL=skip   # its postinstall downloads CUDA libraries from outside npm
export CKJS_LINKING=dynamic            # build librdkafka from source against Debian's libraries
say "installing npm packages (npm ci, install scripts run below)"
npm ci --ignore-scripts --no-audit --no-fund --loglevel=error

say "running install scripts: onnxruntime-node, protobufjs"
npm rebuild onnxruntime-node protobufjs --loglevel=error

KAFKA_DIR="$ROOT/node_modules/@confluentinc/kafka-javascript"
KAFKA_VERSION=$(node -p "require('$KAFKA_DIR/package.json').version")
CACHE_DIR="${MESHROUTE_CACHE_DIR:-$HOME/.cache/meshroute}"
CACHE_KEY="kafka-javascript-$KAFKA_VERSION-node-abi$(node -p process.versions.modules)-$(uname -m)-$(cat /etc/debian_version 2>/dev/null || echo unknown)"
CACHED="$CACHE_DIR/$CACHE_KEY.tar.gz"
kafka_loads() { (cd "$ROOT/packages/transport-kafka" && node -e "import('@confluentinc/kafka-javascript').then(m => { if (!m.default.librdkafkaVersion) process.exit(1) })") >/dev/null 2>&1; }
if [ -f "$CACHED" ]; then
  say "reusing the native Kafka client built earlier ($CACHE_KEY)"
  tar -xzf "$CACHED" -C "$KAFKA_DIR"
fi
if ! kafka_loads; then
  say "building the native Kafka client and librdkafka from source (about 2.5 minutes on 2 cores)"
  npm rebuild @confluentinc/kafka-javascript --loglevel=error
  kafka_loads || die "@confluentinc/kafka-javascript did not build; see the output above (needs: ${APT_PACKAGES[*]:4})"
  mkdir -p "$CACHE_DIR"
  tar -czf "$CACHED.tmp" -C "$KAFKA_DIR" build && mv "$CACHED.tmp" "$CACHED"
fi

# Check that the native and platform packages really installed.
(cd packages/backend-gpu && node -e "import('onnxruntime-node').then(m => { if (!m.InferenceSession) process.exit(1) })") \
  || die "onnxruntime-node does not load"
say "native packages load: @confluentinc/kafka-javascript (librdkafka $(cd packages/transport-kafka && node -p "require('@confluentinc/kafka-javascript').librdkafkaVersion" 2>/dev/null || echo '?')), onnxruntime-node"

# --- build ---------------------------------------------------------------------------------------
if [ "$SKIP_BUILD" = 0 ]; then
  say "building (turbo run build)"
  npx --no-install turbo run build --output-logs=errors-only
fi
say "ready. Start the local mesh with: npm run up    Run every test with: npm test"
