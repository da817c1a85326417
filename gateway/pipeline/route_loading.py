"""`routes:` turned into a `Router` at start-up, with every profile and pixel file checked.

A rule's profile goes through the same review as `deid.profile` (a rule cannot weaken the
Basic Profile unacknowledged), and its pixel settings through the same checks as the
site's (OCR asked for and not installed stops the start). Problems are lines naming the
file, the key and the reason.
"""

from __future__ import annotations

from pathlib import Path

from gateway.config import GatewayConfig
from gateway.config.schema_routes import RouteConfig
from gateway.deid.profile import DeidProfile, ProfileError
from gateway.deid.profile_loading import load_profile
from gateway.deid.review import review
from gateway.pipeline.routing import DEFAULT_DESTINATION, Route, Router, compile_tests
from gateway.pixels.clean import PixelError, check_available
from gateway.pixels.rules import PixelConfig, PixelConfigError, load_pixel_config


class RouteError(Exception):
    def __init__(self, problems: list[str]) -> None:
        super().__init__("\n".join(problems))
        self.problems = problems


def load_routes(config: GatewayConfig, shown: str) -> tuple[Router, tuple[DeidProfile, ...]]:
    """The router, and the rules' own profiles (index 1 onwards in `Route.profile`; 0 is
    the site's default). One profile file named by several rules is loaded once."""
    profiles: list[DeidProfile] = []
    index_of: dict[str, int] = {}
    routes: list[Route] = []
    for number, rule in enumerate(config.routes):
        where = f"{shown}: 'routes.{number}"
        profile = 0
        if rule.profile is not None:
            key = str(rule.profile)
            if key not in index_of:
                try:
                    profiles.append(reviewed_profile_at(rule.profile, config, f"{where}.profile'"))
                except ProfileError as exc:
                    raise RouteError(exc.problems) from None
                index_of[key] = len(profiles)
            profile = index_of[key]
        pixels = _pixels(rule, config, where) if rule.pixels is not None else None
        routes.append(
            Route(
                name=rule.name,
                tests=compile_tests(rule),
                profile=profile,
                pixels=pixels,
                pixels_set=rule.pixels is not None,
                destinations=tuple(rule.destinations or (DEFAULT_DESTINATION,)),
                drop=rule.drop,
            )
        )
    return Router(tuple(routes)), tuple(profiles)


def reviewed_profile_at(path: Path | None, config: GatewayConfig, where: str) -> DeidProfile:
    """The profile at `path` (None: the built-in default), with the site's lookup table,
    refused when it weakens the Basic Profile unacknowledged: ProfileError, whose review
    line begins with `where` (`FILE: 'key'`). The site's profile and a rule's alike."""
    profile = load_profile(path, config.deid.lookup_table, ctp_lenient=config.deid.ctp_lenient)
    verdict = review(profile)
    if not verdict.ok:
        raise ProfileError([f"{where}: {verdict.message()}"])
    return profile


def pixel_config(ocr: bool, rules: Path | None) -> PixelConfig | None:
    """The pixel stage's settings when OCR is on (None when off); a rules file is checked
    even with OCR off, so a broken one is found by `check-config`, not on the day OCR is
    switched on. Fail closed: OCR asked for and missing raises PixelError."""
    if not ocr:
        if rules is not None:
            load_pixel_config(rules)
        return None
    check_available()
    return load_pixel_config(rules)


def _pixels(rule: RouteConfig, config: GatewayConfig, where: str) -> PixelConfig | None:
    assert rule.pixels is not None
    ocr = config.deid.ocr if rule.pixels.ocr is None else rule.pixels.ocr
    rules = rule.pixels.rules if rule.pixels.rules is not None else config.deid.pixel_rules
    try:
        return pixel_config(ocr, rules)
    except PixelError as exc:
        raise RouteError([f"{where}.pixels.ocr': {exc}"]) from None
    except PixelConfigError as exc:
        raise RouteError(list(getattr(exc, "problems", [str(exc)]))) from None
