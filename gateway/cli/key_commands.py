"""Commands for key material: `keys init`, `certs dev`, and `reidentify`, the one command
that opens the sealed mapping (with the private key, which never lives on the gateway)."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from gateway.cli.exits import EXIT_FAILURE, EXIT_OK, EXIT_USAGE, storage_config


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
    from gateway.stores.mapping_postgres import PostgresMapping
    from gateway.stores.mapping_records import MAPPING_FILENAME, MappingError

    config = storage_config(args.config)
    if config is None:
        return EXIT_USAGE
    try:
        text = reidentify(
            PostgresMapping(config.mapping.url, writing=False)
            if config.mapping is not None
            else config.storage_dir / MAPPING_FILENAME,
            Path(args.private_key),
            patient=args.patient,
            study=args.study,
            csv_path=Path(args.csv) if args.csv else None,
            id_column=args.id_column,
            csv_output=Path(args.output) if args.output else None,
            audit=AuditLog(config.storage_dir / AUDIT_FILE),
            ask_passphrase=lambda: getpass.getpass("passphrase for the re-identification key: "),
        )
    except (ReidKeyError, MappingError, ReidentifyError) as exc:
        print(f"error: {exc}", file=sys.stderr)
        return EXIT_FAILURE
    print(text)
    return EXIT_OK


def cmd_certs_dev(args: argparse.Namespace) -> int:
    from gateway.keys.dev_certificates import DevCertificateError, make_dev_certificates

    try:
        paths = make_dev_certificates(Path(args.dir))
    except DevCertificateError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return EXIT_FAILURE
    for path in paths:
        print(path)
    print("development certificates only: see docs/security.md for production provisioning")
    return EXIT_OK


