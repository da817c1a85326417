"""Typed gateway configuration, loaded from YAML.

The schema is the contract in DESIGN.md ("Configuration contract"). Loading collects every
problem in the file (unknown keys, wrong types, out-of-range values, missing files) and
raises one `ConfigError` whose lines name the file, the dotted key and the raw value, so a
sysadmin can fix the whole file in one pass. This module is a leaf: it imports nothing from
the `gateway` package.
"""

from __future__ import annotations

import datetime as dt
import ipaddress
import os
from collections.abc import Callable
from pathlib import Path
from typing import Annotated, Any

import yaml
from pydantic import (
    AfterValidator,
    BaseModel,
    BeforeValidator,
    ConfigDict,
    Field,
    PrivateAttr,
    ValidationError,
    ValidationInfo,
    model_validator,
)
from pydantic_core import ErrorDetails, PydanticCustomError

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

AE_TITLE_MAX = 16
_SHOW_MAX = 60


class ConfigError(Exception):
    """Every problem found in one configuration file, one line each.

    Raised once with all problems so that `check-config` reports the whole file, not the
    first mistake only.
    """

    def __init__(self, problems: list[str]) -> None:
        super().__init__("\n".join(problems))
        self.problems: list[str] = list(problems)


# --- value rendering and custom errors -------------------------------------------------


def _show(value: object) -> str:
    """Render a raw YAML value the way the user wrote it, shortened, for an error line."""
    if value is None:
        return "null"
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, int | float):
        return repr(value)
    if isinstance(value, dt.date):
        return value.isoformat()
    if isinstance(value, str) and value.isprintable() and "'" not in value:
        text = f"'{value}'"  # as YAML would quote it: no doubled backslashes
    else:
        text = repr(value)
    return text if len(text) <= _SHOW_MAX else text[: _SHOW_MAX - 3] + "..."


def _problem(kind: str, reason: str, key: str | None = None) -> PydanticCustomError:
    """A validation error whose message is already the final, human reason.

    `key`, when given, names the sub-key the problem belongs to (used by cross-field checks
    raised at the level of the enclosing section).
    """
    # The reason goes through ctx so that braces in user values are never template fields.
    ctx = {"reason": reason} if key is None else {"reason": reason, "key": key}
    return PydanticCustomError(f"config_{kind}", "{reason}", ctx)


# --- scalar types ----------------------------------------------------------------------


def _no_bool(what: str) -> Callable[[object], object]:
    """pydantic's lax mode turns `true` into 1; a boolean where a number belongs is a mistake."""

    def check(value: object) -> object:
        if isinstance(value, bool):
            raise _problem("bool_as_number", f"{_show(value)} is not {what}")
        return value

    return check


def _not_blank(value: str) -> str:
    if not value.strip():
        raise _problem("blank", f"{_show(value)} must not be empty")
    return value


def _port_in_range(value: int) -> int:
    if not 1 <= value <= 65535:
        raise _problem("port_range", f"{value} is out of range (1-65535)")
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
        raise _problem("ae_title", f"{_show(value)} is not a valid AE title ({why})")
    return value.strip(" ")


def _ip_network(value: str) -> str:
    """A CIDR network such as `10.0.0.0/8`, `192.168.1.7` or `fd00::/8`. Host bits may be
    set (`10.1.2.3/8` means `10.0.0.0/8`): sysadmins often write an address with its mask.
    The value is kept as written; `net/scp` parses it again."""
    try:
        ipaddress.ip_network(value.strip(), strict=False)
    except ValueError:
        raise _problem("ip_network", f"{_show(value)} is not an IP network") from None
    return value.strip()


Count = Annotated[int, BeforeValidator(_no_bool("an integer")), Field(ge=1)]
Seconds = Annotated[float, BeforeValidator(_no_bool("a number")), Field(gt=0, allow_inf_nan=False)]
Port = Annotated[int, BeforeValidator(_no_bool("an integer")), AfterValidator(_port_in_range)]
Text = Annotated[str, AfterValidator(_not_blank)]
AETitle = Annotated[str, AfterValidator(_ae_title)]
IPNetwork = Annotated[str, AfterValidator(_ip_network)]


# --- paths -----------------------------------------------------------------------------


def _reject_empty_path(value: object) -> object:
    # Path("") is "." and would silently mean "the config folder".
    if isinstance(value, str) and not value.strip():
        raise _problem("blank", f"{_show(value)} must not be empty")
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
            raise _problem("file_unreadable", f"cannot look at {value}: {exc.strerror}") from None
        if not exists:
            raise _problem("file_not_found", f"file not found: {value}")
        if not value.is_file():
            raise _problem("not_a_file", f"not a file: {value}")
        if not os.access(value, os.R_OK):
            raise _problem("file_unreadable", f"file not readable (permission denied): {value}")
    return value


def _folder(value: Path, info: ValidationInfo) -> Path:
    """A folder the gateway creates when missing; only an existing non-folder is an error."""
    value = _absolute(value, info)
    if _checking(info) and value.exists() and not value.is_dir():
        raise _problem("not_a_folder", f"exists but is not a folder: {value}")
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


class ListenConfig(_Section):
    ae_title: AETitle = "DEID_GW"
    host: Text = "127.0.0.1"
    port: Port = 11112
    allowed_calling_aes: list[AETitle] = Field(default_factory=list)
    # Source addresses allowed to connect (CIDR); empty: any. Checked before the TLS
    # handshake and before any DICOM, unlike the calling AE title, which anyone can claim.
    allowed_networks: list[IPNetwork] = Field(default_factory=list)
    max_associations: Count = 10
    tls: TlsConfig | None = None


class StudyConfig(_Section):
    quiet_seconds: Seconds = 30.0


class DeidConfig(_Section):
    profile: FilePath | None = None  # None: the engine's built-in default profile
    lookup_table: FilePath | None = None
    ocr: bool = False
    # Which instances get pixel cleaning, the OCR mode, region rules (conf/pixel_rules.yaml);
    # None: the built-in defaults (US, SC, XA, ES, OT, DOC, BurnedInAnnotation YES).
    pixel_rules: FilePath | None = None


class KeysConfig(_Section):
    secret: FilePath
    reid_public_key: FilePath | None = None


class RetryConfig(_Section):
    max_attempts: Count = 20
    initial_seconds: Seconds = 5.0
    max_seconds: Seconds = 600.0

    @model_validator(mode="after")
    def _initial_not_above_max(self) -> RetryConfig:
        if self.initial_seconds > self.max_seconds:
            raise _problem(
                "retry_order",
                f"{self.max_seconds:g} is less than initial_seconds ({self.initial_seconds:g})",
                key="max_seconds",
            )
        return self


_PEER_KEYS = ("ae_title", "host", "port")


class DestinationConfig(_Section):
    """Either a folder or a DICOM AE (ae_title + host + port, optional tls).

    After `GatewayConfig` validation exactly one form is set: `folder` is None exactly
    when the destination is an AE. Neither form given means the folder `storage_dir/export`.
    """

    folder: FolderPath | None = None
    ae_title: AETitle | None = None
    host: Text | None = None
    port: Port | None = None
    tls: ClientTlsConfig | None = None
    retry: RetryConfig = _section()

    @model_validator(mode="after")
    def _exactly_one_form(self) -> DestinationConfig:
        given = [key for key in _PEER_KEYS if getattr(self, key) is not None]
        if self.folder is not None and given:
            raise _problem("destination_both", "give either folder or ae_title/host/port, not both")
        if self.folder is not None and self.tls is not None:
            raise _problem(
                "destination_tls", "only used with ae_title/host/port, not with folder", key="tls"
            )
        missing = [key for key in _PEER_KEYS if key not in given]
        if (given or self.tls is not None) and missing:
            if len(missing) == 1:
                raise _problem(
                    "destination_peer", "missing (required for a DICOM destination)", missing[0]
                )
            raise _problem(
                "destination_peer",
                f"a DICOM destination needs ae_title, host and port; missing: {', '.join(missing)}",
            )
        return self

    @property
    def is_folder(self) -> bool:
        return self.folder is not None


class HttpConfig(_Section):
    host: Text = "127.0.0.1"
    port: Port = 9102


class GatewayConfig(_Section):
    """The whole configuration; every path is absolute (see `load_config`)."""

    site_id: Text
    storage_dir: FolderPath = Path("var")
    workers: Count = 2
    listen: ListenConfig = _section()
    study: StudyConfig = _section()
    deid: DeidConfig = _section()
    keys: KeysConfig = _section()
    destination: DestinationConfig = _section()
    http: HttpConfig = _section()

    _config_path: Path | None = PrivateAttr(default=None)

    @model_validator(mode="after")
    def _default_destination_folder(self) -> GatewayConfig:
        destination = self.destination
        if destination.folder is None and destination.ae_title is None:
            folder = self.storage_dir / "export"
            # Frozen model: set the computed default in place, before anyone holds it.
            self.__dict__["destination"] = destination.model_copy(update={"folder": folder})
        return self

    @property
    def config_path(self) -> Path | None:
        """Absolute path of the file this came from; None when built in code."""
        return self._config_path


# --- loading ---------------------------------------------------------------------------


class _UniqueKeyLoader(yaml.SafeLoader):
    """SafeLoader that refuses duplicate keys: PyYAML would silently keep the last one,
    and a second `listen:` block would override the first without a word."""

    def construct_mapping(self, node: yaml.MappingNode, deep: bool = False) -> dict[Any, Any]:
        seen: set[Any] = set()
        for key_node, _value_node in node.value:
            if key_node.tag == "tag:yaml.org,2002:merge":
                continue
            key = self.construct_object(key_node, deep=deep)
            try:
                duplicate = key in seen
            except TypeError:  # unhashable key: let PyYAML report it
                continue
            if duplicate:
                raise yaml.constructor.ConstructorError(
                    None, None, f"duplicate key {_show(key)}", key_node.start_mark
                )
            seen.add(key)
        return super().construct_mapping(node, deep=deep)


def _yaml_problem(exc: yaml.YAMLError) -> str:
    mark = getattr(exc, "problem_mark", None)
    problem = getattr(exc, "problem", None) or str(exc)
    where = f"line {mark.line + 1}, column {mark.column + 1}: " if mark is not None else ""
    return " ".join(f"{where}{problem}".split())


def _kind_of(value: object) -> str:
    if isinstance(value, list):
        return "a list"
    if isinstance(value, str):
        return "a string"
    if isinstance(value, bool):
        return "a boolean"
    if isinstance(value, int | float):
        return "a number"
    return f"a {type(value).__name__}"


def _read_mapping(path: Path, shown: str) -> dict[Any, Any]:
    """Read the file and parse it to a mapping, or raise a single-problem ConfigError."""

    def fail(key: str, reason: str) -> ConfigError:
        return ConfigError([f"{shown}: '{key}': {reason}"])

    try:
        text = path.read_text(encoding="utf-8-sig")
    except FileNotFoundError:
        raise fail("(file)", f"file not found: {os.path.abspath(path)}") from None
    except IsADirectoryError:
        raise fail("(file)", "is a folder, not a file") from None
    except PermissionError:
        raise fail("(file)", "cannot read (permission denied)") from None
    except UnicodeDecodeError as exc:
        raise fail("(file)", f"not UTF-8 text (byte {exc.start})") from None
    except OSError as exc:
        raise fail("(file)", f"cannot read ({exc.strerror or exc})") from None
    try:
        data = yaml.load(text, Loader=_UniqueKeyLoader)  # SafeLoader subclass
    except yaml.YAMLError as exc:
        raise fail("(yaml)", _yaml_problem(exc)) from None
    if data is None:
        raise fail("(yaml)", "the file is empty; expected a mapping of settings")
    if not isinstance(data, dict):
        raise fail("(yaml)", f"the top level is {_kind_of(data)}; expected a mapping of settings")
    return data


_TYPE_REASONS: dict[str, str] = {
    "int_type": "is not an integer",
    "int_parsing": "is not an integer",
    "int_from_float": "is not an integer",
    "float_type": "is not a number",
    "float_parsing": "is not a number",
    "finite_number": "is not a finite number",
    "bool_type": "is not true or false",
    "bool_parsing": "is not true or false",
    "string_type": "is not a string",
    "path_type": "is not a path",
    "list_type": "is not a list",
    "model_type": "is not a mapping",
    "model_attributes_type": "is not a mapping",
    "dict_type": "is not a mapping",
}

_BOUND_REASONS: dict[str, tuple[str, str]] = {
    "greater_than_equal": ("ge", "must be at least"),
    "greater_than": ("gt", "must be more than"),
    "less_than_equal": ("le", "must be at most"),
    "less_than": ("lt", "must be less than"),
}


def _reason(error: ErrorDetails) -> str:
    """One short human reason for one pydantic error, with the raw value where it helps."""
    kind = error["type"]
    ctx = error.get("ctx") or {}
    value = error.get("input")
    if kind.startswith("config_"):
        return str(ctx.get("reason", error["msg"]))
    if kind == "missing":
        return "missing (required)"
    if kind == "extra_forbidden":
        return "unknown key"
    if kind in _TYPE_REASONS:
        reason = f"{_show(value)} {_TYPE_REASONS[kind]}"
        if kind == "string_type" and isinstance(value, int | float | dt.date):
            reason += " (put it in quotes)"
        return reason
    if kind in _BOUND_REASONS:
        bound, words = _BOUND_REASONS[kind]
        return f"{_show(value)} {words} {ctx.get(bound)}"
    return f"{_show(value)}: {error['msg']}"


def _key(error: ErrorDetails) -> str:
    loc = list(error["loc"])
    sub_key = (error.get("ctx") or {}).get("key")
    if sub_key is not None:
        loc.append(sub_key)
    return ".".join(str(part) for part in loc) or "(top level)"


def _problems(error: ValidationError, shown: str) -> list[str]:
    return [f"{shown}: '{_key(item)}': {_reason(item)}" for item in error.errors()]


def load_config(path: str | os.PathLike[str], *, check_files: bool = True) -> GatewayConfig:
    """Load and validate the YAML file at `path`.

    Relative paths in the file are resolved against the file's folder and returned
    absolute. With `check_files`, the key, certificate, profile and lookup files must exist
    and be readable (set it False to inspect a config on another machine). Raises
    `ConfigError` listing every problem, each as `{path}: '{dotted.key}': {reason}`.
    """
    shown = os.fspath(path)
    config_path = Path(os.path.abspath(shown))
    data = _read_mapping(config_path, shown)
    context = {"base": config_path.parent, "check_files": check_files}
    try:
        config = GatewayConfig.model_validate(data, context=context)
    except ValidationError as exc:
        raise ConfigError(_problems(exc, shown)) from None
    config._config_path = config_path
    return config
