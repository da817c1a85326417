# dicom-gateway container image.
#
#   make image                                     podman/buildah on a locally made Debian base
#   docker build -t dicom-gateway .                on debian:bookworm-slim from a registry
#
# BASE_IMAGE must be Debian bookworm (or a derivative with python3 3.11+ and apt): both stages
# use it, so the venv copied from the builder finds the same /usr/bin/python3 at run time.
# The build needs Debian's mirror and PyPI, nothing else. Behind a TLS-intercepting proxy, hand
# its CA bundle to pip without storing it in a layer: --secret id=build-ca,src=/path/ca.pem
ARG BASE_IMAGE=debian:bookworm-slim

# --- builder: the package and its dependencies in /opt/venv ---------------------------------
FROM ${BASE_IMAGE} AS builder
# bookworm's python3 has no ensurepip without python3-venv; the `make image` base has it.
RUN if ! python3 -c 'import ensurepip, venv' 2>/dev/null; then \
        apt-get update \
        && DEBIAN_FRONTEND=noninteractive apt-get install -y --no-install-recommends \
            python3 python3-venv \
        && rm -rf /var/lib/apt/lists/*; \
    fi
WORKDIR /src
COPY pyproject.toml README.md ./
COPY gateway ./gateway
# Every dependency ships manylinux wheels for CPython 3.11: no compiler in the image.
RUN --mount=type=secret,id=build-ca,required=false \
    if [ -f /run/secrets/build-ca ]; then export PIP_CERT=/run/secrets/build-ca; fi \
    && python3 -m venv /opt/venv \
    && /opt/venv/bin/pip install --no-cache-dir --disable-pip-version-check . \
    && /opt/venv/bin/dicom-gateway --help >/dev/null

# --- runtime ---------------------------------------------------------------------------------
FROM ${BASE_IMAGE}
# tesseract: the OCR backend of pixel redaction (deid.ocr), so the image is ready for it.
RUN apt-get update \
    && DEBIAN_FRONTEND=noninteractive apt-get install -y --no-install-recommends \
        python3 tesseract-ocr tesseract-ocr-eng \
    && rm -rf /var/lib/apt/lists/*
# A fixed, high uid/gid: host folders mounted as volumes are chowned to it (10001:10001), and
# it collides with no user of the host or of the base image.
RUN groupadd --system --gid 10001 dicom-gateway \
    && useradd --system --uid 10001 --gid dicom-gateway --no-create-home \
        --home-dir /var/lib/dicom-gateway --shell /usr/sbin/nologin dicom-gateway
COPY --from=builder /opt/venv /opt/venv
COPY docker/healthcheck.py /usr/local/lib/dicom-gateway/healthcheck.py
COPY docker/gateway.yaml /usr/share/dicom-gateway/gateway.yaml
# /etc/dicom-gateway belongs to the service user so that `keys init` can write the site secret
# into a fresh volume; mount it read-only for `run` once the secret is there.
RUN install -d -m 0700 -o dicom-gateway -g dicom-gateway /etc/dicom-gateway /var/lib/dicom-gateway \
    && install -m 0600 -o dicom-gateway -g dicom-gateway \
        /usr/share/dicom-gateway/gateway.yaml /etc/dicom-gateway/gateway.yaml

ENV PATH=/opt/venv/bin:$PATH \
    LANG=C.UTF-8 \
    PYTHONDONTWRITEBYTECODE=1
USER dicom-gateway
WORKDIR /var/lib/dicom-gateway
# /etc/dicom-gateway: gateway.yaml, site-secret.key (and, later, TLS certificates and keys).
# /var/lib/dicom-gateway: storage_dir (spool, outbox, quarantine, state.db, audit trail).
VOLUME ["/etc/dicom-gateway", "/var/lib/dicom-gateway"]
# 11112: DICOM (listen.port); 9102: /healthz and /metrics (http.port).
EXPOSE 11112 9102
# Healthy once the SCP listens and the spool is writable; start-up takes a few seconds.
HEALTHCHECK --interval=30s --timeout=5s --start-period=20s --retries=3 \
    CMD ["python3", "/usr/local/lib/dicom-gateway/healthcheck.py"]
# SIGTERM drains (open associations and in-flight studies finish); give it time to:
# docker/podman stop --time 60, or run --stop-timeout 60.
STOPSIGNAL SIGTERM
ENTRYPOINT ["dicom-gateway"]
CMD ["run", "-c", "/etc/dicom-gateway/gateway.yaml"]
