"""`quarantine list | release ID | purge`: what was held back, and putting it back."""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path
from typing import TYPE_CHECKING

from gateway.cli.exits import EXIT_FAILURE, EXIT_OK, EXIT_USAGE, print_problems, storage_config

if TYPE_CHECKING:
    from gateway.config import GatewayConfig


def cmd_quarantine(args: argparse.Namespace) -> int:
    from gateway.stores import quarantine
    from gateway.stores.spool import Spool
    from gateway.stores.spool_rounds import RoundState

    config = storage_config(args.config)
    if config is None:
        return EXIT_USAGE
    storage = config.storage_dir
    if args.quarantine_command == "list":
        entries = quarantine.entries(storage)
        spool = Spool(storage, None, recover=False)  # reads the state; names no file
        failed = spool.failed_rounds()
        held = spool.rounds_in(RoundState.HELD)
        retrying = spool.retrying_rounds()
        spool.close()
        for entry in entries:
            when = time.strftime("%Y-%m-%d %H:%M", time.localtime(entry.created))
            print(f"{entry.id}\tinstance\t{when}\t{entry.stage}/{entry.reason}\t{entry.message}")
        for study_round in failed:
            print(
                f"round-{study_round.id}\tstudy\t{study_round.instances} instances\t"
                f"forward/failed\t{study_round.message}"
            )
        # Rounds whose processing failed (the disk, a worker killed): held ones wait for a
        # release, retrying ones for their next attempt; each with its count of failures.
        for study_round, state in [(r, "held") for r in held] + [(r, "retrying") for r in retrying]:
            print(
                f"round-{study_round.id}\tstudy\t{study_round.instances} instances\t"
                f"process/{state}\t{study_round.attempts} failed attempts: {study_round.message}"
            )
        print(
            f"{len(entries)} quarantined instances, {len(failed)} studies failed to forward, "
            f"{len(held)} studies held after failed processing, "
            f"{len(retrying)} waiting to be processed again"
        )
        return EXIT_OK
    if args.quarantine_command == "release":
        return _release(args.config, config, args.id)
    removed = quarantine.purge(storage, older_than_days=args.older_than)
    print(f"purged {removed} quarantined instances")
    return EXIT_OK


def _release(config_path: Path, config: GatewayConfig, entry_id: str) -> int:
    from gateway.keys.keyed_hash import KeyedHash
    from gateway.keys.site_secret import SiteSecretError, read_site_secret
    from gateway.stores import quarantine
    from gateway.stores.spool import Spool

    storage = config.storage_dir
    a_round = entry_id.startswith("round-") and entry_id[6:].isdigit()
    keyed_hash = None
    if not a_round:  # an instance goes back into the spool, named by its keyed hash
        try:
            keyed_hash = KeyedHash(read_site_secret(config.keys.secret))
        except SiteSecretError as exc:
            print_problems([f"{config_path}: 'keys.secret': {exc}"])
            return EXIT_USAGE
    spool = Spool(storage, keyed_hash, recover=False)
    try:
        if a_round:
            if spool.release(int(entry_id[6:])):
                print(f"{entry_id}: queued for forwarding again")
                return EXIT_OK
            if spool.release_held(int(entry_id[6:])):
                print(f"{entry_id}: queued for processing again")
                return EXIT_OK
            print(f"error: {entry_id} is not a failed or held study", file=sys.stderr)
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


