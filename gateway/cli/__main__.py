"""`python -m gateway.cli`: the `dicom-gateway` command without its installed script."""

import sys

from gateway.cli.main import entry

sys.exit(entry())
