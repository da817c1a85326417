"""The configuration's schema: its sections as pydantic models, and the checks on each value.

The schema is the contract in DESIGN.md ("Configuration contract"). Each check raises an error
whose message is the final human reason (`value_error`), so that `load_config` can report
every problem as `FILE: 'dotted.key': reason (value)`.
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
    PrivateAttr,
    ValidationInfo,
    model_validator,
)

from gateway.base.yaml_files import show, value_error

__all__ = [
    "ClientTlsConfig",
    "DeidConfig",
    "DestinationConfig",
    "FreeTextConfig",
    "GatewayConfig",
    "HttpConfig",
    "KeysConfig",
    "ListenConfig",
    "RetryConfig",
    "StudyConfig",
    "TlsConfig",
]

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


_BYTE_UNITS = {
    "": 1, "b": 1, "kb": 10**3, "mb": 10**6, "gb": 10**9,
    "kib": 1 << 10, "mib": 1 << 20, "gib": 1 << 30,
}  # fmt: skip


def _byte_size(low: int, high: int, shown: str) -> Callable[[object], object]:
    """A size in bytes: a number, or one with a unit (`64 KiB`, `1 MiB`, `4 GiB`, `4 GB`),
    between `low` and `high`; sysadmins read `4 GiB` faster than 4294967296."""

    def check(value: object) -> object:
        size = value
        if isinstance(value, str):
            text = value.replace(" ", "")
            number = text[: len(text) - len(text.lstrip("0123456789"))]
            unit = _BYTE_UNITS.get(text[len(number) :].lower())
            size = int(number) * unit if number and unit else None
        if isinstance(value, bool) or not isinstance(size, int):
            raise value_error("byte_size", f"{show(value)} is not a size (e.g. 1048576, '1 MiB')")
        if not low <= size <= high:
            raise value_error("byte_size_range", f"{show(value)} is out of range ({shown})")
        return size

    return check


def _loopback(host: str) -> bool:
    try:
        return host == "localhost" or ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


# Defaults of the receive limits, shared with `net/scp` (docs/security.md, "receive limits").
MAX_PDU_SIZE = 1 << 20
MAX_INSTANCE_SIZE = 4 << 30


class ListenConfig(_Section):
    ae_title: AETitle = "DEID_GW"
    host: Text = "127.0.0.1"
    port: Port = 11112
    allowed_calling_aes: list[AETitle] = Field(default_factory=list)
    # Source addresses allowed to connect (CIDR); empty: any. Checked before the TLS
    # handshake and before any DICOM, unlike the calling AE title, which anyone can claim.
    allowed_networks: list[IPNetwork] = Field(default_factory=list)
    # A host other than loopback needs one of the two lists above, or this said explicitly.
    allow_any: bool = False
    max_associations: Count = 10
    # Connections one source address may hold at once; above max_associations it changes nothing.
    max_associations_per_source: Count = 8
    # Advertised to every sender (PS3.8 D.1) and enforced: a longer P-DATA-TF PDU aborts.
    max_pdu_size: Annotated[
        int, BeforeValidator(_byte_size(4 << 10, 64 << 20, "4 KiB to 64 MiB"))
    ] = MAX_PDU_SIZE
    # A larger C-STORE data set is answered 0xA700 and the association aborted.
    max_instance_size: Annotated[
        int, BeforeValidator(_byte_size(1 << 10, 1 << 50, "1 KiB to 1 PiB"))
    ] = MAX_INSTANCE_SIZE
    # From connection to the first request (P-DATA-TF): silent peers free their slot soon.
    first_request_seconds: Seconds = 10.0
    tls: TlsConfig | None = None

    @model_validator(mode="after")
    def _open_only_when_said(self) -> ListenConfig:
        if not (
            _loopback(self.host)
            or self.allowed_networks
            or self.allowed_calling_aes
            or self.allow_any
        ):
            raise value_error(
                "listen_open",
                f"{show(self.host)} accepts connections from other machines: name who may "
                "send in listen.allowed_networks or listen.allowed_calling_aes, or set "
                "listen.allow_any: true",
                key="host",
            )
        return self


class StudyConfig(_Section):
    quiet_seconds: Seconds = 30.0


class QuarantineConfig(_Section):
    """Quarantined originals hold patient data: a site may have them purged by age."""

    purge_after_days: Days | None = None  # None: kept until `quarantine purge`


class FreeTextConfig(_Section):
    """Free-text cleaning (docs/profiles.md, "Free text")."""

    # Clean kept and cleaned text with the PHI recognizer, not only the instance's own
    # identifiers. Off only for a site that has its own way of vetting text.
    recognizer: bool = True
    # Files of the site's own words, one per line (# comments): names always taken for a
    # person's name, and safe words never taken for one.
    names: tuple[FilePath, ...] = ()
    safe_words: tuple[FilePath, ...] = ()
    # A value the profile (or CTP script) keeps in which the verify gate finds an
    # identifier is cleaned by the recognizer instead of quarantining the instance.
    clean_on_leak: bool = False


class DeidConfig(_Section):
    profile: FilePath | None = None  # None: the engine's built-in default profile
    lookup_table: FilePath | None = None
    # A CTP script written for CTP's lenient parser (unknown functions, calls without `@`):
    # those elements are removed with a warning instead of the script being refused.
    ctp_lenient: bool = False
    ocr: bool = False
    # Which instances get pixel cleaning, the OCR mode, region rules (conf/pixel_rules.yaml);
    # None: the built-in defaults (US, SC, XA, ES, OT, DOC, BurnedInAnnotation YES).
    pixel_rules: FilePath | None = None
    free_text: FreeTextConfig = _section()


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
            raise value_error(
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
            why = "give either folder or ae_title/host/port, not both"
            raise value_error("destination_both", why)
        if self.folder is not None and self.tls is not None:
            raise value_error(
                "destination_tls", "only used with ae_title/host/port, not with folder", key="tls"
            )
        missing = [key for key in _PEER_KEYS if key not in given]
        if (given or self.tls is not None) and missing:
            if len(missing) == 1:
                raise value_error(
                    "destination_peer", "missing (required for a DICOM destination)", missing[0]
                )
            raise value_error(
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
    quarantine: QuarantineConfig = _section()

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
