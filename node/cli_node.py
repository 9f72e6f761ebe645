"""`node`: run a node; write its config (`init`); check its setup (`doctor`)."""
import ipaddress
import json
import re
from dataclasses import fields, replace
from pathlib import Path

import click

from core.devnet import load_dev_keys
from core.genesis import DEFAULT_DEV_KEYS, DEFAULT_GENESIS, load_genesis
from core.wallet import DEFAULT_NODE_URL
from node.cli_params import read_key_file_prompting
from node.config import SETTING_HELP, NodeConfig, load_config
from node.keystore import check_private, read_key_info, write_key_file


class ConfigProblem(click.ClickException):
    """A config, genesis or key file the node cannot start with: one line, `Error: <file>:
    <what>`, exit status 2 as for a usage error, but without the usage block (the command line
    was right, the file is not)."""
    exit_code = 2


@click.group()
def node():
    """Run a node; write its config (init); check its setup (doctor)."""


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
    except (OSError, ValueError) as e:
        raise ConfigProblem(str(e)) from None
    try:
        chain = load_genesis(config.genesis)
    except (OSError, ValueError) as e:
        raise ConfigProblem(f"{_origin(config_file, genesis_file, 'genesis')} {config.genesis}: "
                            f"{e.strerror if isinstance(e, OSError) and e.strerror else e}") from None
    dev_mode = not config.key_file and Path(config.genesis).resolve() == DEFAULT_GENESIS.resolve()
    if dev_mode and not _is_loopback_host(config.host) and not allow_public_dev_keys:
        raise click.UsageError("the embedded development chain's keys are public (dev-keys.json): "
                               f"serving it on {config.host} lets anyone who reaches it move its "
                               "funds and produce its blocks. Use a loopback --host, a chain of your "
                               "own (genesis create), or --allow-public-dev-keys if that is intended")
    if dev_mode:
        config = _with_dev_producer_key(config, chain)
    try:
        producer = read_key_file_prompting(config.key_file).name if config.key_file else None
    except (OSError, ValueError, KeyError) as e:
        raise ConfigProblem(f"{_origin(config_file, key_file, 'key_file')} {config.key_file} is not a "
                            f"readable key file: {e.strerror if isinstance(e, OSError) and e.strerror else e}"
                            ) from None
    _print_banner(config, chain, producer, dev_mode)
    from node.main import run_node  # imported late: the server stack is only needed here

    run_node(config)


def _origin(config_file, flag, setting: str) -> str:
    """Where a setting came from, for an error about it: the file and the setting, or the flag."""
    if flag:
        return "--" + setting.replace("_", "-")
    return f"{config_file}: {setting}" if config_file else setting


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


_BARE_KEY = re.compile(r"[A-Za-z0-9_-]+")


def _toml(value) -> str:
    """A setting's value in TOML (the types NodeConfig holds)."""
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, (int, float)):
        return repr(value)
    if isinstance(value, str):
        return json.dumps(value)  # (a JSON string is a TOML basic string)
    if isinstance(value, (list, tuple)):
        return "[" + ", ".join(_toml(v) for v in value) + "]"
    if isinstance(value, dict):
        return "{" + ", ".join(f"{k if _BARE_KEY.fullmatch(k) else json.dumps(k)} = {_toml(v)}"
                               for k, v in value.items()) + "}"
    raise TypeError(f"no TOML for {value!r}")


def render_config(config: NodeConfig) -> str:
    """Every setting of `config`, each under a comment saying what it means (config.SETTING_HELP)."""
    lines = ["# community-chain node settings (python cli.py node run --config node.toml).",
             "# Relative paths are read from this file's folder; flags on the command line win.",
             "[node]"]
    for f in fields(NodeConfig):
        lines += [f"# {SETTING_HELP[f.name]}", f"{f.name} = {_toml(getattr(config, f.name))}"]
    return "\n".join(lines) + "\n"


@node.command("init")
@click.option("--dir", "directory", default=".", show_default=True, type=click.Path(file_okay=False),
              help="Folder for node.toml and the data dir.")
@click.option("--genesis", "genesis_file", type=click.Path(exists=True, dir_okay=False),
              help="The chain's genesis file (default: the embedded development chain).")
@click.option("--key-file", type=click.Path(exists=True, dir_okay=False),
              help="This producer's key file; without one: a full node.")
@click.option("--force", is_flag=True, help="Overwrite an existing node.toml.")
def node_init(directory, genesis_file, key_file, force):
    """Write DIR/node.toml with every setting, its default and what it means, and create the data
    dir. Files given here are written as absolute paths."""
    folder = Path(directory)
    path = folder / "node.toml"
    if path.exists() and not force:
        raise click.ClickException(f"{path} exists: --force to overwrite it")
    overrides = {}
    try:
        if genesis_file:
            load_genesis(genesis_file)
            overrides["genesis"] = str(Path(genesis_file).resolve())
        if key_file:
            check_private(key_file)
            read_key_info(key_file)  # its name and public key read; no passphrase needed
            overrides["key_file"] = str(Path(key_file).resolve())
    except (OSError, ValueError) as e:
        raise ConfigProblem(str(e)) from None
    config = replace(NodeConfig(), **overrides)
    folder.mkdir(parents=True, exist_ok=True)
    path.write_text(render_config(config))
    data_dir = load_config(str(path)).data_dir  # (relative: from the file's folder)
    Path(data_dir).mkdir(parents=True, exist_ok=True)
    click.echo(f"wrote {path} (data dir {data_dir})\nrun: python cli.py node run --config {path}\n"
               f"check: python cli.py node doctor --config {path}")


@node.command("doctor")
@click.option("--config", "config_file", type=click.Path(dir_okay=False),
              help="The node's TOML config (default: the defaults).")
@click.option("--node", "url", metavar="URL", help="The node to ask (default: from the config's host and port).")
def node_doctor(config_file, url):
    """Check a node's setup, one line per check (ok, warn, fail) with a hint; exit 1 on a fail."""
    from node.doctor import run_checks

    checks = run_checks(config_file, url)
    for check in checks:
        click.echo(check.line())
    fails = sum(1 for c in checks if c.status == "fail")
    warns = sum(1 for c in checks if c.status == "warn")
    click.echo(f"{len(checks)} checks: {fails} failed, {warns} warnings")
    raise SystemExit(1 if fails else 0)
