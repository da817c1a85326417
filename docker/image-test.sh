#!/usr/bin/env bash
# Run the built image the way a site would, and check it from the outside:
#   keys init into an empty config volume -> run (config and secret mounted read-only, storage
#   volume) -> runs as uid 10001 -> /healthz 200 -> the image's HEALTHCHECK -> C-ECHO ->
#   a synthetic study sent with storescu comes out de-identified in the storage volume ->
#   SIGTERM drains and exits 0.
# Usage: docker/image-test.sh [IMAGE]   (needs podman, DCMTK's echoscu/storescu, python3)
set -euo pipefail

IMAGE=${1:-localhost/dicom-gateway:latest}
PODMAN=${PODMAN:-podman}
here=$(cd "$(dirname "$0")" && pwd)
read -r -a flags <<<"$("$here/podman-flags.sh")"
name=dicom-gateway-image-test-$$
work=$(mktemp -d "${TMPDIR:-/tmp}/dicom-gateway-image-test.XXXXXX")

as_owner() {  # files for uid 10001 in the container: rootless podman maps uids
    if [ "$(id -u)" = 0 ]; then "$@"; else "$PODMAN" unshare "$@"; fi
}
cleanup() {
    "$PODMAN" rm -f --time 0 "$name" >/dev/null 2>&1 || true
    as_owner rm -rf "$work"
}
trap cleanup EXIT
fail() {
    echo "FAIL: $*" >&2
    "$PODMAN" logs --tail 40 "$name" >&2 2>&1 || true
    exit 1
}
ok() { echo "ok: $*"; }
free_port() {
    python3 -c 'import socket; s = socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])'
}
# Without systemd as init podman cannot schedule the health timer (an error on every run): the
# one-off containers get none, the service's is run by hand below (`healthcheck run`).
podman_run() { "$PODMAN" run "${flags[@]}" "$@"; }
podman_once() { podman_run --rm --no-healthcheck "$@"; }

dicom_port=$(free_port)
http_port=$(free_port)
mkdir -p "$work/etc" "$work/var" "$work/study"
# The shipped example configuration, with a short quiet period so the study completes quickly.
sed 's/^site_id: .*/site_id: IMAGE-TEST/' "$here/gateway.yaml" >"$work/etc/gateway.yaml"
printf 'study:\n  quiet_seconds: 2\n' >>"$work/etc/gateway.yaml"
chmod 0600 "$work/etc/gateway.yaml"
as_owner chown -R 10001:10001 "$work/etc" "$work/var" "$work/study"

podman_once -v "$work/etc:/etc/dicom-gateway" "$IMAGE" keys init --dir /etc/dicom-gateway \
    || fail "keys init"
# The private re-identification key leaves the gateway, as `keys init` asks.
as_owner mv "$work/etc/reid-private.pem" "$work/reid-private.pem" || fail "no reid-private.pem"
ok "keys init wrote the site secret and the re-identification public key"
podman_once -v "$work/etc:/etc/dicom-gateway:ro" "$IMAGE" check-config \
    -c /etc/dicom-gateway/gateway.yaml || fail "check-config"
ok "check-config accepts docker/gateway.yaml"

podman_run -d --name "$name" --health-interval disable \
    -v "$work/etc:/etc/dicom-gateway:ro" -v "$work/var:/var/lib/dicom-gateway" \
    -p "127.0.0.1:$dicom_port:11112" -p "127.0.0.1:$http_port:9102" \
    "$IMAGE" >/dev/null || fail "podman run"

healthz() {
    python3 - "$1" <<'EOF'
import sys, urllib.request
try:
    sys.exit(0 if urllib.request.urlopen(sys.argv[1], timeout=2).status == 200 else 1)
except Exception:
    sys.exit(1)
EOF
}
for _ in $(seq 60); do
    healthz "http://127.0.0.1:$http_port/healthz" && break
    [ "$("$PODMAN" inspect --format '{{.State.Running}}' "$name")" = true ] || fail "container exited"
    sleep 1
done
healthz "http://127.0.0.1:$http_port/healthz" || fail "/healthz not 200 after 60 s"
ok "/healthz answers 200 on the published port"

[ "$("$PODMAN" exec "$name" id -u)" = 10001 ] || fail "not running as uid 10001"
ok "runs as uid 10001"
"$PODMAN" healthcheck run "$name" || fail "the image's HEALTHCHECK failed"
ok "the image's HEALTHCHECK passes"

echoscu -aec DEID_GW 127.0.0.1 "$dicom_port" || fail "C-ECHO"
ok "C-ECHO to DEID_GW"

podman_once -v "$work/study:/study" "$IMAGE" sample /study >/dev/null || fail "sample"
sent=$(find "$work/study" -type f | wc -l)
storescu -aec DEID_GW +sd 127.0.0.1 "$dicom_port" "$work/study" || fail "storescu"
for _ in $(seq 60); do
    out=$( (find "$work/var/export" -type f -name '*.dcm' 2>/dev/null || true) | wc -l)
    [ "$out" -ge "$sent" ] && break
    sleep 1
done
[ "$out" -eq "$sent" ] || fail "$out of $sent instances exported after 60 s"
grep -q '"result": *"forwarded"' "$work/var/audit.jsonl" || fail "no audit record"
ok "$sent instances received, de-identified and exported to the storage volume"

"$PODMAN" stop --time 60 "$name" >/dev/null || fail "podman stop"
code=$("$PODMAN" inspect --format '{{.State.ExitCode}}' "$name")
[ "$code" = 0 ] || fail "exit status $code after SIGTERM"
"$PODMAN" logs "$name" 2>&1 | grep -q "gateway stopped" || fail "no drain in the log"
ok "SIGTERM drains and exits 0"
echo "image-test passed: $IMAGE"
