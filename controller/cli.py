"""``ev-controller``: start the station power controller on a config file.

``ev-controller token --name NAME --role ROLE`` prints a new REST API token instead
(docs/security-rest.md).
"""

from __future__ import annotations

import argparse
import asyncio
import json
import logging
import os
import sys
from collections.abc import Sequence
from pathlib import Path

from pydantic import ValidationError

from controller.app import ControllerApp
from controller.config import (
    API_TOKENS_ENV_VAR,
    CONFIG_ENV_VAR,
    DEFAULT_CONFIG_PATH,
    ConfigError,
    load_config,
    validation_problems,
)
from controller.logformat import configure_logging
from controller.repository import StoreError
from controller.rest_auth import new_token

EXIT_CONFIG = 2


def port(text: str) -> int:
    """A port flag, bounded like the config's (argparse then exits 2 with one line)."""
    try:
        value = int(text)
    except ValueError:
        value = -1
    if not 0 <= value <= 65535:
        shown = text if len(text) <= 20 else text[:20] + "..."
        raise argparse.ArgumentTypeError(f"{shown!r} is not a port from 0 to 65535")
    return value


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="ev-controller",
        usage="%(prog)s [options]\n       %(prog)s token --name NAME --role {read,operate}",
        description="Station power controller for EV charging sites (OCPP 1.6J + REST).",
    )
    parser.add_argument(
        "--config",
        type=Path,
        help=f"station config file (default: ${CONFIG_ENV_VAR} or {DEFAULT_CONFIG_PATH})",
    )
    parser.add_argument("--host", help="address to listen on (default 0.0.0.0)")
    parser.add_argument("--rest-port", type=port, help="REST API port (default 4567)")
    parser.add_argument("--ocpp-port", type=port, help="OCPP WebSocket port (default 9000)")
    parser.add_argument("--db", type=Path, help="SQLite database file (default data/controller.db)")
    parser.add_argument("--log-level", default="INFO", help="DEBUG, INFO, WARNING, ERROR")
    parser.add_argument(
        "--log-format",
        choices=("text", "json"),
        default="text",
        help="text lines (default), or one JSON object a line for log collectors",
    )
    commands = parser.add_subparsers(dest="command", metavar="COMMAND")
    token = commands.add_parser(
        "token",
        help="print a new REST API token and its config entry",
        description="Print a new random REST API token and the entry to add to api.tokens "
        f"(or to the {API_TOKENS_ENV_VAR} list). The config keeps only its SHA-256.",
    )
    token.add_argument("--name", required=True, help="a name for the token (shown in the log)")
    token.add_argument("--role", required=True, choices=("read", "operate"))
    return parser


def print_token(name: str, role: str) -> int:
    try:
        token, entry = new_token(name, role)
    except ValidationError as error:
        for problem in validation_problems(error):
            print(f"ev-controller token: {problem}", file=sys.stderr)
        return EXIT_CONFIG
    print(f"New API token {name!r} (role {role}); it is shown only this once, keep it secret:")
    print(token)
    print(f"Add this entry to api.tokens in the configuration (or to {API_TOKENS_ENV_VAR}):")
    print(json.dumps(entry.model_dump(by_alias=True)))
    return 0


def config_path(flag: Path | None) -> Path:
    """The flag wins over the environment variable, which wins over the default."""
    if flag is not None:
        return flag
    from_env = os.environ.get(CONFIG_ENV_VAR)
    return Path(from_env) if from_env else DEFAULT_CONFIG_PATH


def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    if args.command == "token":
        return print_token(args.name, args.role)
    level = logging.getLevelName(args.log_level.upper())
    if not isinstance(level, int):
        print(f"ev-controller: unknown --log-level {args.log_level!r}", file=sys.stderr)
        return EXIT_CONFIG
    configure_logging(level, args.log_format)
    if level > logging.DEBUG:
        # One line per WebSocket opened or closed is noise with thousands of chargers.
        logging.getLogger("controller.ocpp.wire").setLevel(max(level, logging.WARNING))
    path = config_path(args.config)
    try:
        config = load_config(path)
    except ConfigError as error:
        if len(error.problems) == 1:  # one line, e.g. a file that is not JSON
            problem = error.problems[0].removeprefix(f"{path}: ")
            print(f"ev-controller: invalid configuration in {path}: {problem}", file=sys.stderr)
            return EXIT_CONFIG
        print(f"ev-controller: invalid configuration in {path}:", file=sys.stderr)
        for problem in error.problems:
            print(f"  {problem}", file=sys.stderr)
        return EXIT_CONFIG
    try:
        app = ControllerApp(
            config,
            host=args.host,
            rest_port=args.rest_port,
            ocpp_port=args.ocpp_port,
            db_path=args.db,
        )
    except StoreError as error:
        print(f"ev-controller: {error}", file=sys.stderr)
        return 1
    except ValueError as error:
        # A configuration the allocator cannot take that validation did not catch.
        print(f"ev-controller: invalid configuration in {path}: {error}", file=sys.stderr)
        return EXIT_CONFIG
    try:
        asyncio.run(app.serve_forever())
    except OSError as error:
        print(f"ev-controller: cannot start: {error}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
