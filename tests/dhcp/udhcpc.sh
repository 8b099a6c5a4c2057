#!/bin/sh
# udhcpc's script for the tests: it only sets the address. (The default
# script rewrites /etc/resolv.conf, which network namespaces share with
# the machine.)
want="$ip/${mask:-24}"
case "$1" in
  deconfig)
    ip addr flush dev "$interface"
    ;;
  bound|renew)
    have=$(ip -4 -o addr show dev "$interface" | awk '{print $4}')
    if [ "$have" != "$want" ]; then
      ip addr flush dev "$interface"
      ip addr add "$want" dev "$interface"
    fi
    ;;
esac
exit 0
