#!/bin/bash
# 1a on real VMs (run on client1 and client2): pppd + pptp-linux through the router's PAT address
# to a PPTP server; MS-CHAP v2 with MPPE-128; ping the server's PPP address and, when the server
# runs the TCP sink (the Linux pptpd box), send 1 MB and compare SHA-256.
#   scenario-pat.sh SERVER USER PASSWORD        (vagrant provision client1 --provision-with pat)
set -uo pipefail
server=$1 user=$2 password=$3 ifname=pat0 log=/var/log/fixup-pat-$1.log
modprobe -a ppp_generic ppp_async ppp_mppe
[ -f /var/run/$ifname.pid ] && kill "$(cat /var/run/$ifname.pid)" 2>/dev/null && sleep 3
rc=0
echo "SCENARIO pat to $server as $user"
if timeout 60 pppd pty "pptp $server --nolaunchpppd --loglevel 1" name "$user" user "$user" password "$password" \
    remotename '*' noauth refuse-eap refuse-pap refuse-chap refuse-mschap require-mppe-128 \
    nobsdcomp nodeflate novj novjccomp ifname $ifname logfile "$log" updetach; then
  peer=$(ip -4 -o addr show dev $ifname | sed -n 's/.* peer \([0-9.]*\).*/\1/p')
  echo "  link up, peer $peer: $(grep -E 'MPPE|authentication succeeded' "$log" | tr '\n' ';')"
  busybox ping -c3 -W3 "$peer" >/dev/null && echo "  PASS ping $peer" || { echo "  FAIL ping $peer"; rc=1; }
  if [ "$server" = 10.0.0.2 ]; then
    out=$(python3 /fixup/tests/interop/guest/xfer.py send --to "$peer:9000" --bytes 1048576 --seed 1)
    echo "$out" | grep -q '"ok": true' && echo "  PASS 1 MB transfer $out" || { echo "  FAIL 1 MB transfer $out"; rc=1; }
  fi
  kill "$(cat /var/run/$ifname.pid)"; sleep 3
else
  echo "  FAIL link did not come up:"; tail -5 "$log"; rc=1
fi
exit $rc
