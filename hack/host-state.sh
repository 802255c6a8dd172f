#!/usr/bin/env bash
# Prints what the test bed could leave behind on the host, one canonical line per thing, so that
# `hack/host-state.sh > before; make cluster-up; make cluster-down; hack/host-state.sh | diff before -`
# proves `down` left the machine as it was: processes, mounts, network namespaces, links, routes,
# iptables/ip6tables rules, kubelet cgroups and the kernel settings the kubelet changes.
#
#   hack/host-state.sh            print the state
#   hack/host-state.sh check FILE exit 1 (and show it) when the host has something FILE did not;
#                                 what was there before and is gone now (a bed that was already up
#                                 when FILE was taken, stopped by `down`) is shown but is no fault
set -euo pipefail

repo=$(cd "$(dirname "$0")/.." && pwd)

state() {
  set +e +o pipefail # an empty section is a fine answer
  echo "## processes"
  # The test bed's binaries, the node's runtime, and its forwarders (args shortened to the program).
  pgrep -a -f "$repo/.local/bin/|containerd|kubelet|kube-proxy|docker-registry|socat TCP-LISTEN" 2>/dev/null |
    grep -v -e 'host-state.sh' -e 'pgrep' | awk '{print $2}' | sort || true
  echo "## mounts"
  awk '{print $5}' /proc/self/mountinfo | grep -E "$repo/.local|/run/netns|/run/containerd|/var/lib/kubelet|kubepods" | sort || true
  echo "## netns"
  ip netns list 2>/dev/null | sort
  echo "## links"
  ip -o link show | awk -F': ' '{print $2}' | sed 's/@.*//' | sort
  echo "## routes"
  ip route show | sort
  echo "## iptables"
  iptables-save 2>/dev/null | grep -v -e '^#' -e '^:' | sed 's/\[[0-9]*:[0-9]*\]//' | sort
  iptables-save 2>/dev/null | grep '^:' | awk '{print $1}' | sort
  echo "## ip6tables"
  ip6tables-save 2>/dev/null | grep -v -e '^#' -e '^:' | sed 's/\[[0-9]*:[0-9]*\]//' | sort
  ip6tables-save 2>/dev/null | grep '^:' | awk '{print $1}' | sort
  echo "## cgroups"
  find /sys/fs/cgroup -maxdepth 2 -name 'kubepods*' 2>/dev/null | sort
  echo "## paths"
  for p in /run/containerd /var/lib/cni /run/netns /var/lib/kubelet /var/log/pods; do [[ -e $p ]] && echo "$p"; done
  echo "## sysctls"
  for s in vm/overcommit_memory vm/panic_on_oom kernel/panic kernel/panic_on_oops kernel/keys/root_maxkeys \
    kernel/keys/root_maxbytes net/ipv4/ip_forward; do echo "$s=$(cat "/proc/sys/$s")"; done
}

case "${1:-}" in
  "") state ;;
  check)
    [[ -n "${2:-}" ]] || { echo "usage: $0 check FILE" >&2; exit 2; }
    now=$(mktemp)
    state >"$now"
    if diff -u "$2" "$now"; then echo "[host-state] the machine is as it was" >&2; exit 0; fi
    left=$(diff --new-line-format='%L' --old-line-format='' --unchanged-line-format='' "$2" "$now" | grep -v '^## ' || true)
    rm -f "$now"
    if [[ -n "$left" ]]; then
      echo "[host-state] the test bed left these behind:" >&2
      echo "$left" >&2
      exit 1
    fi
    echo "[host-state] nothing left behind (only things that were there before are gone)" >&2 ;;
  *) echo "usage: $0 [check FILE]" >&2; exit 2 ;;
esac
