"""The web console: an operator's view of the running gateway (docs/console.md).

It reads the stores (spool, quarantine, audit) and calls the same quarantine release and
purge that `dicom-gateway quarantine` calls; it never reaches into a stage. Served by the
gateway's one HTTP server beside /healthz and /metrics when `http.console` is true.
"""
