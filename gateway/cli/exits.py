"""What every command shares: exit codes, the default configuration, problem lines.

Exit codes (DESIGN.md): 0 success, 1 runtime failure, 2 usage or configuration error.
"""

from __future__ import annotations

import sys
from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from gateway.config import GatewayConfig
    from gateway.site import Site

EXIT_OK = 0
EXIT_FAILURE = 1
EXIT_USAGE = 2

DEFAULT_CONFIG = Path("conf/gateway.yaml")


def print_problems(problems: Sequence[str]) -> None:
    for problem in problems:
        print(problem, file=sys.stderr)


def checked_site(config_path: Path, *, ocr: bool | None = None) -> Site | None:
    """The site the configuration describes, every start-up check passed; None after
    printing each problem (one line each, naming file and key)."""
    from gateway.site import SiteError, load_site

    try:
        return load_site(config_path, ocr=ocr)
    except SiteError as exc:
        print_problems(exc.problems)
        return None


def storage_config(config_path: Path) -> GatewayConfig | None:
    """The configuration for commands that only need its folders (no key or profile files)."""
    from gateway.site import SiteError, load_storage_config

    try:
        return load_storage_config(config_path)
    except SiteError as exc:
        print_problems(exc.problems)
        return None
