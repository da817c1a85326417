"""The `dicom-gateway` command: parses arguments and calls into the package.

Exit codes (DESIGN.md): 0 success, 1 runtime failure, 2 usage or configuration error.
"""

from __future__ import annotations

import argparse
import logging
import os
import sys
import time
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


def _config_only(config_path: Path):  # -> GatewayConfig | None
    """The configuration for commands that only need its folders (no key or profile files)."""
    from gateway.config import ConfigError, load_config

    try:
        return load_config(config_path, check_files=False)
    except ConfigError as exc:
        _print_problems(exc.problems)
        return None


def _load(config_path: Path):  # -> tuple[GatewayConfig, CompiledProfile] | list[str]
    """Configuration and its profile, or the problems with them (one line each)."""
    from gateway.config import ConfigError, load_config
    from gateway.deid.profile import ProfileError
    from gateway.deid.profile_loading import load_profile

    try:
        config = load_config(config_path)
    except ConfigError as exc:
        return exc.problems
    try:
        profile = load_profile(config.deid.profile, config.deid.lookup_table)
    except ProfileError as exc:
        return exc.problems
    from gateway.deid.review import review

    verdict = review(profile)
    if not verdict.ok:
        return [f"{config_path}: 'deid.profile': {verdict.message()}"]
    return config, profile


def cmd_profile_review(args: argparse.Namespace) -> int:
    """Every weakening of the Basic Profile in a profile file (YAML or CTP script)."""
    from gateway.deid.profile import ProfileError
    from gateway.deid.profile_loading import load_profile
    from gateway.deid.review import review

    lookup = None
    if args.config is not None:
        config = _config_only(args.config)
        if config is None:
            return EXIT_USAGE
        lookup = config.deid.lookup_table
    try:
        profile = load_profile(Path(args.file), lookup)
    except ProfileError as exc:
        _print_problems(exc.problems)
        return EXIT_USAGE
    verdict = review(profile)
    print(verdict.table())
    return EXIT_OK if verdict.ok else EXIT_FAILURE


def cmd_check_config(args: argparse.Namespace) -> int:
    loaded = _load(args.config)
    if isinstance(loaded, list):
        _print_problems(loaded)
        return EXIT_USAGE
    config, profile = loaded
    if not _reid_key_usable(args.config, config.keys.reid_public_key):
        return EXIT_USAGE
    if _tls_contexts(config, args.config) is None:
        return EXIT_USAGE
    print(f"{args.config}: OK (site {config.site_id}, profile {profile.name})")
    return EXIT_OK


def cmd_keys_init(args: argparse.Namespace) -> int:
    from gateway.keys.reid_keys import (
        PRIVATE_KEY_FILENAME,
        PUBLIC_KEY_FILENAME,
        ReidKeyError,
        create_reid_keypair,
        load_public_key,
        public_key_fingerprint,
    )
    from gateway.keys.site_secret import SECRET_FILENAME, SiteSecretError, create_site_secret

    directory = Path(args.dir)
    existing = [
        directory / name
        for name in (SECRET_FILENAME, PUBLIC_KEY_FILENAME, PRIVATE_KEY_FILENAME)
        if (directory / name).exists()
    ]
    if existing:
        # All or nothing: a new secret beside an old key pair (or the reverse) is a trap.
        for path in existing:
            print(f"error: {path} exists; keys are never overwritten", file=sys.stderr)
        return EXIT_FAILURE
    try:
        secret = create_site_secret(directory)
        public, private = create_reid_keypair(directory)
        fingerprint = public_key_fingerprint(load_public_key(public))
    except (SiteSecretError, ReidKeyError) as exc:
        print(f"error: {exc}", file=sys.stderr)
        return EXIT_FAILURE
    print(f"site secret written to {secret} (mode 0600): name it in keys.secret")
    print(f"re-identification public key: {public} ({fingerprint}): name it in")
    print("  keys.reid_public_key; every pseudonym issued is sealed to it in mapping.db")
    print(f"re-identification PRIVATE key: {private}")
    print("  It does not belong on the gateway host. Move it to the re-identification")
    print("  officer's machine (offline storage), and keep only the public key here.")
    return EXIT_OK


def cmd_reidentify(args: argparse.Namespace) -> int:
    import getpass

    from gateway.keys.reid_keys import ReidKeyError
    from gateway.reidentify import ReidentifyError, reidentify
    from gateway.stores.audit import AUDIT_FILE, AuditLog
    from gateway.stores.mapping_records import MAPPING_FILENAME, MappingError

    config = _config_only(args.config)
    if config is None:
        return EXIT_USAGE
    try:
        text = reidentify(
            config.storage_dir / MAPPING_FILENAME,
            Path(args.private_key),
            patient=args.patient,
            study=args.study,
            csv_path=Path(args.csv) if args.csv else None,
            id_column=args.id_column,
            csv_output=Path(args.output) if args.output else None,
            audit=AuditLog(config.storage_dir / AUDIT_FILE),
            who=getpass.getuser(),
            ask_passphrase=lambda: getpass.getpass("passphrase for the re-identification key: "),
        )
    except (ReidKeyError, MappingError, ReidentifyError) as exc:
        print(f"error: {exc}", file=sys.stderr)
        return EXIT_FAILURE
    print(text)
    return EXIT_OK


def cmd_anonymize(args: argparse.Namespace) -> int:
    from gateway.offline import EngineSettings, anonymize_folder

    loaded = _load_with_secret(args.config)
    if loaded is None:
        return EXIT_USAGE
    config, profile, secret = loaded
    ocr = config.deid.ocr if args.ocr is None else args.ocr
    pixels = _pixel_config(config, args.config, ocr)
    if pixels is False:
        return EXIT_USAGE
    workers = args.workers if args.workers is not None else config.workers
    settings = EngineSettings(
        profile,
        secret,
        config.site_id,
        config.storage_dir,
        config.keys.reid_public_key,
        pixels or None,
    )
    try:
        summary = anonymize_folder(Path(args.input), Path(args.output), settings, workers)
    except (NotADirectoryError, ValueError) as exc:
        print(f"error: {exc}", file=sys.stderr)
        return EXIT_USAGE
    except OSError as exc:
        print(f"error: cannot go on ({exc.strerror or type(exc).__name__}); "
              "inputs are untouched, run again when it is fixed", file=sys.stderr)
        return EXIT_FAILURE
    root = Path(args.input)
    for problem in summary.problems:
        where = os.path.relpath(problem.source, root)
        print(f"{problem.status}: {where}: {problem.detail}", file=sys.stderr)
    print(summary.line())
    print(f"output: {Path(args.output).resolve()}")
    if summary.quarantined:
        print(f"quarantine: {(config.storage_dir / 'quarantine').resolve()}")
    return EXIT_OK


def cmd_csv(args: argparse.Namespace) -> int:
    from gateway.deid.clinical_csv import CsvError
    from gateway.offline import EngineSettings, anonymize_csv

    loaded = _load_with_secret(args.config)
    if loaded is None:
        return EXIT_USAGE
    config, profile, secret = loaded
    source = Path(args.input)
    if not source.is_file():
        print(f"error: input file not found: {source}", file=sys.stderr)
        return EXIT_USAGE
    settings = EngineSettings(
        profile, secret, config.site_id, config.storage_dir, config.keys.reid_public_key
    )
    try:
        report = anonymize_csv(
            source, Path(args.output), settings, id_column=args.id_column, issuer=args.issuer
        )
    except ValueError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return EXIT_USAGE
    except CsvError as exc:
        print(str(exc), file=sys.stderr)  # FILE:LINE: column 'X': reason (no cell values)
        return EXIT_FAILURE
    except OSError as exc:
        print(f"error: cannot write {args.output} ({exc.strerror or type(exc).__name__}); "
              "no output file was left", file=sys.stderr)
        return EXIT_FAILURE
    print(
        f"{args.output}: {report.rows} rows, {len(report.patients)} patients; "
        f"dates shifted: {', '.join(report.shifted) or 'none'}; "
        f"dropped: {', '.join(report.dropped) or 'none'}"
    )
    return EXIT_OK


def _load_with_secret(config_path: Path):  # -> (config, profile, secret) | None
    from gateway.keys.site_secret import SiteSecretError, read_site_secret

    loaded = _load(config_path)
    if isinstance(loaded, list):
        _print_problems(loaded)
        return None
    config, profile = loaded
    try:
        secret = read_site_secret(config.keys.secret)
    except SiteSecretError as exc:
        print(f"{config_path}: 'keys.secret': {exc}", file=sys.stderr)
        return None
    if not _reid_key_usable(config_path, config.keys.reid_public_key):
        return None
    return config, profile, secret


def _pixel_config(config, config_path: Path, ocr: bool):  # -> PixelConfig | None | False
    """The pixel stage's configuration when OCR is on (None when off), False on a problem.

    Fail closed: with OCR asked for and Tesseract missing, nothing starts (STYLE.md).
    """
    if not ocr:
        return None
    from gateway.pixels.clean import PixelError, check_available
    from gateway.pixels.rules import PixelConfigError, load_pixel_config

    try:
        check_available()
        return load_pixel_config(config.deid.pixel_rules)
    except PixelError as exc:
        print(f"{config_path}: 'deid.ocr': {exc}", file=sys.stderr)
    except PixelConfigError as exc:
        _print_problems(getattr(exc, "problems", [str(exc)]))
    return False


def _tls_contexts(config, config_path: Path):  # -> TlsContexts | None
    """TLS files checked at start-up: a bad path or a key that does not match its
    certificate is a configuration error before anything listens."""
    from gateway.config import ConfigError
    from gateway.net.tls import check_tls

    try:
        return check_tls(config, str(config_path))
    except ConfigError as exc:
        _print_problems(exc.problems)
        return None


def cmd_certs_dev(args: argparse.Namespace) -> int:
    from gateway.keys.dev_certificates import DevCertificateError, make_dev_certificates

    try:
        paths = make_dev_certificates(Path(args.dir))
    except DevCertificateError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return EXIT_FAILURE
    for path in paths:
        print(path)
    print("development certificates only: see the README for production provisioning")
    return EXIT_OK


def _reid_key_usable(config_path: Path, path: Path | None) -> bool:
    """The re-identification public key, when configured, is checked at start-up."""
    from gateway.keys.reid_keys import ReidKeyError, load_public_key

    if path is None:
        log.warning("keys.reid_public_key is not set: no re-identification mapping is kept")
        return True
    try:
        load_public_key(path)
    except ReidKeyError as exc:
        print(f"{config_path}: 'keys.reid_public_key': {exc}", file=sys.stderr)
        return False
    return True


def cmd_run(args: argparse.Namespace) -> int:
    from gateway.pipeline.instance import configure_pydicom
    from gateway.service.gateway_service import GatewayService

    loaded = _load_with_secret(args.config)
    if loaded is None:
        return EXIT_USAGE
    config, profile, secret = loaded
    pixels = _pixel_config(config, args.config, config.deid.ocr)
    if pixels is False:
        return EXIT_USAGE
    tls = _tls_contexts(config, args.config)
    if tls is None:
        return EXIT_USAGE
    configure_pydicom()
    # pynetdicom logs every request at INFO and whole datasets at DEBUG: keep it to warnings.
    logging.getLogger("pynetdicom").setLevel(logging.WARNING)
    logging.getLogger("apscheduler").setLevel(logging.WARNING)
    try:
        service = GatewayService(config, profile, secret, tls=tls, pixels=pixels or None)
    except OSError as exc:
        print(f"error: cannot open the storage folder ({exc.strerror})", file=sys.stderr)
        return EXIT_FAILURE
    try:
        service.run_forever()
    except OSError as exc:
        print(f"error: cannot start: {exc.strerror or exc}", file=sys.stderr)
        return EXIT_FAILURE
    return EXIT_OK


def cmd_quarantine(args: argparse.Namespace) -> int:
    from gateway.stores import quarantine
    from gateway.stores.spool import Spool

    config = _config_only(args.config)
    if config is None:
        return EXIT_USAGE
    storage = config.storage_dir
    if args.quarantine_command == "list":
        entries = quarantine.entries(storage)
        spool = Spool(storage, recover=False)
        failed = spool.failed_rounds()
        spool.close()
        for entry in entries:
            when = time.strftime("%Y-%m-%d %H:%M", time.localtime(entry.created))
            print(f"{entry.id}\tinstance\t{when}\t{entry.stage}/{entry.reason}\t{entry.message}")
        for study_round in failed:
            print(
                f"round-{study_round.id}\tstudy\t{study_round.instances} instances\t"
                f"forward/failed\t{study_round.message}"
            )
        print(f"{len(entries)} quarantined instances, {len(failed)} studies failed to forward")
        return EXIT_OK
    if args.quarantine_command == "release":
        return _release(storage, args.id)
    removed = quarantine.purge(storage, older_than_days=args.older_than)
    print(f"purged {removed} quarantined instances")
    return EXIT_OK


def _release(storage: Path, entry_id: str) -> int:
    from gateway.stores import quarantine
    from gateway.stores.spool import Spool

    spool = Spool(storage, recover=False)
    try:
        if entry_id.startswith("round-") and entry_id[6:].isdigit():
            if spool.release(int(entry_id[6:])):
                print(f"{entry_id}: queued for forwarding again")
                return EXIT_OK
            print(f"error: {entry_id} is not a failed study", file=sys.stderr)
            return EXIT_FAILURE
        try:
            quarantine.release(storage, entry_id, spool)
        except KeyError:
            print(f"error: no quarantine entry {entry_id}", file=sys.stderr)
            return EXIT_FAILURE
        except ValueError as exc:
            print(f"error: {entry_id}: {exc}", file=sys.stderr)
            return EXIT_FAILURE
        print(f"{entry_id}: back in the spool; it is processed again with its study")
        return EXIT_OK
    finally:
        spool.close()


def cmd_sample(args: argparse.Namespace) -> int:
    from gateway.tools.synthetic import make_demo_sample

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
        "--ocr", action=argparse.BooleanOptionalAction, default=None,
        help="find and blank burned-in text (default: deid.ocr of the configuration)",
    )
    anonymize.set_defaults(func=cmd_anonymize)

    table = commands.add_parser(
        "csv", help="pseudonymise a clinical CSV with the same pseudonyms as the images"
    )
    table.add_argument("input", metavar="INPUT.csv")
    table.add_argument("output", metavar="OUTPUT.csv")
    table.add_argument("-c", "--config", type=Path, default=DEFAULT_CONFIG)
    table.add_argument(
        "--id-column", default=None, metavar="NAME",
        help="the patient ID column (default: the profile's, else the first column)",
    )
    table.add_argument(
        "--issuer", default="", metavar="TEXT",
        help="Issuer of Patient ID of the images, for a file without an IssuerOfPatientID "
        "column (the images' pseudonyms depend on it)",
    )
    table.set_defaults(func=cmd_csv)

    keys = commands.add_parser("keys", help="key material")
    key_commands = keys.add_subparsers(dest="keys_command", required=True)
    init = key_commands.add_parser(
        "init", help="create a site secret and a re-identification key pair"
    )
    init.add_argument("--dir", default="certs", help="folder for site-secret.key (default certs)")
    init.set_defaults(func=cmd_keys_init)
    reid = commands.add_parser(
        "reidentify", help="print the originals behind pseudonyms (needs the private key)"
    )
    reid.add_argument("--private-key", required=True, metavar="FILE")
    reid.add_argument("-c", "--config", type=Path, default=DEFAULT_CONFIG)
    which = reid.add_mutually_exclusive_group(required=True)
    which.add_argument("--patient", metavar="PSEUDO_ID")
    which.add_argument("--study", metavar="PSEUDO_UID")
    which.add_argument("--csv", metavar="FILE")
    reid.add_argument("--id-column", default="PatientID", metavar="NAME")
    reid.add_argument("--output", metavar="FILE", help="write the CSV here (0600, new file)")
    reid.set_defaults(func=cmd_reidentify)

    run = commands.add_parser("run", help="run the gateway service (SCP, workers, forwarding)")
    run.add_argument("-c", "--config", type=Path, default=DEFAULT_CONFIG)
    run.set_defaults(func=cmd_run)

    held = commands.add_parser("quarantine", help="instances and studies held back")
    held.add_argument("-c", "--config", type=Path, default=DEFAULT_CONFIG)
    held_commands = held.add_subparsers(dest="quarantine_command", required=True)
    held_commands.add_parser("list", help="quarantined instances and failed studies")
    release = held_commands.add_parser("release", help="re-queue a failed study or an instance")
    release.add_argument("id", metavar="ID")
    purge = held_commands.add_parser("purge", help="delete quarantined instances")
    purge.add_argument("--older-than", type=float, default=None, metavar="DAYS")
    held.set_defaults(func=cmd_quarantine)

    certs = commands.add_parser("certs", help="TLS certificates")
    certs_commands = certs.add_subparsers(dest="certs_command", required=True)
    dev = certs_commands.add_parser(
        "dev", help="a development CA with server and client certificates (for trials)"
    )
    dev.add_argument("--dir", default="certs", help="folder for the PEM files (default certs)")
    dev.set_defaults(func=cmd_certs_dev)

    profile = commands.add_parser("profile", help="de-identification profiles")
    profile_commands = profile.add_subparsers(dest="profile_command", required=True)
    review = profile_commands.add_parser(
        "review", help="list every weakening of the Basic Profile; exit 1 if unacknowledged"
    )
    review.add_argument("file", metavar="FILE", help="a profile (*.yaml) or CTP script (*.script)")
    review.add_argument("-c", "--config", type=Path, default=None,
                        help="configuration naming the CTP lookup table (deid.lookup_table)")
    review.set_defaults(func=cmd_profile_review)

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
