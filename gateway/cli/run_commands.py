"""Commands that run the site: `run`, `check-config`, `anonymize`, `csv`, `profile review`,
`sample`. Each starts from `gateway.site.load_site`, so each refuses what the others refuse."""

from __future__ import annotations

import argparse
import contextlib
import logging
import os
import sys
from pathlib import Path
from typing import TYPE_CHECKING

from gateway.cli.exits import (
    EXIT_FAILURE,
    EXIT_OK,
    EXIT_USAGE,
    checked_site,
    print_problems,
    storage_config,
)

if TYPE_CHECKING:
    from collections.abc import Callable

    from gateway.offline import Summary


# The thread that answers a sender (an association's DUL thread, store_fast_path) shares the
# interpreter lock with the service's other threads (arrivals, forwarding, the scheduler);
# when one of them is busy, the answer waits until it yields, up to Python's 5 ms switch
# interval. At 1 ms, 2,000 tiny instances were received 1.2-1.45x faster beside busy
# workers (docs/benchmarks.md).
GIL_SWITCH_SECONDS = 0.001


def cmd_check_config(args: argparse.Namespace) -> int:
    site = checked_site(args.config)
    if site is None:
        return EXIT_USAGE
    print(f"{args.config}: OK (site {site.config.site_id}, profile {site.profile.name})")
    return EXIT_OK


def cmd_run(args: argparse.Namespace) -> int:
    from gateway.pipeline.instance import configure_pydicom
    from gateway.service.gateway_service import GatewayService

    site = checked_site(args.config)
    if site is None:
        return EXIT_USAGE
    configure_pydicom()
    sys.setswitchinterval(GIL_SWITCH_SECONDS)
    # pynetdicom logs every request at INFO and whole datasets at DEBUG: keep it to warnings.
    logging.getLogger("pynetdicom").setLevel(logging.WARNING)
    logging.getLogger("apscheduler").setLevel(logging.WARNING)
    try:
        service = GatewayService(site)
    except OSError as exc:
        print(f"error: cannot open the storage folder ({exc.strerror})", file=sys.stderr)
        return EXIT_FAILURE
    try:
        service.run_forever()
    except OSError as exc:
        print(f"error: cannot start: {exc.strerror or exc}", file=sys.stderr)
        return EXIT_FAILURE
    return EXIT_OK


def cmd_anonymize(args: argparse.Namespace) -> int:
    from gateway.offline import anonymize_folder

    if getattr(args, "cluster", None) is not None:
        return _anonymize_on_cluster(args)
    site = checked_site(args.config, ocr=args.ocr)
    if site is None:
        return EXIT_USAGE
    config = site.config
    workers = args.workers if args.workers is not None else config.workers
    summary = _summary_or_exit(
        lambda: anonymize_folder(
            Path(args.input), Path(args.output), site.engine_settings(), workers
        )
    )
    if isinstance(summary, int):
        return summary
    return _report_anonymize(args, config.storage_dir, summary)


def _summary_or_exit(run: Callable[[], Summary]) -> Summary | int:
    """The run's summary, or the exit code of what stopped it (said on stderr)."""
    try:
        return run()
    except (NotADirectoryError, ValueError) as exc:
        print(f"error: {exc}", file=sys.stderr)
        return EXIT_USAGE
    except OSError as exc:
        print(
            f"error: cannot go on ({exc.strerror or type(exc).__name__}); "
            "inputs are untouched, run again when it is fixed",
            file=sys.stderr,
        )
        return EXIT_FAILURE


def _anonymize_on_cluster(args: argparse.Namespace) -> int:
    """`anonymize --cluster`: the same run, its DICOM files on Dask workers (docs/cluster.md)."""
    from gateway.offline import anonymize_folder
    from gateway.offline_cluster import ClusterError, ClusterRunner, SiteKey, connect, parse_cluster

    if args.workers is not None:
        print(
            "error: --workers and --cluster do not go together (the cluster's workers do the work)",
            file=sys.stderr,
        )
        return EXIT_USAGE
    try:
        parse_cluster(args.cluster)
    except ValueError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return EXIT_USAGE
    site = checked_site(args.config, ocr=args.ocr)
    if site is None:
        return EXIT_USAGE
    settings = site.engine_settings()
    with contextlib.suppress(ImportError):
        import distributed  # noqa: F401  (it sets its loggers' levels when imported)
    # Dask's INFO lines (workers joining, leaving) would drown the progress lines.
    logging.getLogger("distributed").setLevel(logging.WARNING)

    def run() -> Summary:
        key = SiteKey.for_site(args.config, args.ocr, settings)
        with connect(args.cluster) as client:
            runner = ClusterRunner(client, key, Path(args.input))
            return anonymize_folder(Path(args.input), Path(args.output), settings, runner=runner)

    try:
        summary = _summary_or_exit(run)
    except ClusterError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return exc.exit_code
    if isinstance(summary, int):
        return summary
    return _report_anonymize(args, site.config.storage_dir, summary)


def _report_anonymize(args: argparse.Namespace, storage_dir: Path, summary: Summary) -> int:
    root = Path(args.input)
    for problem in summary.problems:
        where = os.path.relpath(problem.source, root)
        print(f"{problem.status}: {where}: {problem.detail}", file=sys.stderr)
    print(summary.line())
    print(f"output: {Path(args.output).resolve()}")
    if summary.quarantined:
        print(f"quarantine: {(storage_dir / 'quarantine').resolve()}")
    return EXIT_OK


def cmd_csv(args: argparse.Namespace) -> int:
    from gateway.deid.clinical_csv import CsvError
    from gateway.offline import anonymize_csv

    site = checked_site(args.config, ocr=False)
    if site is None:
        return EXIT_USAGE
    source = Path(args.input)
    if not source.is_file():
        print(f"error: input file not found: {source}", file=sys.stderr)
        return EXIT_USAGE
    try:
        report = anonymize_csv(
            source,
            Path(args.output),
            site.engine_settings(),
            id_column=args.id_column,
            issuer=args.issuer,
        )
    except ValueError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return EXIT_USAGE
    except CsvError as exc:
        print(str(exc), file=sys.stderr)  # FILE:LINE: column 'X': reason (no cell values)
        return EXIT_FAILURE
    except OSError as exc:
        print(
            f"error: cannot write {args.output} ({exc.strerror or type(exc).__name__}); "
            "no output file was left",
            file=sys.stderr,
        )
        return EXIT_FAILURE
    print(
        f"{args.output}: {report.rows} rows, {len(report.patients)} patients; "
        f"dates shifted: {', '.join(report.shifted) or 'none'}; "
        f"dropped: {', '.join(report.dropped) or 'none'}"
        + (
            f"; {report.left_out} rows of {report.unlisted} patients left out "
            "(not in deid.pseudonym_table)"
            if report.left_out
            else ""
        )
    )
    return EXIT_OK


def cmd_profile_review(args: argparse.Namespace) -> int:
    """Every weakening of the Basic Profile in a profile file (YAML or CTP script)."""
    from gateway.deid.profile import ProfileError
    from gateway.deid.profile_loading import load_profile
    from gateway.deid.review import review

    lookup = None
    lenient = bool(getattr(args, "ctp_lenient", False))  # or the configuration's choice
    if args.config is not None:
        config = storage_config(args.config)
        if config is None:
            return EXIT_USAGE
        lookup = config.deid.lookup_table
        lenient = lenient or config.deid.ctp_lenient
    try:
        profile = load_profile(Path(args.file), lookup, ctp_lenient=lenient)
    except ProfileError as exc:
        print_problems(exc.problems)
        return EXIT_USAGE
    verdict = review(profile)
    print(verdict.table())
    return EXIT_OK if verdict.ok else EXIT_FAILURE


def cmd_sample(args: argparse.Namespace) -> int:
    from gateway.tools.synthetic import make_demo_sample

    paths = make_demo_sample(Path(args.dir))
    print(f"{len(paths)} synthetic identified instances written to {Path(args.dir).resolve()}")
    return EXIT_OK
