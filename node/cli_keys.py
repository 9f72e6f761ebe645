"""`keys`: create, inspect, import, export and re-encrypt key files (node.keystore)."""
import sys
from pathlib import Path

import click

from core.crypto import Keypair
from node.cli_params import (NAME, echo_json, get_passphrase, is_interactive, passphrase_option,
                             read_key_file_or_fail)
from node.keystore import KDF_LIMITS, KeyFileError, read_key_info, read_passphrase_file, write_key_file

PLAIN_WARNING = ("WARNING: {file} holds its secret seed UNENCRYPTED: anyone who can read it (a "
                 "backup, a copied disk, root) can sign as {name}. Use plain files for throwaway "
                 "test keys only; `keys import {file} --out NEW` encrypts it.")
kdf_option = click.option(
    "--kdf", type=click.Choice(list(KDF_LIMITS)), default="moderate", show_default=True,
    help="Argon2id cost of the passphrase: moderate (256 MiB, ~0.5-1 s), interactive (64 MiB, "
         "for small machines), sensitive (1 GiB, ~5 s).")
new_passphrase_option = click.option(
    "--passphrase-file", type=click.Path(dir_okay=False),
    help="File holding the new passphrase (mode 600). Else COMMUNITY_CHAIN_PASSPHRASE_FILE, "
         "COMMUNITY_CHAIN_PASSPHRASE, or a prompt (asked twice) on a terminal.")


def _check_out(out: Path, force: bool) -> None:
    if out.exists() and not force:
        raise click.UsageError(f"{out} exists; pass --force to overwrite it (its key would be lost)")


def _write(out: Path, name: str, key: Keypair, passphrase: str | None, kdf: str) -> None:
    try:
        write_key_file(out, name, key, passphrase, KDF_LIMITS[kdf])
    except KeyFileError as e:
        raise click.UsageError(str(e)) from None


@click.group()
def keys():
    """Create, inspect, import, export and re-encrypt key files.

    \b
    A key file is encrypted under a passphrase (Argon2id, XSalsa20-Poly1305) and mode 600. The
    passphrase comes from, in order: --passphrase-file FILE, the environment variable
    COMMUNITY_CHAIN_PASSPHRASE_FILE (a file), COMMUNITY_CHAIN_PASSPHRASE, or a prompt when run
    on a terminal. Plain (unencrypted) files, as the dev keys and testnets write, are read too.
    """


@keys.command("generate")
@click.option("--name", required=True, type=NAME, help="Account name the key belongs to.")
@click.option("--out", required=True, type=click.Path(dir_okay=False, path_type=Path))
@click.option("--force", is_flag=True, help="Overwrite an existing file.")
@click.option("--plain", "--insecure-plain", "plain", is_flag=True,
              help="Write the seed unencrypted (throwaway test keys only).")
@new_passphrase_option
@kdf_option
def keys_generate(name, out, force, plain, passphrase_file, kdf):
    """Generate a new Ed25519 key into a 0600 key file, encrypted under a passphrase."""
    _check_out(out, force)
    passphrase = None if plain else get_passphrase(passphrase_file, f"the new key file {out}", confirm=True)
    key = Keypair.generate()
    _write(out, name, key, passphrase, kdf)
    if plain:
        click.echo(PLAIN_WARNING.format(file=out, name=name), err=True)
    echo_json({"name": name, "public_key": key.public_key.hex(), "file": str(out), "encrypted": not plain})


@keys.command("show")
@click.argument("file", type=click.Path(exists=True, dir_okay=False))
@click.option("--seed", is_flag=True, help="Also print the secret seed (asks for the passphrase).")
@passphrase_option
def keys_show(file, seed, passphrase_file):
    """Print a key file's name and public key, and whether it is encrypted (no passphrase needed;
    the seed only with --seed)."""
    if not seed:
        try:
            info = read_key_info(file)
        except (OSError, KeyFileError) as e:
            raise click.UsageError(f"{file} is not a readable key file: {e}") from None
        echo_json({"name": info.name, "public_key": info.public_key.hex(), "encrypted": info.encrypted})
        return
    kf = read_key_file_or_fail(file, passphrase_file)
    click.echo("the seed below signs as its account: do not paste it anywhere", err=True)
    echo_json({"name": kf.name, "public_key": kf.key.public_key.hex(), "encrypted": kf.encrypted,
               "seed": kf.key.seed.hex()})


def _seed_from_stdin() -> bytes:
    if is_interactive():
        text = click.prompt("Seed (64 hex digits)", hide_input=True, err=True)
    else:
        text = sys.stdin.read()
    try:
        seed = bytes.fromhex(text.strip())
    except ValueError:
        raise click.UsageError("the seed on stdin is not hex") from None
    if len(seed) != 32:
        raise click.UsageError(f"a seed is 32 bytes (64 hex digits), got {len(seed)}")
    return seed


@keys.command("import")
@click.argument("source", required=False, type=click.Path(exists=True, dir_okay=False))
@click.option("--out", required=True, type=click.Path(dir_okay=False, path_type=Path))
@click.option("--name", type=NAME, help="Account name (needed for a seed; default: SOURCE's).")
@click.option("--force", is_flag=True, help="Overwrite an existing file (SOURCE itself too).")
@new_passphrase_option
@kdf_option
def keys_import(source, out, name, force, passphrase_file, kdf):
    """Encrypt an existing key into a new key file: the plain key file SOURCE, or without SOURCE
    a hex seed read from stdin (asked, hidden, on a terminal)."""
    _check_out(out, force)
    if source is not None:
        try:
            if read_key_info(source).encrypted:
                raise click.UsageError(f"{source} is already encrypted: `keys change-passphrase` "
                                       "re-encrypts it")
        except (OSError, KeyFileError) as e:
            raise click.UsageError(f"{source} is not a readable key file: {e}") from None
        kf = read_key_file_or_fail(source)
        key, name = kf.key, name or kf.name
    else:
        if name is None:
            raise click.UsageError("a seed from stdin needs --name NAME")
        key = Keypair(_seed_from_stdin())
    passphrase = get_passphrase(passphrase_file, f"the new key file {out}", confirm=True)
    _write(out, name, key, passphrase, kdf)
    echo_json({"name": name, "public_key": key.public_key.hex(), "file": str(out), "encrypted": True})


@keys.command("export")
@click.argument("file", type=click.Path(exists=True, dir_okay=False))
@click.option("--out", type=click.Path(dir_okay=False, path_type=Path),
              help="Write a plain (unencrypted) key file, mode 600.")
@click.option("--seed", is_flag=True, help="Print the hex seed on stdout instead.")
@click.option("--force", is_flag=True, help="Overwrite an existing --out file.")
@passphrase_option
def keys_export(file, out, seed, force, passphrase_file):
    """Decrypt FILE: to a plain key file (--out) or its seed on stdout (--seed), e.g. to move it
    into another wallet. Whoever reads the result can sign as the account."""
    if (out is None) == (not seed):
        raise click.UsageError("give exactly one of --out FILE or --seed")
    if out is not None:
        _check_out(out, force)
    kf = read_key_file_or_fail(file, passphrase_file)
    if out is not None:
        _write(out, kf.name, kf.key, None, "moderate")
        click.echo(PLAIN_WARNING.format(file=out, name=kf.name), err=True)
        echo_json({"name": kf.name, "public_key": kf.key.public_key.hex(), "file": str(out),
                   "encrypted": False})
    else:
        click.echo(f"WARNING: the seed of {kf.name} follows, unencrypted: whoever sees it can "
                   "sign as that account", err=True)
        click.echo(kf.key.seed.hex())


@keys.command("change-passphrase")
@click.argument("file", type=click.Path(exists=True, dir_okay=False))
@passphrase_option
@click.option("--new-passphrase-file", type=click.Path(dir_okay=False),
              help="File holding the new passphrase (mode 600); else asked twice on a terminal.")
@kdf_option
def keys_change_passphrase(file, passphrase_file, new_passphrase_file, kdf):
    """Re-encrypt FILE in place under a new passphrase (fresh salt; a plain FILE gets encrypted).
    The file is replaced atomically: a crash leaves the old one or the new one."""
    kf = read_key_file_or_fail(file, passphrase_file)
    if new_passphrase_file is None and not is_interactive():
        raise click.UsageError("the new passphrase: give --new-passphrase-file FILE, or run this "
                               "on a terminal to be asked")
    if new_passphrase_file is not None:
        try:
            new = read_passphrase_file(new_passphrase_file)
        except (OSError, KeyFileError) as e:
            raise click.UsageError(f"cannot read the new passphrase: {e}") from None
    else:  # (not the environment's: that holds the old one)
        new = click.prompt(f"New passphrase for {file}", hide_input=True, confirmation_prompt=True,
                           err=True)
    _write(Path(file), kf.name, kf.key, new, kdf)
    echo_json({"name": kf.name, "public_key": kf.key.public_key.hex(), "file": str(file), "encrypted": True})
