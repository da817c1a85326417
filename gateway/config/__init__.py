"""Typed gateway configuration, loaded from YAML: the schema (`schema.py`) and its reader
(`loading.py`). Loading collects every problem in the file (unknown keys, wrong types,
out-of-range values, missing files) and raises one `ConfigError` whose lines name the file,
the dotted key and the raw value, so a sysadmin can fix the whole file in one pass.
"""

from __future__ import annotations

from gateway.config.loading import ConfigError, load_config
from gateway.config.schema import (
    ClientTlsConfig,
    DeidConfig,
    DestinationConfig,
    GatewayConfig,
    HttpConfig,
    KeysConfig,
    ListenConfig,
    RetryConfig,
    StudyConfig,
    TlsConfig,
)

__all__ = [
    "ClientTlsConfig",
    "ConfigError",
    "DeidConfig",
    "DestinationConfig",
    "GatewayConfig",
    "HttpConfig",
    "KeysConfig",
    "ListenConfig",
    "RetryConfig",
    "StudyConfig",
    "TlsConfig",
    "load_config",
]
