"""Start-up: one configuration file turned into a checked site, or every problem with it.

Every way of running (`run`, `anonymize`, `csv`, `check-config`) starts here, and the
service takes nothing else, so none of them can run on a weakened profile, a readable
secret, an unusable re-identification key, a bad TLS file or pixel cleaning that cannot
run (STYLE.md: certificates, keys and folders are checked at start-up, not at first use).
Each problem is one line, `FILE: 'key.path': reason`, naming the file as the user typed it.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass, field
from pathlib import Path

from gateway.config import ConfigError, GatewayConfig, load_config
from gateway.deid.ctp.profile import CtpProfile
from gateway.deid.free_text import FreeTextSettings
from gateway.deid.profile import DeidProfile, ProfileError
from gateway.deid.pseudonym_table import (
    PseudonymTable,
    PseudonymTableError,
    load_pseudonym_table,
)
from gateway.keys.reid_keys import ReidKeyError, load_public_key
from gateway.keys.site_secret import SiteSecretError, read_site_secret
from gateway.net.tls import TlsContexts, check_tls
from gateway.pipeline.files import EngineSettings
from gateway.pipeline.route_loading import (
    RouteError,
    load_routes,
    pixel_config,
    reviewed_profile_at,
)
from gateway.pipeline.routing import Router
from gateway.pixels.clean import PixelError
from gateway.pixels.rules import PixelConfig, PixelConfigError
from gateway.stores.mapping_postgres import PostgresMapping
from gateway.stores.mapping_records import MappingError

log = logging.getLogger(__name__)


class SiteError(Exception):
    """Every problem that keeps a site from starting, one line each."""

    def __init__(self, problems: list[str]) -> None:
        super().__init__("\n".join(problems))
        self.problems: list[str] = list(problems)


@dataclass(frozen=True)
class Site:
    """A site as it runs: its configuration and everything in it already checked."""

    config_path: Path
    config: GatewayConfig
    profile: DeidProfile  # reviewed: no unacknowledged weakening of the Basic Profile
    secret: bytes  # the site secret every pseudonym is keyed with
    tls: TlsContexts  # built from listen.tls and destination.tls (None where plain)
    pixels: PixelConfig | None  # None: pixel cleaning off
    free_text: FreeTextSettings  # the recognizer and the site's own word lists
    router: Router = field(default_factory=Router)  # `routes:`, each rule's profile reviewed
    route_profiles: tuple[DeidProfile, ...] = ()
    # deid.pseudonym_table, read and checked (None: every patient gets the keyed pseudonym)
    pseudonym_table: PseudonymTable | None = None

    def engine_settings(self) -> EngineSettings:
        """What each worker process builds its engine and mapping writer from."""
        config = self.config
        return EngineSettings(
            self.profile,
            self.secret,
            config.site_id,
            config.storage_dir,
            config.keys.reid_public_key,
            self.pixels,
            self.free_text,
            router=self.router,
            route_profiles=self.route_profiles,
            pseudonym_table=self.pseudonym_table,
            mapping_url=config.mapping.url if config.mapping is not None else None,
        )


def load_site(config_path: Path, *, ocr: bool | None = None) -> Site:
    """Read and check everything `config_path` names; `ocr` overrides `deid.ocr`.

    Raises `SiteError`. The checks run in the order a problem is best fixed in: the
    configuration file, its profile and the profile's review, the secret, the
    re-identification key, pixel cleaning, then TLS.
    """
    shown = str(config_path)
    try:
        config = load_config(config_path)
    except ConfigError as exc:
        raise SiteError(exc.problems) from None
    profile = reviewed_profile(config, shown)
    try:
        secret = read_site_secret(config.keys.secret)
    except SiteSecretError as exc:
        raise SiteError([f"{shown}: 'keys.secret': {exc}"]) from None
    check_reid_public_key(config.keys.reid_public_key, shown)
    pixels = pixel_settings(config, shown, config.deid.ocr if ocr is None else ocr)
    free_text = free_text_settings(config, shown)
    try:
        router, route_profiles = load_routes(config, shown)
    except RouteError as exc:
        raise SiteError(exc.problems) from None
    table = pseudonym_table(config, shown, (profile, *route_profiles))
    try:
        tls = check_tls(config, shown)
    except ConfigError as exc:
        raise SiteError(exc.problems) from None
    check_mapping_database(config, shown)
    return Site(
        Path(config_path), config, profile, secret, tls, pixels, free_text, router, route_profiles,
        pseudonym_table=table,
    )  # fmt: skip


def load_storage_config(config_path: Path) -> GatewayConfig:
    """The configuration alone, for commands that only need its folders (quarantine,
    reidentify, `profile review -c`): no key, profile or TLS file is read."""
    try:
        return load_config(config_path, check_files=False)
    except ConfigError as exc:
        raise SiteError(exc.problems) from None


def reviewed_profile(config: GatewayConfig, shown: str) -> DeidProfile:
    """The configured profile, refused when it weakens the Basic Profile unacknowledged."""
    try:
        return reviewed_profile_at(config.deid.profile, config, f"{shown}: 'deid.profile'")
    except ProfileError as exc:
        raise SiteError(exc.problems) from None


def free_text_settings(config: GatewayConfig, shown: str) -> FreeTextSettings:
    """deid.free_text with the site's word files read now: a file that cannot be read (or
    a name list that is empty) stops the start, naming the file."""
    section = config.deid.free_text
    words: dict[str, list[str]] = {"names": [], "safe_words": []}
    for key, paths in (("names", section.names), ("safe_words", section.safe_words)):
        for index, path in enumerate(paths):
            try:
                lines = path.read_text(encoding="utf-8").splitlines()
            except (OSError, UnicodeDecodeError) as exc:
                reason = exc.strerror if isinstance(exc, OSError) else "not UTF-8 text"
                raise SiteError(
                    [f"{shown}: 'deid.free_text.{key}.{index}': cannot read {path}: {reason}"]
                ) from None
            found = [w.split("#", 1)[0].strip() for w in lines]
            found = [w for w in found if w]
            if not found:
                raise SiteError([f"{shown}: 'deid.free_text.{key}.{index}': {path} lists no words"])
            words[key].extend(found)
    return FreeTextSettings(
        recognizer=section.recognizer,
        names=tuple(words["names"]),
        safe_words=tuple(words["safe_words"]),
        clean_on_leak=section.clean_on_leak,
    )


def pseudonym_table(
    config: GatewayConfig, shown: str, profiles: tuple[DeidProfile, ...]
) -> PseudonymTable | None:
    """deid.pseudonym_table read now (every problem: `FILE: 'deid.pseudonym_table':
    TABLE:LINE: reason`, never a cell). Refused with a CTP script as the profile: the script
    writes Patient ID and Patient's Name itself (CTP's way is @lookup with a lookup table)."""
    path = config.deid.pseudonym_table
    if path is None:
        return None
    key = f"{shown}: 'deid.pseudonym_table'"
    if any(isinstance(profile, CtpProfile) for profile in profiles):
        raise SiteError([
            f"{key}: cannot be used with a CTP script as a profile (the script writes "
            "Patient ID and Patient's Name itself): give the trial's pseudonyms in the script, "
            "e.g. @lookup(this,ptid) with deid.lookup_table"
        ])  # fmt: skip
    try:
        return load_pseudonym_table(path, config.deid.unlisted_patients)
    except PseudonymTableError as exc:
        raise SiteError([f"{key}: {problem}" for problem in exc.problems]) from None


def check_reid_public_key(path: Path | None, shown: str) -> None:
    """The re-identification public key, when configured, must load now, not at the first
    pseudonym; without one no mapping is kept, which is allowed but said."""
    if path is None:
        log.warning("keys.reid_public_key is not set: no re-identification mapping is kept")
        return
    try:
        load_public_key(path)
    except ReidKeyError as exc:
        raise SiteError([f"{shown}: 'keys.reid_public_key': {exc}"]) from None


def check_mapping_database(config: GatewayConfig, shown: str) -> None:
    """`mapping.url`'s database must answer now, its schema created or migrated (once, in
    this process, before any worker is forked: the connection is closed again)."""
    if config.mapping is None:
        return
    if not config.mapping.url.startswith(("postgresql://", "postgres://")):
        raise SiteError([f"{shown}: 'mapping.url': not a postgresql:// URL"])
    try:
        store = PostgresMapping(config.mapping.url)
    except MappingError as exc:
        raise SiteError([f"{shown}: {exc}"]) from None
    try:
        store.prepare()
    except MappingError as exc:
        raise SiteError([f"{shown}: {exc}"]) from None
    finally:
        store.close()


def pixel_settings(config: GatewayConfig, shown: str, ocr: bool) -> PixelConfig | None:
    """The pixel stage's settings when OCR is on (None when off).

    Fail closed: with OCR asked for and Tesseract missing, nothing starts (STYLE.md). A
    pixel-rules file the configuration names is checked even with OCR off, so that a
    broken one is found by `check-config`, not on the day OCR is switched on.
    """
    try:
        return pixel_config(ocr, config.deid.pixel_rules)
    except PixelError as exc:
        raise SiteError([f"{shown}: 'deid.ocr': {exc}"]) from None
    except PixelConfigError as exc:
        raise SiteError(list(getattr(exc, "problems", [str(exc)]))) from None
