"""The configuration's schema: its sections as pydantic models, and the checks on each value.

The schema is the contract in DESIGN.md ("Configuration contract"). Each check raises an error
whose message is the final human reason (`value_error`), so that `load_config` can report
every problem as `FILE: 'dotted.key': reason (value)`.
"""

from __future__ import annotations

import ipaddress
import re
import ssl
from collections.abc import Callable
from pathlib import Path
from typing import Annotated, Literal

from pydantic import AfterValidator, BeforeValidator, Field, PrivateAttr, model_validator

from gateway.base.yaml_files import show, value_error
from gateway.config.schema_routes import RouteConfig
from gateway.config.schema_types import (
    AETitle,
    ClientTlsConfig,
    Count,
    Days,
    FilePath,
    FolderPath,
    IPNetwork,
    Port,
    Seconds,
    SecondsOrZero,
    Text,
    TlsConfig,
    _absolute,
    _reject_empty_path,
    _Section,
    _section,
)

__all__ = [
    "AfterStudyHook",
    "ClientTlsConfig",
    "DeidConfig",
    "DestinationConfig",
    "FreeTextConfig",
    "GatewayConfig",
    "HooksConfig",
    "HttpConfig",
    "HttpTlsConfig",
    "KeysConfig",
    "ListenConfig",
    "RetryConfig",
    "RouteConfig",
    "SourceConfig",
    "SpoolConfig",
    "StudyConfig",
    "TlsConfig",
]

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


class SpoolConfig(_Section):
    """What "acknowledged" promises. `fsync` (the default): the instance file, its folder
    entry and its state row are synced before success is answered, so it survives a power
    cut. `process`: nothing is synced while receiving, so it survives a crash of the gateway
    (kill -9, the OOM killer) but not of the machine; for hosts whose storage or UPS makes
    that the site's choice."""

    durability: Literal["fsync", "process"] = "fsync"


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
    # A CSV of pre-assigned pseudonyms (a clinical trial's subject IDs): original Patient ID
    # [, issuer], pseudonym. Patients not in it are quarantined, or ("keyed") get the
    # keyed pseudonym as everywhere else.
    pseudonym_table: FilePath | None = None
    unlisted_patients: Literal["quarantine", "keyed"] = "quarantine"


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
_DESTINATION_NAME = re.compile(r"[A-Za-z0-9][A-Za-z0-9_-]{0,63}")


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
    # A study round's association is kept open between its batches for this long idle
    # (0: a new association for every batch, for archives that allow one at a time).
    keep_open_seconds: SecondsOrZero = 5.0

    @model_validator(mode="after")
    def _exactly_one_form(self) -> DestinationConfig:
        given = [key for key in _PEER_KEYS if getattr(self, key) is not None]
        if self.folder is not None and given:
            why = "give either folder or ae_title/host/port, not both"
            raise value_error("destination_both", why)
        if self.folder is not None and "keep_open_seconds" in self.model_fields_set:
            raise value_error(
                "destination_keep_open", "only used with ae_title/host/port, not with folder",
                key="keep_open_seconds",
            )  # fmt: skip
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


# A file the gateway may create (the console's accounts): resolved, not required to exist.
NewFilePath = Annotated[Path, BeforeValidator(_reject_empty_path), AfterValidator(_absolute)]


class HttpTlsConfig(_Section):
    """TLS on the HTTP port (the console's logins and originals travel over it)."""

    cert: FilePath
    key: FilePath

    @model_validator(mode="after")
    def _a_key_pair(self) -> HttpTlsConfig:
        if not (self.cert.is_file() and self.key.is_file()):
            return self  # the file checks name what is missing
        context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
        try:
            context.load_cert_chain(self.cert, self.key)
        except (ssl.SSLError, OSError) as exc:
            why = f"not a PEM certificate and its private key ({exc.strerror or exc})"
            raise value_error("http_tls", why, key="cert") from None
        return self


class HttpConfig(_Section):
    host: Text = "127.0.0.1"
    port: Port = 9102
    # The web console (docs/console.md) on this port; off unless said.
    console: bool = False
    # The console's accounts (argon2 hashes, mode 0600); None: storage_dir/console/users.json.
    users: NewFilePath | None = None
    tls: HttpTlsConfig | None = None

    @model_validator(mode="after")
    def _console_off_loopback_needs_tls(self) -> HttpConfig:
        if self.console and self.tls is None and not _loopback(self.host):
            raise value_error(
                "console_tls",
                f"{show(self.host)} serves the console to other machines: its passwords and "
                "quarantined originals need TLS; set http.tls {cert, key} or bind 127.0.0.1",
                key="host",
            )
        return self


class MappingConfig(_Section):
    """A shared store for the sealed pseudonym mapping and the CTP @integer table, for
    several gateways (docs/shared-mapping.md); absent, both are SQLite files in
    `storage_dir`."""

    url: Text  # postgresql://USER@HOST:PORT/DB[?sslmode=verify-full&sslrootcert=...]


class SourceConfig(_Section):
    """The identified archive `pull` queries (C-FIND) and retrieves from: by C-MOVE to the
    gateway's own AE (the archive must know it), or by C-GET for archives that cannot move."""

    ae_title: AETitle
    host: Text
    port: Port
    tls: ClientTlsConfig | None = None
    retrieve: Literal["move", "get"] = "move"
    timeout_seconds: Seconds = 60.0


def _http_url(value: str) -> str:
    if not value.startswith(("http://", "https://")):
        raise value_error("hook_url", f"{show(value)} is not an http:// or https:// URL")
    return value


class AfterStudyHook(_Section):
    """Run when a study round is forwarded, given pseudonymous data only; its outcome is
    audited and never holds up forwarding. `command` is an argv list (no shell)."""

    command: tuple[Text, ...] | None = None
    url: Annotated[str, AfterValidator(_http_url)] | None = None
    timeout_seconds: Seconds = 30.0

    @model_validator(mode="after")
    def _something_to_run(self) -> AfterStudyHook:
        if self.command is None and self.url is None:
            raise value_error("hook_empty", "give a command (an argv list), a url, or both")
        if self.command is not None and not self.command:
            raise value_error("hook_command", "an empty argv list runs nothing", key="command")
        return self


class HooksConfig(_Section):
    after_study: AfterStudyHook | None = None


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
    spool: SpoolConfig = _section()
    # Named destinations beside the main one ("default"), for routes to send to.
    destinations: dict[str, DestinationConfig] = Field(default_factory=dict)
    routes: list[RouteConfig] = Field(default_factory=list)
    source: SourceConfig | None = None
    hooks: HooksConfig = _section()
    mapping: MappingConfig | None = None

    _config_path: Path | None = PrivateAttr(default=None)

    @model_validator(mode="after")
    def _default_destination_folder(self) -> GatewayConfig:
        destination = self.destination
        if destination.folder is None and destination.ae_title is None:
            folder = self.storage_dir / "export"
            # Frozen model: set the computed default in place, before anyone holds it.
            self.__dict__["destination"] = destination.model_copy(update={"folder": folder})
        return self

    @model_validator(mode="after")
    def _routes_name_what_exists(self) -> GatewayConfig:
        if "default" in self.destinations:
            raise value_error(
                "destination_name", "'default' is the main destination's name; use another",
                key="destinations",
            )  # fmt: skip
        for name, destination in self.destinations.items():
            if not _DESTINATION_NAME.fullmatch(name):
                raise value_error(
                    "destination_name", f"{show(name)} is not a name of letters, digits, '-' "
                    "and '_' (it names a folder)", key=f"destinations.{name}",
                )  # fmt: skip
            if "retry" in destination.model_fields_set:
                raise value_error(
                    "destination_retry", "every destination is retried on destination.retry's "
                    "schedule; remove this key", key=f"destinations.{name}.retry",
                )  # fmt: skip
            if destination.folder is None and destination.ae_title is None:
                raise value_error(
                    "destination_peer", "give a folder or ae_title/host/port",
                    key=f"destinations.{name}",
                )  # fmt: skip
        seen: set[str] = set()
        for index, route in enumerate(self.routes):
            if route.name in seen:
                raise value_error(
                    "route_name", f"{show(route.name)} names two rules", key=f"routes.{index}.name"
                )
            seen.add(route.name)
            for target in route.destinations or ():
                if target != "default" and target not in self.destinations:
                    known = ", ".join(["default", *self.destinations])
                    raise value_error(
                        "route_destination",
                        f"{show(target)} is not a destination (known: {known})",
                        key=f"routes.{index}.destinations",
                    )
        return self

    @property
    def config_path(self) -> Path | None:
        """Absolute path of the file this came from; None when built in code."""
        return self._config_path
