"""What the command-line modules share: option types, the --node option, exit codes and output
helpers (cli.py and the node/cli_*.py command groups)."""
import json
import os
import re
import sys
from pathlib import Path

import click

from core.types import is_name
from core.genesis import now_ms
from core.wallet import DEFAULT_NODE_URL
from node.keystore import (PASSPHRASE_ENV, PASSPHRASE_SOURCES, KeyFileError, WrongPassphrase, is_encrypted,
                           passphrase_from_env, read_key_file, read_passphrase_file)

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

    def __init__(self, length: int | None):
        self.length = length  # None: any

    def convert(self, value, param, ctx):
        if isinstance(value, bytes):
            return value
        try:
            raw = bytes.fromhex(value)
        except ValueError:
            self.fail(f"{value!r} is not hex", param, ctx)
        if self.length is not None and len(raw) != self.length:
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


passphrase_option = click.option(
    "--passphrase-file", type=click.Path(dir_okay=False),
    help="File holding the key file's passphrase (mode 600). Else COMMUNITY_CHAIN_PASSPHRASE_FILE, "
         "COMMUNITY_CHAIN_PASSPHRASE, or a prompt on a terminal.")
PROMPT_TRIES = 3


def is_interactive() -> bool:
    """Whether a person can be asked: stdin is a terminal (not a pipe, a service, a test)."""
    return sys.stdin.isatty()


def get_passphrase(passphrase_file, what: str, *, confirm: bool = False) -> str:
    """A passphrase from, in order: passphrase_file, COMMUNITY_CHAIN_PASSPHRASE_FILE,
    COMMUNITY_CHAIN_PASSPHRASE, a hidden prompt (twice with `confirm`) if stdin is a terminal;
    else a usage error naming these."""
    try:
        passphrase = read_passphrase_file(passphrase_file) if passphrase_file else passphrase_from_env()
    except (OSError, KeyFileError) as e:
        raise click.UsageError(f"cannot read the passphrase: {e}") from None
    if passphrase is not None:
        return passphrase
    if not is_interactive():
        raise click.UsageError(f"{what} needs a passphrase: use {PASSPHRASE_SOURCES}")
    while True:
        passphrase = click.prompt(f"Passphrase for {what}", hide_input=True, confirmation_prompt=confirm,
                                  err=True)
        if passphrase:
            return passphrase
        click.echo("an empty passphrase protects nothing; type one", err=True)


def read_key_file_prompting(path, passphrase_file=None):
    """read_key_file, with the passphrase from passphrase_file or the environment, else asked on a
    terminal (up to 3 tries); a passphrase typed at the prompt is kept in COMMUNITY_CHAIN_PASSPHRASE
    for the rest of this process, so that `node run` asks once and its service reads the key file
    again with it. Raises OSError or ValueError (KeyFileError) as read_key_file."""
    if passphrase_file:
        return read_key_file(path, read_passphrase_file(passphrase_file))
    if passphrase_from_env() is not None or not is_encrypted(path) or not is_interactive():
        return read_key_file(path)
    for attempt in range(PROMPT_TRIES):
        passphrase = click.prompt(f"Passphrase for {path}", hide_input=True, err=True)
        try:
            kf = read_key_file(path, passphrase)
        except WrongPassphrase:
            if attempt == PROMPT_TRIES - 1:
                raise
            click.echo("wrong passphrase, try again", err=True)
            continue
        os.environ[PASSPHRASE_ENV] = passphrase
        return kf


def read_key_file_or_fail(path, passphrase_file=None):
    """read_key_file_prompting, its failures a usage error (exit 2) naming the file."""
    try:
        return read_key_file_prompting(path, passphrase_file)
    except KeyFileError as e:
        raise click.UsageError(str(e)) from None
    except (OSError, ValueError, KeyError) as e:
        raise click.UsageError(f"{path} is not a readable key file: {e}") from None
