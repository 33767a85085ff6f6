#!/usr/bin/env bash
# Install and start the interop TCP sink (answers the SHA-256 of what it read) on port $1.
# Shared by client.sh and server.sh; the repository is synced to /fixup.
set -euo pipefail
port="$1"
cat > /etc/systemd/system/fixup-sink.service <<UNIT
[Unit]
Description=fixup interop TCP sink (1 MB SHA-256 check, port ${port})
After=network-online.target
[Service]
ExecStart=/usr/bin/python3 /fixup/tests/interop/guest/xfer.py sink --listen 0.0.0.0:${port}
Restart=on-failure
[Install]
WantedBy=multi-user.target
UNIT
systemctl daemon-reload
systemctl enable --now fixup-sink.service
