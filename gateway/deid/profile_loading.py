"""Which reader a profile file needs: a YAML profile file, or an RSNA CTP script.

Kept apart from `profile.py` so that the compiled profile never depends on its readers
(`profile_file.py`, `ctp/`), which build on it.
"""

from __future__ import annotations

from pathlib import Path

from gateway.deid.ctp.profile import load_script
from gateway.deid.profile import DeidProfile, default_profile
from gateway.deid.profile_file import load_yaml_profile


def load_profile(
    path: Path | None, lookup_table: Path | None = None, ctp_lenient: bool = False
) -> DeidProfile:
    """Read and compile a profile file; None gives the built-in default.

    A `*.script` file is an RSNA CTP DicomAnonymizer script (see `ctp/profile.py`); `lookup_table`
    is the CTP properties file its @lookup and 3-argument @incrementdate read. `ctp_lenient`
    (`deid.ctp_lenient`) reads a script written for CTP's lenient parser (see
    `ctp/script_file.read_script`); YAML profiles ignore it.
    """
    if path is None:
        return default_profile()
    if Path(path).suffix.lower() == ".script":
        return load_script(Path(path), lookup_table, lenient=ctp_lenient)
    return load_yaml_profile(Path(path))
