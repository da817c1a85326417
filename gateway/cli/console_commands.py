"""`console user add NAME --role ROLE | remove NAME | list`: the web console's accounts."""

from __future__ import annotations

import argparse
import getpass
import sys
from pathlib import Path
from typing import Any

from gateway.cli.exits import DEFAULT_CONFIG, EXIT_FAILURE, EXIT_OK, EXIT_USAGE, storage_config

ROLES = ("viewer", "reviewer", "admin")


def add_console_parser(commands: Any) -> None:
    """Register `console` on the subparsers of `dicom-gateway`."""
    console = commands.add_parser("console", help="the web console's accounts (docs/console.md)")
    console.add_argument("-c", "--config", type=Path, default=DEFAULT_CONFIG)
    what = console.add_subparsers(dest="console_command", required=True)
    user = what.add_parser("user", help="accounts: add, remove, list")
    user.add_argument("-c", "--config", type=Path, default=argparse.SUPPRESS)
    user_commands = user.add_subparsers(dest="user_command", required=True)
    add = user_commands.add_parser(
        "add", help="add an account or set its password and role (password: prompt or stdin)"
    )
    add.add_argument("name", metavar="NAME")
    add.add_argument("--role", choices=ROLES, required=True)
    add.add_argument("-c", "--config", type=Path, default=argparse.SUPPRESS)
    remove = user_commands.add_parser("remove", help="remove an account")
    remove.add_argument("name", metavar="NAME")
    remove.add_argument("-c", "--config", type=Path, default=argparse.SUPPRESS)
    listing = user_commands.add_parser("list", help="account names and roles")
    listing.add_argument("-c", "--config", type=Path, default=argparse.SUPPRESS)
    console.set_defaults(func=cmd_console)


def _password() -> str | None:
    """From a prompt (twice) on a terminal; else the first line of stdin (CI, scripts)."""
    if sys.stdin.isatty():
        first = getpass.getpass("password: ")
        if getpass.getpass("again: ") != first:
            print("error: the two passwords differ", file=sys.stderr)
            return None
        return first
    line = sys.stdin.readline()
    return line.rstrip("\r\n")


def cmd_console(args: argparse.Namespace) -> int:
    from gateway.console.accounts import AccountError, Accounts, Role, default_users_file

    config = storage_config(args.config)
    if config is None:
        return EXIT_USAGE
    path = config.http.users or default_users_file(config.storage_dir)
    accounts = Accounts(path)
    try:
        if args.user_command == "list":
            for account in accounts.list():
                print(f"{account.name}\t{account.role.name.lower()}")
            return EXIT_OK
        if args.user_command == "remove":
            if not accounts.remove(args.name):
                print(f"error: no account {args.name}", file=sys.stderr)
                return EXIT_FAILURE
            print(f"{args.name}: removed")
            return EXIT_OK
        password = _password()
        if password is None:
            return EXIT_FAILURE
        accounts.add(args.name, password, Role.named(args.role))
    except AccountError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return EXIT_USAGE
    except OSError as exc:
        print(f"error: {path}: {exc.strerror or exc}", file=sys.stderr)
        return EXIT_FAILURE
    print(f"{args.name}: {args.role} account in {path}")
    return EXIT_OK
