"""The `dicom-gateway` command: parses arguments and hands each command to its module.

Exit codes (DESIGN.md): 0 success, 1 runtime failure, 2 usage or configuration error.
"""

from __future__ import annotations

import argparse
import logging
import os
import sys
from collections.abc import Sequence
from pathlib import Path

from gateway.cli.console_commands import add_console_parser
from gateway.cli.exits import DEFAULT_CONFIG
from gateway.cli.key_commands import cmd_certs_dev, cmd_keys_init, cmd_reidentify
from gateway.cli.pull_commands import add_pull_parser
from gateway.cli.quarantine_commands import cmd_quarantine
from gateway.cli.run_commands import (
    cmd_anonymize,
    cmd_check_config,
    cmd_csv,
    cmd_profile_review,
    cmd_run,
    cmd_sample,
)


def _setup_logging(verbose: bool) -> None:
    """Only the entry point configures logging: stderr, which journald collects."""
    logging.basicConfig(
        level=logging.DEBUG if verbose else logging.INFO,
        format="%(asctime)s %(levelname)s %(name)s: %(message)s",
        stream=sys.stderr,
    )


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
        "--cluster", default=None, metavar="tcp://HOST:PORT|local:N",
        help="run on a Dask scheduler, or on N local Dask worker processes (docs/cluster.md)",
    )
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
    review.add_argument(
        "--ctp-lenient", action="store_true",
        help="read a CTP script as CTP's lenient parser does (as deid.ctp_lenient: true): "
        "unknown functions and calls without '@' are warned about and their elements removed",
    )
    review.set_defaults(func=cmd_profile_review)

    sample = commands.add_parser(
        "sample", help="write a small synthetic study with made-up patient data, for trials"
    )
    sample.add_argument("dir", metavar="DIR")
    sample.set_defaults(func=cmd_sample)

    add_pull_parser(commands)
    add_console_parser(commands)
    return parser


def entry() -> int:
    """The installed command. Whatever it creates is its owner's alone (umask 0077): the
    storage folder holds identified instances, original UIDs and the sealed mapping."""
    os.umask(0o077)
    return main()


def main(argv: Sequence[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    _setup_logging(args.verbose)
    if getattr(args, "workers", None) is not None and args.workers < 1:
        parser.error("--workers must be at least 1")
    return int(args.func(args))


if __name__ == "__main__":
    sys.exit(entry())
