"""The documentation a PACS administrator reads stays true to the code.

Three promises: every configuration key is in docs/configuration.md, every `dicom-gateway`
command the README and docs/ show exists (its `--help` exits 0), and every relative link
points at a file (and, for a Markdown page, a heading) that exists. Pages drift silently
otherwise: a key added to the model, a subcommand renamed, a page moved.
"""

from __future__ import annotations

import functools
import os
import re
import subprocess
import sys
import types
import typing
from collections.abc import Iterator
from pathlib import Path

import pytest
from pydantic import BaseModel

from gateway.config import GatewayConfig

ROOT = Path(__file__).resolve().parents[1]
DOCS = ROOT / "docs"
PAGES = [ROOT / "README.md", *sorted(DOCS.glob("*.md"))]

_FENCE = re.compile(r"^```[^\n]*\n(.*?)^```", re.M | re.S)
_INLINE = re.compile(r"`([^`\n]+)`")
# The command as a word: not a path (/usr/bin/dicom-gateway), a unit (dicom-gateway.service)
# or another name (dicom-gateway-base); what follows on the line is read by a lookahead, so
# `runuser -u dicom-gateway -- dicom-gateway quarantine list` yields both occurrences.
_COMMAND = re.compile(r"(?<![\w/.:-])dicom-gateway(?![\w/.:-])(?=[ \t]+([^\n]*))")
_SUBCOMMAND_WORD = re.compile(r"[a-z][a-z0-9-]*")
_CHOICES = re.compile(r"\{([a-z0-9,-]+)\}")
# [text](target): the target up to the first space or ")".
_LINK = re.compile(r"\[[^\]\n]*\]\(([^)\s]+)(?:\s+\"[^\"]*\")?\)")


# --- (a) every configuration key is documented ------------------------------------------


def _models_in(annotation: object) -> Iterator[type[BaseModel]]:
    """The BaseModel classes an annotation holds: itself, or inside Optional, a union,
    Annotated or a container (`list[Route]`)."""
    if isinstance(annotation, type) and issubclass(annotation, BaseModel):
        yield annotation
        return
    origin = typing.get_origin(annotation)
    if origin is None and not isinstance(annotation, types.UnionType):
        return
    args = typing.get_args(annotation)
    if origin is typing.Annotated:
        args = args[:1]  # the rest is metadata
    for arg in args:
        yield from _models_in(arg)


def config_keys(model: type[BaseModel], prefix: str = "") -> Iterator[str]:
    """Every dotted key path a YAML file may write, sections included."""
    for name, field in model.model_fields.items():
        key = f"{prefix}{field.alias or name}"
        yield key
        for section in _models_in(field.annotation):
            yield from config_keys(section, f"{key}.")


def test_the_config_walk_sees_nested_and_optional_sections() -> None:
    keys = set(config_keys(GatewayConfig))
    assert {"site_id", "listen.allowed_calling_aes", "destination.retry.max_attempts"} <= keys
    assert "listen.tls.require_client_cert" in keys  # under `TlsConfig | None`
    assert "destination.tls.ca" in keys


@pytest.mark.parametrize("key", sorted(set(config_keys(GatewayConfig))))
def test_every_configuration_key_is_in_the_configuration_reference(key: str) -> None:
    text = (DOCS / "configuration.md").read_text(encoding="utf-8")
    assert f"`{key}`" in text, f"docs/configuration.md does not name `{key}`"


# --- (b) every documented command runs ---------------------------------------------------


def gateway_command() -> list[str]:
    """The installed `dicom-gateway` next to this interpreter, else `python -m gateway.cli.main`."""
    entry = Path(sys.executable).parent / "dicom-gateway"
    if entry.is_file() and os.access(entry, os.X_OK):
        return [str(entry)]
    return [sys.executable, "-m", "gateway.cli.main"]


@functools.cache
def help_of(path: tuple[str, ...]) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [*gateway_command(), *path, "--help"],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )


def subcommand_choices(path: tuple[str, ...]) -> frozenset[str]:
    """The subcommands `dicom-gateway PATH` takes, read from its usage line ({a,b,c})."""
    result = help_of(path)
    if result.returncode != 0:
        return frozenset()
    usage = result.stdout.split("\n\n", 1)[0]
    found = _CHOICES.findall(usage)
    return frozenset(found[-1].split(",")) if found else frozenset()


def subcommand_paths(words: list[str], path: tuple[str, ...] = ()) -> Iterator[tuple[str, ...]]:
    """The subcommand paths a documented command line names.

    A synopsis such as `quarantine [-c FILE] (list | release ID | purge ...)` names three;
    options and their values between the levels are skipped. A word where a subcommand is
    due that is not one (`keys innit`) stays in the path, so its `--help` fails.
    """
    if not path:
        if not words or not _SUBCOMMAND_WORD.fullmatch(words[0]):
            return
        yield from subcommand_paths(words[1:], (words[0],))
        return
    choices = subcommand_choices(path)
    if not choices:
        yield path
        return
    branches = [i for i, word in enumerate(words) if word in choices]
    if not branches:
        first = next((w for w in words if not w.startswith("-")), None)
        if first is not None and _SUBCOMMAND_WORD.fullmatch(first) and first == words[0]:
            yield (*path, first)  # a misspelt subcommand: let --help say so
        else:
            yield path  # the group itself (`dicom-gateway quarantine`)
        return
    for i in branches:
        yield from subcommand_paths(words[i + 1 :], (*path, words[i]))


def documented_commands() -> Iterator[tuple[str, str]]:
    """(page, command line after `dicom-gateway`) for every command in code blocks and code
    spans of the README and docs/."""
    for page in PAGES:
        text = page.read_text(encoding="utf-8")
        blocks = _FENCE.findall(text)
        spans = _INLINE.findall(_FENCE.sub("", text))
        for chunk in [*blocks, *spans]:
            for line in chunk.splitlines():
                line = re.split(r"(?:^|\s)#", line, maxsplit=1)[0]  # a shell comment
                for match in _COMMAND.finditer(line):
                    rest = match.group(1).strip()
                    if rest and not rest.startswith("dicom-gateway"):
                        yield page.relative_to(ROOT).as_posix(), rest


def documented_subcommand_paths() -> dict[tuple[str, ...], str]:
    """Each distinct subcommand path, with the first page and line that shows it."""
    paths: dict[tuple[str, ...], str] = {}
    for page, rest in documented_commands():
        words = re.sub(r"[\[\]()|{}]", " ", rest).split()
        while words and words[0] in ("-v", "--verbose"):
            words = words[1:]
        for path in subcommand_paths(words):
            paths.setdefault(path, f"{page}: dicom-gateway {rest}")
    return paths


def test_every_documented_command_exists() -> None:
    paths = documented_subcommand_paths()
    # The pages show the whole CLI; a parsing slip that finds nothing must not pass.
    assert {("run",), ("quarantine", "release"), ("keys", "init"), ("sample",)} <= set(paths)
    failures = []
    for path, where in sorted(paths.items()):
        result = help_of(path)
        if result.returncode != 0:
            failures.append(
                f"dicom-gateway {' '.join(path)} --help exited {result.returncode} "
                f"(shown in {where}): {result.stderr.strip()[-200:]}"
            )
    assert not failures, "\n".join(failures)


# --- (c) every relative link resolves ------------------------------------------------------


def heading_anchors(page: Path) -> set[str]:
    """GitHub's anchors for a page's headings: lower case, punctuation dropped, spaces to
    hyphens, a repeated heading numbered."""
    anchors: set[str] = set()
    text = _FENCE.sub("", page.read_text(encoding="utf-8"))
    for line in text.splitlines():
        heading = re.match(r"#{1,6}\s+(.*?)\s*#*\s*$", line)
        if heading is None:
            continue
        slug = re.sub(r"[^\w\- ]", "", heading.group(1).lower()).replace(" ", "-")
        candidate, n = slug, 0
        while candidate in anchors:
            n += 1
            candidate = f"{slug}-{n}"
        anchors.add(candidate)
    return anchors


def relative_links() -> Iterator[tuple[Path, str]]:
    for page in PAGES:
        text = _FENCE.sub("", page.read_text(encoding="utf-8"))
        for target in _LINK.findall(text):
            if re.match(r"[a-z][a-z0-9+.-]*:", target) or target.startswith("//"):
                continue  # https:, mailto:, ...
            yield page, target


def test_every_relative_link_points_at_an_existing_file() -> None:
    broken = []
    links = list(relative_links())
    assert any(target.startswith("docs/") for _, target in links)  # the README's map
    for page, target in links:
        file_part, _, anchor = target.partition("#")
        resolved = (page.parent / file_part).resolve() if file_part else page
        where = f"{page.relative_to(ROOT)}: ({target})"
        if not resolved.exists():
            broken.append(f"{where}: no such file")
        elif anchor and resolved.suffix == ".md" and anchor not in heading_anchors(resolved):
            broken.append(f"{where}: no heading #{anchor}")
    assert not broken, "\n".join(broken)


def test_every_docs_page_starts_with_the_task_it_serves() -> None:
    pages = sorted(DOCS.glob("*.md"))
    assert pages
    for page in pages:
        title, blank, task, after = page.read_text(encoding="utf-8").splitlines()[:4]
        assert title.startswith("# ") and not blank, page.name
        assert task.startswith("Read this when you") and not after, f"{page.name}: {task!r}"
