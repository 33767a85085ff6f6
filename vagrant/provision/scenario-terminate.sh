#!/bin/bash
# 1b on real VMs (run on the server box, outside): pppd + pptp-linux dial the router's terminate
# mode (10.0.0.1, user cisco) with each authentication protocol and MPPE variant the router's
# policy (mppe auto, stateless auto) accepts; ping client1 (inside) and send it 1 MB (SHA-256).
#   vagrant provision server --provision-with terminate
# pppd 2.4.9 cannot do 40-bit MPPE with MS-CHAP v1 ("MS-CHAP LM not supported"): MPPE runs with
# MS-CHAP v2.  Stateful MPPE and 40-bit need the router policy's `stateless: never` / `mppe: 40`.
set -uo pipefail
modprobe -a ppp_generic ppp_async ppp_mppe
rc=0
dial() {  # name, pppd options ...
  local n=$1; shift
  local log=/var/log/fixup-term-$n.log
  echo "SCENARIO terminate $n: $*"
  if timeout 60 pppd pty "pptp 10.0.0.1 --nolaunchpppd --loglevel 1" user cisco password cisco remotename '*' \
      noauth refuse-eap nobsdcomp nodeflate novj novjccomp ifname "$n" logfile "$log" updetach "$@"; then
    echo "  link up: $(grep -E 'MPPE|authentication succeeded' "$log" | tr '\n' ';')"
    ip route replace 10.99.1.0/24 dev "$n"
    busybox ping -c3 -W3 10.99.1.10 >/dev/null && echo "  PASS ping 10.99.1.10" || { echo "  FAIL ping"; rc=1; }
    out=$(python3 /fixup/tests/interop/guest/xfer.py send --to 10.99.1.10:9001 --bytes 1048576 --seed 2)
    echo "$out" | grep -q '"ok": true' && echo "  PASS 1 MB transfer $out" || { echo "  FAIL 1 MB transfer $out"; rc=1; }
    kill "$(cat /var/run/$n.pid)"; sleep 3
  else
    echo "  FAIL link did not come up:"; tail -5 "$log"; rc=1
  fi
}
dial tpap refuse-chap refuse-mschap refuse-mschap-v2 nomppe
dial tchap refuse-pap refuse-mschap refuse-mschap-v2 nomppe
dial tmschap refuse-pap refuse-chap refuse-mschap-v2 require-mppe-128
dial tmsv2 refuse-pap refuse-chap refuse-mschap require-mppe-128
exit $rc
