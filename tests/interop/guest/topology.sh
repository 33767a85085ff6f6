#!/bin/bash
# INSIDE the VM: kernel modules, syslog and the namespaces of the interop run.
#   fgw  fixup:  gw-out 10.0.0.1/24 (outside), gw-in1 10.99.1.1/24, gw-in2 10.99.2.1/24 (inside)
#   outs outside host 10.0.0.2: pptpd (PAT target), the terminate-mode dialers, the PAT sink
#   c1   inside client 10.99.1.10 (also the inside host of terminate mode), c2 inside client 10.99.2.10
set -eu
OUT=$1
modprobe -a ppp_generic ppp_async ppp_mppe veth tun nf_tables nfnetlink_queue xt_NFQUEUE nf_nat
busybox syslogd -O "$OUT/syslog.log" -S
mkdir -p /var/run/pptp
for n in outs fgw c1 c2; do ip netns add $n; ip -n $n link set lo up; done
ip link add gw-out netns fgw type veth peer name o0 netns outs
ip link add gw-in1 netns fgw type veth peer name h0 netns c1
ip link add gw-in2 netns fgw type veth peer name h0 netns c2
ip -n fgw addr add 10.0.0.1/24 dev gw-out
ip -n fgw addr add 10.99.1.1/24 dev gw-in1
ip -n fgw addr add 10.99.2.1/24 dev gw-in2
ip -n outs addr add 10.0.0.2/24 dev o0
ip -n c1 addr add 10.99.1.10/24 dev h0
ip -n c2 addr add 10.99.2.10/24 dev h0
for l in gw-out gw-in1 gw-in2; do ip -n fgw link set $l up; done
ip -n outs link set o0 up
for n in c1 c2; do ip -n $n link set h0 up; done
ip -n c1 route add default via 10.99.1.1
ip -n c2 route add default via 10.99.2.1
ip netns exec fgw sysctl -qw net.ipv4.ip_forward=1
