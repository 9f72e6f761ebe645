#!/usr/bin/env bash
# Generate the chain that deploy/docker-compose.yml runs: a genesis with 4 producers (and 4 more
# members, for wallets), one key file per producer and one node config per validator, under
# deploy/chain/ (or the folder given as $1, which the compose file then needs as CHAIN_DIR).
#
#   deploy/make-compose-chain.sh
#   docker compose -f deploy/docker-compose.yml up -d --build
#
# The configs address peers by the fixed IPs the compose file gives each container (a peer named
# by its service name resolves only once its container exists, and a node resolves its peers'
# addresses once, at start-up). Key files stay 0600 and are chowned to the image's user (uid
# 10001) so the node, which refuses a key file others can read, can open its own.
set -euo pipefail
here="$(cd "$(dirname "$0")" && pwd)"
repo="$(dirname "$here")"
out="${1:-$here/chain}"
python="${PYTHON:-$repo/.venv/bin/python}"
[ -x "$python" ] || python=python3
image_uid=10001
subnet_prefix="172.30.7"   # keep in step with deploy/docker-compose.yml
validators=4

if [ -e "$out/genesis.json" ]; then
    echo "$out/genesis.json exists: the compose network already has a chain." >&2
    echo "To start a new one: docker compose -f deploy/docker-compose.yml down -v && rm -r $out" >&2
    exit 1
fi
"$python" "$repo/cli.py" genesis create --out "$out" --members $((validators + 4)) \
    --producers "$validators" --chain-id community-compose

for i in $(seq 0 $((validators - 1))); do
    peers=""
    for j in $(seq 0 $((validators - 1))); do
        [ "$i" = "$j" ] && continue
        peers="${peers:+$peers, }\"http://$subnet_prefix.$((11 + j)):8080\""
    done
    cat > "$out/node-$i.toml" <<TOML
# validator $i of the compose network (container node$i, $subnet_prefix.$((11 + i)))
[node]
data_dir = "/data"
host = "0.0.0.0"
port = 8080
genesis = "/config/genesis.json"
key_file = "/config/key.json"
peers = [$peers]
TOML
done

if [ "$(id -u)" = 0 ]; then
    chown "$image_uid:$image_uid" "$out"/keys/*.json
else
    echo "note: run  sudo chown $image_uid:$image_uid $out/keys/*.json  so the containers' user can read its key" >&2
fi
echo "compose chain ready in $out (member keys for wallets: $out/dev-keys.json)"
