#!/usr/bin/env bash
# Starts the bridge emulator, runs `opsync verify` against it twice (text and JSON), then
# stops the emulator. Usage: scripts/verify-demo.sh BIN_DIR
set -euo pipefail
bin=${1:?bin dir}
work=$(mktemp -d)
trap 'kill "$bridge_pid" 2>/dev/null || true; rm -rf "$work"' EXIT

# Free ports chosen by the kernel, so the demo never collides with anything running.
read -r port control < <(python3 -c 'import socket
s=[socket.socket() for _ in range(2)]
[x.bind(("127.0.0.1",0)) for x in s]
print(*[x.getsockname()[1] for x in s])')

"$bin/mock-bridge" --listen "127.0.0.1:$port" --control "127.0.0.1:$control" \
    --users 300 --token-file "$work/token" 2>"$work/bridge.log" &
bridge_pid=$!
for _ in $(seq 50); do [ -s "$work/token" ] && break; sleep 0.1; done

echo "\$ opsync verify --url http://127.0.0.1:$port --token-file TOKEN --allow-http --allow-private-addresses"
"$bin/opsync" verify --url "http://127.0.0.1:$port" --token-file "$work/token" \
    --allow-http --allow-private-addresses
echo
echo "\$ opsync verify ... --json"
"$bin/opsync" verify --url "http://127.0.0.1:$port" --token-file "$work/token" \
    --allow-http --allow-private-addresses --json
