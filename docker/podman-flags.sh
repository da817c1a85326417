#!/usr/bin/env bash
# Print the extra `podman build` / `podman run` flags this machine needs; nothing on a plain
# Debian host. Used by mk/image.mk and docker/image-test.sh; override with $PODMAN_FLAGS.
#
# Two sandboxes (VMs, CI runners) need help, both seen on this project's build machine:
# - cgroups mounted in "hybrid" mode (v1 controllers plus a v2 tree): crun refuses to start
#   any container ("cgroups in hybrid mode not supported"); runc copes.
# - podman's default ulimits (nofile 1048576) above the caller's hard limits, without
#   CAP_SYS_RESOURCE to raise them: "setrlimit RLIMIT_NOFILE: Operation not permitted".
#   Lowering a limit needs no privilege, and the gateway needs few descriptors and processes.
set -euo pipefail

if [ -n "${PODMAN_FLAGS+set}" ]; then
    printf '%s\n' "$PODMAN_FLAGS"
    exit 0
fi

flags=()
if [ -d /sys/fs/cgroup/unified ] && command -v runc >/dev/null; then
    flags+=(--runtime runc)
fi
# CAP_SYS_RESOURCE is capability 24 (linux/capability.h).
cap_eff=$(awk '/^CapEff:/ {print $2}' /proc/self/status)
if [ -n "$cap_eff" ] && (( (16#$cap_eff >> 24 & 1) == 0 )); then
    flags+=(--ulimit nofile=4096:4096 --ulimit nproc=4096:4096)
fi
printf '%s\n' "${flags[*]:-}"
