"""``koku-dagster`` command line."""

from __future__ import annotations

import argparse
import logging
import sys

from koku_dagster.infra.db.migrate import SCHEMA_VERSION, migrate
from koku_dagster.infra.settings import get_settings


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="koku-dagster")
    sub = parser.add_subparsers(dest="command", required=True)
    sub.add_parser("migrate", help="create or upgrade the application schema (idempotent)")
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(levelname)s %(name)s: %(message)s")
    if args.command == "migrate":
        steps = migrate(get_settings().database_url)
        print(f"schema at version {SCHEMA_VERSION} ({steps} step(s) applied)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
