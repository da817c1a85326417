"""Reading the gateway's YAML configuration file into a `GatewayConfig`.

Kept apart from the schema so that the sections read as the contract they are (DESIGN.md,
"Configuration contract"), and so that config reads YAML through the one reader every file
the product reads goes through (`gateway.base.yaml_files`: unique keys, the same problem lines).
"""

from __future__ import annotations

import os
from pathlib import Path

from gateway.base.yaml_files import YamlFileError, read_mapping, validate
from gateway.config.schema import GatewayConfig

__all__ = ["ConfigError", "load_config"]


class ConfigError(Exception):
    """Every problem found in one configuration file, one line each.

    Raised once with all problems so that `check-config` reports the whole file, not the
    first mistake only.
    """

    def __init__(self, problems: list[str]) -> None:
        super().__init__("\n".join(problems))
        self.problems: list[str] = list(problems)


def load_config(path: str | os.PathLike[str], *, check_files: bool = True) -> GatewayConfig:
    """Load and validate the YAML file at `path`.

    Relative paths in the file are resolved against the file's folder and returned
    absolute. With `check_files`, the key, certificate, profile and lookup files must exist
    and be readable (set it False to inspect a config on another machine). Raises
    `ConfigError` listing every problem, each as `{path}: '{dotted.key}': {reason}`.
    """
    shown = os.fspath(path)
    config_path = Path(os.path.abspath(shown))
    context = {"base": config_path.parent, "check_files": check_files}
    try:
        data = read_mapping(config_path, shown)
        config = validate(GatewayConfig, data, shown, context=context)
    except YamlFileError as exc:
        raise ConfigError(exc.problems) from None
    config._config_path = config_path
    return config
