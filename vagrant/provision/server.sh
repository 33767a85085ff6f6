#!/bin/bash
# server: poptop pptpd (MS-CHAP v2 + MPPE-128 required) on 10.0.0.2, users alice and bob; a TCP
# sink on 9000 for the 1 MB transfers; pppd + pptp-linux to dial the router's terminate mode.
set -euo pipefail
export DEBIAN_FRONTEND=noninteractive
apt-get update -q
apt-get install -y -q --no-install-recommends pptpd ppp pptp-linux python3 busybox iproute2
modprobe -a ppp_generic ppp_async ppp_mppe
cat > /etc/pptpd.conf <<'CONF'
option /etc/ppp/pptpd-options
localip 192.168.77.1
remoteip 192.168.77.10-20
listen 10.0.0.2
CONF
cat > /etc/ppp/pptpd-options <<'OPTS'
name pptpd
refuse-pap
refuse-chap
refuse-mschap
require-mschap-v2
require-mppe-128
nodefaultroute
lock
nobsdcomp
nodeflate
novj
novjccomp
OPTS
cat > /etc/ppp/chap-secrets <<'SECRETS'
# client  server  secret   IP
alice     pptpd   s3cret   *
bob       pptpd   h1dden   *
SECRETS
chmod 600 /etc/ppp/chap-secrets
systemctl enable pptpd
systemctl restart pptpd
bash /fixup/vagrant/provision/sink.sh 9000
echo "server: pptpd on 10.0.0.2 ready"
