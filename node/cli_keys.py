"""`keys`: create and inspect key files."""
from pathlib import Path

import click

from core.crypto import Keypair
from node.cli_params import NAME, echo_json, read_key_file_or_fail
from node.config import write_key_file


@click.group()
def keys():
    """Create and inspect key files."""


@keys.command("generate")
@click.option("--name", required=True, type=NAME, help="Account name the key belongs to.")
@click.option("--out", required=True, type=click.Path(dir_okay=False, path_type=Path))
@click.option("--force", is_flag=True, help="Overwrite an existing file.")
def keys_generate(name, out, force):
    """Generate a new Ed25519 key and write it to a 0600 key file."""
    if out.exists() and not force:
        raise click.UsageError(f"{out} exists; pass --force to overwrite it (its key would be lost)")
    key = Keypair.generate()
    write_key_file(out, name, key)
    echo_json({"name": name, "public_key": key.public_key.hex(), "file": str(out)})


@keys.command("show")
@click.argument("file", type=click.Path(exists=True, dir_okay=False))
@click.option("--seed", is_flag=True, help="Also print the secret seed.")
def keys_show(file, seed):
    """Print a key file's name and public key (the seed only with --seed)."""
    kf = read_key_file_or_fail(file)
    doc = {"name": kf.name, "public_key": kf.key.public_key.hex()}
    if seed:
        doc["seed"] = kf.key.seed.hex()
    echo_json(doc)
