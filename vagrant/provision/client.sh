#!/bin/bash
# client1/client2: pppd + pptp-linux behind the router's PAT address; client1 is also the inside
# host that terminate-mode dialers reach (TCP sink on port 9001).
set -euo pipefail
export DEBIAN_FRONTEND=noninteractive
apt-get update -q
apt-get install -y -q --no-install-recommends ppp pptp-linux python3 busybox iproute2
# Vagrant's NAT interface keeps the default route: the lab nets go through the router
ip route replace 10.0.0.0/24 via 10.99.1.1
ip route replace 192.168.50.0/24 via 10.99.1.1
cat > /etc/network/if-up.d/fixup-lab <<'HOOK'
#!/bin/sh
ip route replace 10.0.0.0/24 via 10.99.1.1 2>/dev/null || true
ip route replace 192.168.50.0/24 via 10.99.1.1 2>/dev/null || true
HOOK
chmod +x /etc/network/if-up.d/fixup-lab
modprobe -a ppp_generic ppp_async ppp_mppe
bash /fixup/vagrant/provision/sink.sh 9001
echo "client $(hostname): ready"
