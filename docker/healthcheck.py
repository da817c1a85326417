"""The container image's HEALTHCHECK: exit 0 when the gateway's /healthz answers 200.

Python's urllib rather than curl, so the runtime image needs no HTTP client of its own.
$DICOM_GATEWAY_HEALTH_URL names another address when `http.port` is not 9102.
"""

from __future__ import annotations

import os
import sys
import urllib.error
import urllib.request

DEFAULT_URL = "http://127.0.0.1:9102/healthz"


def main() -> int:
    url = os.environ.get("DICOM_GATEWAY_HEALTH_URL") or DEFAULT_URL
    try:
        with urllib.request.urlopen(url, timeout=4) as response:
            healthy = response.status == 200
    except urllib.error.HTTPError as exc:  # 503: not listening or the spool is not writable
        print(f"unhealthy: {url}: HTTP {exc.code}", file=sys.stderr)
        return 1
    except OSError as exc:  # not started yet, or gone
        print(f"unhealthy: {url}: {exc}", file=sys.stderr)
        return 1
    return 0 if healthy else 1


if __name__ == "__main__":
    sys.exit(main())
