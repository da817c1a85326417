"""What the engine and the marking read from a compiled profile.

A protocol rather than `profile.CompiledProfile` itself, so that the engine sits below the
profile that builds it (`CompiledProfile.build_engine`) and the two never import each other.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Protocol

from gateway.deid.overrides import Action, GroupRule
from gateway.deid.standard import Option


class CompiledRules(Protocol):
    """A profile compiled to one lookup per element (see `profile.compile_profile`)."""

    name: str
    options: frozenset[Option]
    private_action: str
    safe_private: frozenset[tuple[str, int, int]]
    private_group_rules: tuple[GroupRule, ...]
    private_rules: Mapping[tuple[str, int, int], Action]
    paths: Mapping[tuple[int, ...], Mapping[int, Action]]
    strict: bool

    def has(self, option: Option) -> bool: ...

    def action_for(self, tag: int) -> Action | None: ...

    def private_action_for(self, creator: str | None, tag: int) -> Action | None: ...
