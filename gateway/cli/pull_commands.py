"""`pull`: studies from the identified archive (`source:`) into the running gateway.

    dicom-gateway pull -c FILE (--study UID ... | --accession N ... | --patient ID ...
                                | --csv FILE [--column NAME] [--key study|accession|patient])
                       [--dry-run] [--report FILE] [--resume RUN_ID] [--batch-size N]

See gateway/pull/ for how instances travel (C-MOVE to the gateway's own AE, or C-GET
relayed to it by C-STORE) and gateway/pull/runner.py for the exit status.
"""

from __future__ import annotations

import argparse
import logging
import re
import sys
from pathlib import Path
from typing import Any

from gateway.cli.exits import DEFAULT_CONFIG, EXIT_USAGE, print_problems, storage_config

__all__ = ["add_pull_parser", "cmd_pull"]

_RUN_ID = re.compile(r"^[0-9a-f]{16}$")


def add_pull_parser(commands: Any) -> None:
    """Register `pull` on the subparsers of `dicom-gateway`."""
    pull = commands.add_parser(
        "pull", help="query/retrieve studies from the source archive into the running gateway"
    )
    pull.add_argument("-c", "--config", type=Path, default=DEFAULT_CONFIG)
    which = pull.add_mutually_exclusive_group(required=True)
    which.add_argument("--study", nargs="+", metavar="UID", help="Study Instance UIDs")
    which.add_argument("--accession", nargs="+", metavar="N", help="accession numbers")
    which.add_argument("--patient", nargs="+", metavar="ID", help="patient IDs")
    which.add_argument("--csv", type=Path, metavar="FILE", help="a CSV file with a header row")
    pull.add_argument(
        "--column", metavar="NAME",
        help="the CSV column of keys (default: one named StudyInstanceUID, AccessionNumber "
        "or PatientID, else the first)",
    )  # fmt: skip
    pull.add_argument(
        "--key", choices=["study", "accession", "patient"],
        help="what the CSV column holds (default: what its name says)",
    )  # fmt: skip
    pull.add_argument("--dry-run", action="store_true", help="query and report; move nothing")
    pull.add_argument(
        "--report", type=Path, metavar="FILE",
        help="where to write the JSON run report (default STORAGE/pull/RUN_ID.json)",
    )  # fmt: skip
    pull.add_argument(
        "--resume", metavar="RUN_ID",
        help="continue this run's state (default: the run id of the request itself)",
    )  # fmt: skip
    pull.add_argument(
        "--batch-size", type=int, default=50, metavar="N",
        help="instances asked for per retrieve request (default 50)",
    )  # fmt: skip
    pull.set_defaults(func=cmd_pull)


def cmd_pull(args: argparse.Namespace) -> int:
    from gateway.keys.keyed_hash import KeyedHash
    from gateway.keys.site_secret import SiteSecretError, read_site_secret
    from gateway.net.tls import TlsConfigError, client_context
    from gateway.pull.association import Peer
    from gateway.pull.request import PullRequest, RequestError, csv_request
    from gateway.pull.runner import PullOptions, PullSetup, run_pull

    shown = str(args.config)
    # pynetdicom's INFO and DEBUG lines would drown the progress, and name UIDs.
    logging.getLogger("pynetdicom").setLevel(logging.WARNING)
    if args.batch_size < 1:
        print_problems(["error: --batch-size must be at least 1"])
        return EXIT_USAGE
    if args.resume is not None and not _RUN_ID.match(args.resume):
        print_problems([f"error: --resume {args.resume!r} is not a run id (16 hex digits)"])
        return EXIT_USAGE
    if args.csv is None and (args.column or args.key):
        print_problems(["error: --column and --key go with --csv"])
        return EXIT_USAGE
    config = storage_config(args.config)
    if config is None:
        return EXIT_USAGE
    source = config.source
    if source is None:
        print_problems([
            f"{shown}: 'source': not configured; pull needs the identified archive to query "
            "(source: {ae_title, host, port})"
        ])  # fmt: skip
        return EXIT_USAGE
    try:
        keyed_hash = KeyedHash(read_site_secret(config.keys.secret))
    except SiteSecretError as exc:
        print_problems([f"{shown}: 'keys.secret': {exc}"])
        return EXIT_USAGE
    try:
        if args.csv is not None:
            request = csv_request(args.csv, args.column, args.key)
        else:
            kind = "study" if args.study else "accession" if args.accession else "patient"
            request = PullRequest.from_arguments(kind, args.study or args.accession or args.patient)
    except RequestError as exc:
        print_problems([f"error: {exc}"])
        return EXIT_USAGE
    source_tls = gateway_tls = None
    key = "source.tls"
    try:
        if source.tls is not None:
            source_tls = client_context(source.tls.cert, source.tls.key, source.tls.ca)
        key = "listen.tls"
        listen_tls = config.listen.tls
        if listen_tls is not None:  # the gateway's own certificate as the client's
            gateway_tls = client_context(listen_tls.cert, listen_tls.key, listen_tls.ca)
    except TlsConfigError as exc:
        print_problems([f"{shown}: '{key}.{exc.role}': {exc}"])
        return EXIT_USAGE
    listen = config.listen
    setup = PullSetup(
        source=Peer("source", source.ae_title, source.host, source.port,
                    source.timeout_seconds, source_tls),
        gateway=Peer("gateway", listen.ae_title, listen.host, listen.port,
                     source.timeout_seconds, gateway_tls),
        own_ae=listen.ae_title,
        retrieve=source.retrieve,
        storage=config.storage_dir,
        keyed_hash=keyed_hash,
    )  # fmt: skip
    options = PullOptions(
        dry_run=args.dry_run, batch_size=args.batch_size, report=args.report, resume=args.resume
    )
    return run_pull(setup, request, options, sys.stdout, sys.stderr)
