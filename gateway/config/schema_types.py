"""The schema's building blocks: checked scalar types, paths resolved against the config
file's folder, the common section base, and the TLS sections several places use.

Each check raises an error whose message is the final human reason (`value_error`).
"""

from __future__ import annotations

import ipaddress
import os
from collections.abc import Callable
from pathlib import Path
from typing import Annotated, Any

from pydantic import (
    AfterValidator,
    BaseModel,
    BeforeValidator,
    ConfigDict,
    Field,
    ValidationInfo,
    model_validator,
)

from gateway.base.yaml_files import show, value_error

AE_TITLE_MAX = 16


# --- scalar types ----------------------------------------------------------------------


def _no_bool(what: str) -> Callable[[object], object]:
    """pydantic's lax mode turns `true` into 1; a boolean where a number belongs is a mistake."""

    def check(value: object) -> object:
        if isinstance(value, bool):
            raise value_error("bool_as_number", f"{show(value)} is not {what}")
        return value

    return check


def _not_blank(value: str) -> str:
    if not value.strip():
        raise value_error("blank", f"{show(value)} must not be empty")
    return value


def _port_in_range(value: int) -> int:
    if not 1 <= value <= 65535:
        raise value_error("port_range", f"{value} is out of range (1-65535)")
    return value


def _ae_title(value: str) -> str:
    """PS3.5 6.2 (VR AE): 1-16 characters of the default repertoire, no backslash or
    control characters; leading and trailing spaces are not significant and are removed."""
    why = None
    if not value:
        why = "empty"
    elif not value.strip(" "):
        why = "only spaces"
    elif len(value) > AE_TITLE_MAX:
        why = f"longer than {AE_TITLE_MAX} characters"
    elif "\\" in value:
        why = "contains a backslash"
    elif any(ord(char) < 0x20 or ord(char) == 0x7F for char in value):
        why = "contains a control character"
    elif not value.isascii():
        why = "contains a non-ASCII character"
    if why is not None:
        raise value_error("ae_title", f"{show(value)} is not a valid AE title ({why})")
    return value.strip(" ")


def _ip_network(value: str) -> str:
    """A CIDR network such as `10.0.0.0/8`, `192.168.1.7` or `fd00::/8`. Host bits may be
    set (`10.1.2.3/8` means `10.0.0.0/8`): sysadmins often write an address with its mask.
    The value is kept as written; `net/scp` parses it again."""
    try:
        ipaddress.ip_network(value.strip(), strict=False)
    except ValueError:
        raise value_error("ip_network", f"{show(value)} is not an IP network") from None
    return value.strip()


Count = Annotated[int, BeforeValidator(_no_bool("an integer")), Field(ge=1)]
Seconds = Annotated[float, BeforeValidator(_no_bool("a number")), Field(gt=0, allow_inf_nan=False)]
Days = Seconds  # a positive number, of days
SecondsOrZero = Annotated[
    float, BeforeValidator(_no_bool("a number")), Field(ge=0, allow_inf_nan=False)
]
Port = Annotated[int, BeforeValidator(_no_bool("an integer")), AfterValidator(_port_in_range)]
Text = Annotated[str, AfterValidator(_not_blank)]
AETitle = Annotated[str, AfterValidator(_ae_title)]
IPNetwork = Annotated[str, AfterValidator(_ip_network)]


# --- paths -----------------------------------------------------------------------------


def _reject_empty_path(value: object) -> object:
    # Path("") is "." and would silently mean "the config folder".
    if isinstance(value, str) and not value.strip():
        raise value_error("blank", f"{show(value)} must not be empty")
    return value


def _absolute(value: Path, info: ValidationInfo) -> Path:
    """Resolve against the config file's folder (from the validation context), else cwd."""
    value = value.expanduser()
    if not value.is_absolute():
        base = (info.context or {}).get("base")
        value = Path(base if base is not None else Path.cwd()) / value
    # normpath, not resolve(): keep the user's symlinks, drop the "..".
    return Path(os.path.normpath(value))


def _checking(info: ValidationInfo) -> bool:
    return bool((info.context or {}).get("check_files", False))


def _existing_file(value: Path, info: ValidationInfo) -> Path:
    """Certificates, keys and profiles are checked at start-up, not at first use."""
    value = _absolute(value, info)
    if _checking(info):
        try:
            exists = value.exists()
        except OSError as exc:  # a folder on the way we may not enter
            why = f"cannot look at {value}: {exc.strerror}"
            raise value_error("file_unreadable", why) from None
        if not exists:
            raise value_error("file_not_found", f"file not found: {value}")
        if not value.is_file():
            raise value_error("not_a_file", f"not a file: {value}")
        if not os.access(value, os.R_OK):
            raise value_error("file_unreadable", f"file not readable (permission denied): {value}")
    return value


def _folder(value: Path, info: ValidationInfo) -> Path:
    """A folder the gateway creates when missing; only an existing non-folder is an error."""
    value = _absolute(value, info)
    if _checking(info) and value.exists() and not value.is_dir():
        raise value_error("not_a_folder", f"exists but is not a folder: {value}")
    return value


FilePath = Annotated[Path, BeforeValidator(_reject_empty_path), AfterValidator(_existing_file)]
FolderPath = Annotated[Path, BeforeValidator(_reject_empty_path), AfterValidator(_folder)]


# --- sections --------------------------------------------------------------------------


class _Section(BaseModel):
    """Common settings: unknown keys are errors, values are immutable, defaults validated
    (so default paths are resolved like written ones)."""

    model_config = ConfigDict(extra="forbid", frozen=True, validate_default=True)

    @model_validator(mode="before")
    @classmethod
    def _empty_section_means_defaults(cls, data: Any) -> Any:
        # `listen:` with every child commented out parses as null; treat it as {}.
        if isinstance(data, dict):
            sections = {
                name
                for name, field in cls.model_fields.items()
                if isinstance(field.annotation, type) and issubclass(field.annotation, _Section)
            }
            return {k: ({} if k in sections and v is None else v) for k, v in data.items()}
        return data


def _section() -> Any:
    return Field(default_factory=dict)


class TlsConfig(_Section):
    """TLS for the listening SCP; mutual authentication unless told otherwise."""

    cert: FilePath
    key: FilePath
    ca: FilePath
    require_client_cert: bool = True


class ClientTlsConfig(_Section):
    """TLS for the forwarding SCU: our client certificate and the CA that signed the peer."""

    cert: FilePath
    key: FilePath
    ca: FilePath
