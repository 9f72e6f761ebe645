"""What the command-line modules share: option types, the --node option, exit codes and output
helpers (cli.py and the node/cli_*.py command groups)."""
import json
import os
import re
from pathlib import Path

import click

from core.types import is_name
from core.genesis import now_ms
from core.wallet import DEFAULT_NODE_URL
from node.config import read_key_file

EXIT_REJECTED = 1
EXIT_UNREACHABLE = 3
EXIT_NOT_REACHED = 4  # a tx did not reach the status waited for (--wait) within --timeout


def echo_json(doc) -> None:
    click.echo(json.dumps(doc, indent=2))


def write_private_json(path: Path, doc) -> None:
    """JSON readable by its owner only (0600) from the moment it exists."""
    path.parent.mkdir(parents=True, exist_ok=True)
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "w") as f:
        f.write(json.dumps(doc, indent=2) + "\n")
    os.chmod(path, 0o600)


class HexBytes(click.ParamType):
    name = "HEX"

    def __init__(self, length: int):
        self.length = length

    def convert(self, value, param, ctx):
        if isinstance(value, bytes):
            return value
        try:
            raw = bytes.fromhex(value)
        except ValueError:
            self.fail(f"{value!r} is not hex", param, ctx)
        if len(raw) != self.length:
            self.fail(f"expected {self.length} bytes ({2 * self.length} hex digits), got {len(raw)}",
                      param, ctx)
        return raw


class Time(click.ParamType):
    """'now', '+30s', '+10m', '+2h', '+1d' (relative to now) or milliseconds since the epoch."""

    name = "TIME"
    UNITS = {"s": 1000, "m": 60_000, "h": 3_600_000, "d": 86_400_000}

    def convert(self, value, param, ctx):
        if isinstance(value, int):
            return value
        if value == "now":
            return now_ms()
        m = re.fullmatch(r"\+(\d+)([smhd])", value)
        if m:
            return now_ms() + int(m.group(1)) * self.UNITS[m.group(2)]
        if value.isdecimal():
            return int(value)
        self.fail(f"{value!r}: use now, +N[s|m|h|d] or milliseconds since the epoch", param, ctx)


class Name(click.ParamType):
    name = "NAME"

    def convert(self, value, param, ctx):
        if not is_name(value):
            self.fail(f"{value!r} is not an account name (3-16 of a-z 0-9 -, starting with a letter)",
                      param, ctx)
        return value


NAME = Name()
AMOUNT = click.IntRange(min=1)
node_option = click.option("--node", default=DEFAULT_NODE_URL, show_default=True,
                           envvar="COMMUNITY_CHAIN_NODE", help="Base URL of the node's API.")


def read_key_file_or_fail(path):
    try:
        return read_key_file(path)
    except (OSError, ValueError, KeyError) as e:
        raise click.UsageError(f"{path} is not a readable key file: {e}") from None
