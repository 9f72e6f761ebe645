"""`node`: run a node."""
import ipaddress
import json
from dataclasses import replace
from pathlib import Path

import click

from core.devnet import load_dev_keys
from core.genesis import DEFAULT_DEV_KEYS, DEFAULT_GENESIS, load_genesis
from core.wallet import DEFAULT_NODE_URL
from node.cli_params import read_key_file_or_fail
from node.config import load_config, write_key_file


@click.group()
def node():
    """Run a node."""


@node.command("run")
@click.option("--config", "config_file", type=click.Path(exists=True, dir_okay=False),
              help="TOML node config; flags override it.")
@click.option("--data-dir")
@click.option("--host")
@click.option("--port", type=click.IntRange(1, 65535))
@click.option("--genesis", "genesis_file", type=click.Path(exists=True, dir_okay=False))
@click.option("--key-file", type=click.Path(exists=True, dir_okay=False),
              help="Producer key file; without one the node only follows the chain.")
@click.option("--peer", "peers", multiple=True, metavar="URL", help="Peer base URL (repeatable).")
@click.option("--allow-public-dev-keys", is_flag=True,
              help="Serve the embedded development chain, whose keys are public, beyond loopback.")
def node_run(config_file, data_dir, host, port, genesis_file, key_file, peers, allow_public_dev_keys):
    """Run a node until Ctrl-C. With no flags: the embedded development chain, producing as its
    genesis producer with the public dev key (on a loopback address only, unless
    --allow-public-dev-keys: anyone who reaches it can sign as any of its members)."""
    try:
        config = load_config(config_file, data_dir=data_dir, host=host, port=port,
                             genesis=genesis_file, key_file=key_file, peers=peers or None)
        chain = load_genesis(config.genesis)
    except (OSError, ValueError) as e:
        raise click.UsageError(str(e)) from None
    dev_mode = not config.key_file and Path(config.genesis).resolve() == DEFAULT_GENESIS.resolve()
    if dev_mode and not _is_loopback_host(config.host) and not allow_public_dev_keys:
        raise click.UsageError("the embedded development chain's keys are public (dev-keys.json): "
                               f"serving it on {config.host} lets anyone who reaches it move its "
                               "funds and produce its blocks. Use a loopback --host, a chain of your "
                               "own (genesis create), or --allow-public-dev-keys if that is intended")
    if dev_mode:
        config = _with_dev_producer_key(config, chain)
    producer = read_key_file_or_fail(config.key_file).name if config.key_file else None
    _print_banner(config, chain, producer, dev_mode)
    from node.main import run_node  # imported late: the server stack is only needed here

    run_node(config)


def _is_loopback_host(host: str) -> bool:
    try:
        return host == "localhost" or ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


def _with_dev_producer_key(config, chain):
    """The config with a key file for the embedded chain's producer, written from dev-keys.json."""
    producer = chain.producers[0]
    key = load_dev_keys(DEFAULT_DEV_KEYS).get(producer.name)
    if key is None or key.public_key != producer.node_key:
        raise click.UsageError(f"{DEFAULT_DEV_KEYS} has no key for the genesis producer "
                               f"{producer.name}; pass --key-file")
    path = Path(config.data_dir) / f"dev-key-{producer.name}.json"
    write_key_file(path, producer.name, key)
    return replace(config, key_file=str(path))


def _print_banner(config, chain, producer, dev_mode) -> None:
    url = f"http://{config.host}:{config.port}"
    role = f"producing as {producer}" if producer else "following only (no --key-file)"
    lines = [f"community-chain node  chain_id={chain.chain_id}  genesis={chain.hash.hex()[:16]}",
             f"API {url}/v1/status   data dir {config.data_dir}   {role}"]
    if dev_mode:
        lines += ["", "PUBLIC DEV KEYS — local use only (anyone can read them in dev-keys.json):"]
        dev_keys = json.loads(DEFAULT_DEV_KEYS.read_text())["members"]
        for m in dev_keys:
            lines += [f"  {m['name']:<8} public key {m['public_key']}",
                      f"  {'':<8} seed       {m['seed']}"]
        node_flag = "" if url == DEFAULT_NODE_URL else f" --node {url}"
        lines += ["", f"Try: python cli.py tx transfer --dev alice --to bob --amount 1000{node_flag}"]
    lines.append("Stop with Ctrl-C.")
    click.echo("\n".join(lines))
