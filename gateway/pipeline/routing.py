"""Which rule of `routes:` an instance falls under, and what that rule says to do with it.

The rules are tried in order on the instance as received (before de-identification: a rule
may test Modality or Series Description as the modality wrote them); the first whose every
condition holds wins, and no match means the defaults. Each rule names what the worker
needs: a profile key (the engines are built once per worker), pixel settings, the
destinations its clean copy goes to, or that it is dropped.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Any

from pydicom.dataset import Dataset
from pydicom.multival import MultiValue

from gateway.config.schema_routes import Condition, RouteConfig
from gateway.pixels.rules import PixelConfig

DEFAULT_DESTINATION = "default"


@dataclass(frozen=True)
class Test:
    """One compiled condition on one attribute."""

    keyword: str
    equals: tuple[str, ...] | None = None
    regex: re.Pattern[str] | None = None
    present: bool | None = None

    def holds(self, ds: Dataset) -> bool:
        values = _values(ds.get(self.keyword))
        if self.present is not None:
            return bool(values) == self.present
        if self.equals is not None:
            return any(value in self.equals for value in values)
        assert self.regex is not None
        return any(self.regex.search(value) for value in values)


def _values(element: Any) -> list[str]:
    """The attribute's values as text, without the padding; [] when absent or empty."""
    if element is None:
        return []
    value = element.value if hasattr(element, "value") else element
    if value is None or value == "" or value == b"":
        return []
    items = list(value) if isinstance(value, MultiValue | list | tuple) else [value]
    return [text for text in (str(item).strip(" \x00") for item in items) if text]


@dataclass(frozen=True)
class Route:
    """What a matched rule does: `profile` is an index into the worker's engines (0: the
    site's default profile), `pixels` None keeps the default pixel settings."""

    name: str
    tests: tuple[Test, ...]
    profile: int = 0
    pixels: PixelConfig | None = None
    pixels_set: bool = False  # the rule said something about pixels (None may mean "off")
    destinations: tuple[str, ...] = (DEFAULT_DESTINATION,)
    drop: bool = False

    def matches(self, ds: Dataset) -> bool:
        return all(test.holds(ds) for test in self.tests)


def compile_tests(config: RouteConfig) -> tuple[Test, ...]:
    return tuple(_compile(config.keyword(key), condition) for key, condition in config.when.items())


def _compile(keyword: str, condition: Condition) -> Test:
    if condition.present is not None:
        return Test(keyword, present=condition.present)
    if condition.regex is not None:
        return Test(keyword, regex=re.compile(condition.regex))
    equals = condition.equals
    return Test(keyword, equals=tuple([equals] if isinstance(equals, str) else equals or ()))


@dataclass(frozen=True)
class Router:
    """The site's rules, in order (picklable: it travels to the workers)."""

    routes: tuple[Route, ...] = ()

    def route_for(self, ds: Dataset) -> Route | None:
        """The first rule that matches, or None (the defaults)."""
        for route in self.routes:
            if route.matches(ds):
                return route
        return None

    @property
    def destinations(self) -> frozenset[str]:
        return frozenset(name for route in self.routes for name in route.destinations)
