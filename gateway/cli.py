"""The `dicom-gateway` command: parses arguments and calls into the package.

Exit codes (DESIGN.md): 0 success, 1 runtime failure, 2 usage or configuration error.
"""

from __future__ import annotations

import argparse
import logging
import os
import sys
from collections.abc import Sequence
from pathlib import Path

EXIT_OK = 0
EXIT_FAILURE = 1
EXIT_USAGE = 2

DEFAULT_CONFIG = Path("conf/gateway.yaml")

log = logging.getLogger("gateway")


def _setup_logging(verbose: bool) -> None:
    """Only the entry point configures logging: stderr, which journald collects."""
    logging.basicConfig(
        level=logging.DEBUG if verbose else logging.INFO,
        format="%(asctime)s %(levelname)s %(name)s: %(message)s",
        stream=sys.stderr,
    )


def _print_problems(problems: Sequence[str]) -> None:
    for problem in problems:
        print(problem, file=sys.stderr)


def _load(config_path: Path):  # -> tuple[GatewayConfig, CompiledProfile] | list[str]
    """Configuration and its profile, or the problems with them (one line each)."""
    from gateway.config import ConfigError, load_config
    from gateway.deid.profile import ProfileError, load_profile

    try:
        config = load_config(config_path)
    except ConfigError as exc:
        return exc.problems
    try:
        profile = load_profile(config.deid.profile)
    except ProfileError as exc:
        return exc.problems
    return config, profile


def cmd_check_config(args: argparse.Namespace) -> int:
    loaded = _load(args.config)
    if isinstance(loaded, list):
        _print_problems(loaded)
        return EXIT_USAGE
    config, profile = loaded
    print(f"{args.config}: OK (site {config.site_id}, profile {profile.name})")
    return EXIT_OK


def cmd_keys_init(args: argparse.Namespace) -> int:
    from gateway.site_secret import SiteSecretError, create_site_secret

    try:
        path = create_site_secret(Path(args.dir))
    except SiteSecretError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return EXIT_FAILURE
    print(f"site secret written to {path} (mode 0600); name it in keys.secret")
    return EXIT_OK


def cmd_anonymize(args: argparse.Namespace) -> int:
    from gateway.offline import EngineSettings, anonymize_folder
    from gateway.site_secret import SiteSecretError, read_site_secret

    loaded = _load(args.config)
    if isinstance(loaded, list):
        _print_problems(loaded)
        return EXIT_USAGE
    config, profile = loaded
    if args.ocr:
        print("error: OCR pixel redaction is not available in this version", file=sys.stderr)
        return EXIT_USAGE
    try:
        secret = read_site_secret(config.keys.secret)
    except SiteSecretError as exc:
        print(f"{args.config}: 'keys.secret': {exc}", file=sys.stderr)
        return EXIT_USAGE
    workers = args.workers if args.workers is not None else config.workers
    settings = EngineSettings(profile, secret, config.site_id, config.storage_dir)
    try:
        summary = anonymize_folder(Path(args.input), Path(args.output), settings, workers)
    except (NotADirectoryError, ValueError) as exc:
        print(f"error: {exc}", file=sys.stderr)
        return EXIT_USAGE
    root = Path(args.input)
    for problem in summary.problems:
        where = os.path.relpath(problem.source, root)
        print(f"{problem.status}: {where}: {problem.detail}", file=sys.stderr)
    print(summary.line())
    print(f"output: {Path(args.output).resolve()}")
    if summary.quarantined:
        print(f"quarantine: {(config.storage_dir / 'quarantine').resolve()}")
    return EXIT_OK


def cmd_sample(args: argparse.Namespace) -> int:
    from gateway.synthetic import make_demo_sample

    paths = make_demo_sample(Path(args.dir))
    print(f"{len(paths)} synthetic identified instances written to {Path(args.dir).resolve()}")
    return EXIT_OK


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="dicom-gateway", description="DICOM de-identification gateway"
    )
    parser.add_argument("-v", "--verbose", action="store_true", help="debug logging")
    commands = parser.add_subparsers(dest="command", required=True)

    check = commands.add_parser("check-config", help="validate a configuration file")
    check.add_argument("-c", "--config", type=Path, default=DEFAULT_CONFIG)
    check.set_defaults(func=cmd_check_config)

    anonymize = commands.add_parser("anonymize", help="de-identify a folder of files (offline)")
    anonymize.add_argument("input", metavar="INPUT_DIR")
    anonymize.add_argument("output", metavar="OUTPUT_DIR")
    anonymize.add_argument("-c", "--config", type=Path, default=DEFAULT_CONFIG)
    anonymize.add_argument("--workers", type=int, default=None, help="processes (default: config)")
    anonymize.add_argument(
        "--ocr", action=argparse.BooleanOptionalAction, default=False,
        help="OCR pixel redaction (not available yet)",
    )
    anonymize.set_defaults(func=cmd_anonymize)

    keys = commands.add_parser("keys", help="key material")
    key_commands = keys.add_subparsers(dest="keys_command", required=True)
    init = key_commands.add_parser("init", help="create a site secret")
    init.add_argument("--dir", default="certs", help="folder for site-secret.key (default certs)")
    init.set_defaults(func=cmd_keys_init)
    sample = commands.add_parser(
        "sample", help="write a small synthetic study with made-up patient data, for trials"
    )
    sample.add_argument("dir", metavar="DIR")
    sample.set_defaults(func=cmd_sample)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    _setup_logging(args.verbose)
    if getattr(args, "workers", None) is not None and args.workers < 1:
        parser.error("--workers must be at least 1")
    return int(args.func(args))


if __name__ == "__main__":
    sys.exit(main())
