#!/bin/bash
# router: fixup from the synced checkout (/fixup), PAT for the inside clients plus terminate mode
# on the outside address.  The policy names the interfaces found by address (eth1/eth2 or ens*).
set -euo pipefail
export DEBIAN_FRONTEND=noninteractive
apt-get update -q
apt-get install -y -q --no-install-recommends make python3 python3-venv python3-dev gcc \
  libnetfilter-queue-dev libnfnetlink-dev nftables iptables iproute2 kmod tcpdump
inside=$(ip -o -4 addr show | awk '$4 ~ /^10\.99\.1\.1\// {print $2}')
outside=$(ip -o -4 addr show | awk '$4 ~ /^10\.0\.0\.1\// {print $2}')
[ -n "$inside" ] && [ -n "$outside" ] || { echo "router: inside/outside interface not found" >&2; exit 1; }
# the kernel PPTP conntrack helper must never be attached: fixup does this job
modprobe -r nf_nat_pptp nf_conntrack_pptp 2>/dev/null || true
sysctl -qw net.ipv4.ip_forward=1
echo net.ipv4.ip_forward=1 > /etc/sysctl.d/60-fixup.conf
cd /fixup && make setup
mkdir -p /etc/fixup
cat > /etc/fixup/policy.yaml <<POLICY
# written by vagrant/provision/router.sh
inside: [$inside]
outside: $outside
fixup: {pptp: {ports: [1723], gre: kernel}}
runtime: {control_socket: /run/fixup/fixup.sock, log_level: info}
terminate:
  listen: 10.0.0.1
  local_address: 192.168.50.1      # not the listen address: Linux pppd clients route it into the tunnel
  authentication: [mschap-v2, mschap, chap, pap]
  encryption: {mppe: auto, required: false}
  pool: 192.168.50.10-192.168.50.20
  users: {cisco: cisco}
POLICY
chmod 600 /etc/fixup/policy.yaml   # it holds a password
/fixup/.venv/bin/fixup check --policy /etc/fixup/policy.yaml
# the project's own unit (systemd/fixup.service) through make install; the policy above is kept
cd /fixup && make install
systemctl daemon-reload
systemctl restart fixup.service   # Type=notify: returns once fixup is ready (or failed)
journalctl -u fixup.service --no-pager | tail -5
echo "router: fixup running (inside $inside, outside $outside)"
