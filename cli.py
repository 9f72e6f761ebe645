"""community-chain command line: keys, genesis, node, transactions and queries.

Exit codes, so scripts can tell failures apart: 0 ok, 1 the node rejected the request (its code and
message are printed), 2 usage error, 3 the node could not be reached.
"""
import json
import os
import re
import time
from dataclasses import replace
from pathlib import Path

import click

from core.crypto import Keypair
from core.devnet import load_dev_keys, make_devnet
from core.errors import ProtocolError
from core.genesis import DEFAULT_DEV_KEYS, DEFAULT_GENESIS, load_genesis
from core.types import CHAIN_ID_RE, MAX_INT, is_name
from core.wallet import DEFAULT_NODE_URL, ApiError, Client, NodeUnreachable, Wallet
from node.config import load_config, read_key_file, write_key_file
from node.cli_bench import bench
from node.cli_simulate import simulate
from node.cli_testnet import testnet

EXIT_REJECTED = 1
EXIT_UNREACHABLE = 3


class Cli(click.Group):
    """Turns the failures a person can act on into a message and a distinct exit code."""

    def invoke(self, ctx):
        try:
            return super().invoke(ctx)
        except ApiError as e:
            click.echo(f"rejected by the node ({e.status}): {e.code}: {e.message}", err=True)
            ctx.exit(EXIT_REJECTED)
        except NodeUnreachable as e:
            click.echo(f"cannot reach the node at {e.url} ({e.reason}).\n"
                       "Is it running? Start the default chain with ./run.sh "
                       "(or `python cli.py node run`), or point --node at a running node.", err=True)
            ctx.exit(EXIT_UNREACHABLE)
        except ProtocolError as e:  # the wallet's own static checks refused to sign
            raise click.UsageError(f"{e.code}: {e.message}") from None


@click.group(cls=Cli)
def cli():
    """A permissioned DPoS chain for community assets: content, behaviour, relationships."""


def echo_json(doc) -> None:
    click.echo(json.dumps(doc, indent=2))


def write_private_json(path: Path, doc) -> None:
    """JSON readable by its owner only (0600) from the moment it exists."""
    path.parent.mkdir(parents=True, exist_ok=True)
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "w") as f:
        f.write(json.dumps(doc, indent=2) + "\n")
    os.chmod(path, 0o600)


def now_ms() -> int:
    return time.time_ns() // 1_000_000


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
        if value.isdigit():
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


# ------------------------------------------------------------------------------------ keys
@cli.group()
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
    kf = _read_key_file(file)
    doc = {"name": kf.name, "public_key": kf.key.public_key.hex()}
    if seed:
        doc["seed"] = kf.key.seed.hex()
    echo_json(doc)


def _read_key_file(path):
    try:
        return read_key_file(path)
    except (OSError, ValueError, KeyError) as e:
        raise click.UsageError(f"{path} is not a readable key file: {e}") from None


# ------------------------------------------------------------------------------------ genesis
@cli.group()
def genesis():
    """Create chains."""


def write_devnet(out: Path, genesis_doc: dict, dev_keys: dict, n_producers: int) -> None:
    """DIR/genesis.json, DIR/dev-keys.json and DIR/keys/<producer>.json (the secret files 0600)."""
    out.mkdir(parents=True, exist_ok=True)
    (out / "genesis.json").write_text(json.dumps(genesis_doc, indent=2) + "\n")
    write_private_json(out / "dev-keys.json", dev_keys)
    for m in dev_keys["members"][:n_producers]:
        write_key_file(out / "keys" / f"{m['name']}.json", m["name"], Keypair(bytes.fromhex(m["seed"])))


@genesis.command("create")
@click.option("--out", required=True, type=click.Path(file_okay=False, path_type=Path))
@click.option("--members", required=True, type=click.IntRange(1, 10_000))
@click.option("--producers", required=True, type=click.IntRange(1, 10_000))
@click.option("--chain-id", default="community-devnet", show_default=True)
@click.option("--block-interval-ms", default=500, show_default=True, type=click.IntRange(50))
@click.option("--genesis-time-ms", type=int, help="Start of slot 0 (default: now).")
@click.option("--deterministic", is_flag=True,
              help="Derive seeds from sha256(chain_id + name): reproducible, and public.")
@click.option("--force", is_flag=True, help="Overwrite an existing genesis in --out.")
def genesis_create(out, members, producers, chain_id, block_interval_ms, genesis_time_ms,
                   deterministic, force):
    """Write a new development chain: genesis.json, dev-keys.json and producer key files."""
    if producers > members:
        raise click.BadParameter("cannot exceed --members", param_hint="--producers")
    if not CHAIN_ID_RE.fullmatch(chain_id):
        raise click.BadParameter("use a-z, 0-9 and -, at most 64 characters", param_hint="--chain-id")
    if (out / "genesis.json").exists() and not force:
        raise click.UsageError(f"{out / 'genesis.json'} exists; pass --force to replace the chain")
    genesis_doc, dev_keys = make_devnet(members, producers, chain_id, block_interval_ms,
                                        now_ms() if genesis_time_ms is None else genesis_time_ms,
                                        deterministic=deterministic)
    write_devnet(out, genesis_doc, dev_keys, producers)
    click.echo(f"chain {chain_id}: {members} members, {producers} producers -> {out}/genesis.json\n"
               f"member keys: {out}/dev-keys.json   producer key files: {out}/keys/")


# ------------------------------------------------------------------------------------ node
@cli.group()
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
def node_run(config_file, data_dir, host, port, genesis_file, key_file, peers):
    """Run a node until Ctrl-C. With no flags: the embedded development chain, producing as its
    genesis producer with the public dev key."""
    try:
        config = load_config(config_file, data_dir=data_dir, host=host, port=port,
                             genesis=genesis_file, key_file=key_file, peers=peers or None)
        chain = load_genesis(config.genesis)
    except (OSError, ValueError) as e:
        raise click.UsageError(str(e)) from None
    dev_mode = not config.key_file and Path(config.genesis).resolve() == DEFAULT_GENESIS.resolve()
    if dev_mode:
        config = _with_dev_producer_key(config, chain)
    producer = _read_key_file(config.key_file).name if config.key_file else None
    _print_banner(config, chain, producer, dev_mode)
    from node.service import run_node  # imported late: the server stack is only needed here

    run_node(config)


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


# ------------------------------------------------------------------------------------ tx
def signer_options(f):
    """--node, --key-file / --dev, --dev-keys, --chain-id: who signs, for which chain."""
    for opt in reversed([
        node_option,
        click.option("--key-file", type=click.Path(exists=True, dir_okay=False),
                     help="The signer's key file."),
        click.option("--dev", metavar="NAME", help="Sign with NAME's public dev key."),
        click.option("--dev-keys", type=click.Path(dir_okay=False), default=str(DEFAULT_DEV_KEYS),
                     show_default="the embedded chain's", help="dev-keys.json used by --dev."),
        click.option("--chain-id", help="Chain to sign for (default: asked from the node)."),
    ]):
        f = opt(f)
    return f


def send_options(f):
    f = click.option("--timeout", type=click.FloatRange(0, 120), default=30.0, show_default=True,
                     help="Seconds to wait for --wait.")(f)
    return click.option("--wait", type=click.Choice(["final", "included", "none"]), default="final",
                        show_default=True, help="Answer once the tx reaches this status.")(f)


def _wallet(client: Client, opts: dict) -> Wallet:
    if bool(opts["key_file"]) == bool(opts["dev"]):
        raise click.UsageError("give exactly one of --key-file FILE or --dev NAME")
    if opts["key_file"]:
        kf = _read_key_file(opts["key_file"])
        name, key = kf.name, kf.key
    else:
        try:
            dev = load_dev_keys(opts["dev_keys"])
        except (OSError, ValueError, KeyError) as e:
            raise click.UsageError(f"cannot read dev keys {opts['dev_keys']}: {e}") from None
        if opts["dev"] not in dev:
            raise click.BadParameter(f"no dev key {opts['dev']!r}; known: {', '.join(dev)}",
                                     param_hint="--dev")
        name, key = opts["dev"], dev[opts["dev"]]
    return Wallet(name, key, opts["chain_id"] or client.status()["chain_id"])


def _send(opts: dict, build) -> None:
    """Sign with the chosen key, submit, print the node's answer; exit 1 if it was rejected."""
    with Client(opts["node"]) as client:
        tx = build(_wallet(client, opts))
        result = client.submit(tx, wait=opts["wait"], timeout_s=opts["timeout"])
    echo_json(result)
    if result.get("status") == "rejected":
        err = result.get("error", {})
        click.echo(f"rejected: {err.get('code')}: {err.get('message')}", err=True)
        raise click.exceptions.Exit(EXIT_REJECTED)
    if opts["wait"] != "none" and result.get("status") not in (opts["wait"], "final"):
        click.echo(f"not {opts['wait']} after {opts['timeout']:g}s; follow it with: "
                   f"python cli.py query tx {result.get('id')} --wait 60", err=True)


@cli.group()
def tx():
    """Sign and submit transactions (amounts are in milli-units: 1000 = 1.000 CP)."""


@tx.command("post")
@click.option("--permlink", required=True, help="Unique slug among your posts, e.g. hello-world.")
@click.option("--title", required=True)
@click.option("--body", "text", required=True)
@click.option("--tag", "tags", multiple=True, help="Up to 5 (repeatable).")
@click.option("--parent", metavar="AUTHOR/PERMLINK", help="Makes this a comment on that post.")
@click.option("--starts", type=Time(), help="Event start (makes the post an event).")
@click.option("--ends", type=Time(), help="Event end, e.g. +2h.")
@click.option("--capacity", type=click.IntRange(1, 1_000_000), help="Event capacity.")
@signer_options
@send_options
def tx_post(permlink, title, text, tags, parent, starts, ends, capacity, **opts):
    """Publish a post, a comment, or an event members can attend."""
    event = None
    if (starts, ends, capacity) != (None, None, None):
        if None in (starts, ends, capacity):
            raise click.UsageError("an event needs --starts, --ends and --capacity")
        event = {"starts_at": starts, "ends_at": ends, "capacity": capacity}
    _send(opts, lambda w: w.post(permlink, title, text, tags, parent, event))


@tx.command("vote")
@click.option("--post", "ref", required=True, metavar="AUTHOR/PERMLINK")
@click.option("--weight", type=click.IntRange(-10000, 10000), default=10000, show_default=True,
              help="Basis points; negative to down-vote.")
@signer_options
@send_options
def tx_vote(ref, weight, **opts):
    """Curation vote on a post."""
    _send(opts, lambda w: w.vote_post(ref, weight))


@tx.command("approve")
@click.option("--producer", required=True, type=NAME)
@click.option("--revoke", is_flag=True, help="Withdraw the approval instead.")
@signer_options
@send_options
def tx_approve(producer, revoke, **opts):
    """Approve (with your stake) a block-producer candidate."""
    _send(opts, lambda w: w.approve_producer(producer, not revoke))


@tx.command("ticket")
@click.option("--event", "ref", required=True, metavar="AUTHOR/PERMLINK")
@click.option("--attendee", required=True, type=NAME)
@signer_options
def tx_ticket(ref, attendee, **opts):
    """As the event's organizer, print a hex ticket admitting ATTENDEE (nothing is submitted)."""
    with Client(opts["node"]) as client:  # only contacted when --chain-id is not given
        click.echo(_wallet(client, opts).ticket(ref, attendee).hex())


@tx.command("attend")
@click.option("--event", "ref", required=True, metavar="AUTHOR/PERMLINK")
@click.option("--ticket", required=True, type=HexBytes(64), help="From `tx ticket` by the organizer.")
@signer_options
@send_options
def tx_attend(ref, ticket, **opts):
    """Record your attendance at an event, proven by the organizer's ticket."""
    _send(opts, lambda w: w.attend(ref, ticket))


@tx.command("refer")
@click.option("--new-account", required=True, type=NAME)
@click.option("--pubkey", type=HexBytes(32), help="The new member's public key.")
@click.option("--new-key-file", type=click.Path(dir_okay=False, path_type=Path),
              help="Generate the new member's key into this file instead.")
@signer_options
@send_options
def tx_refer(new_account, pubkey, new_key_file, **opts):
    """Admit a new member."""
    if (pubkey is None) == (new_key_file is None):
        raise click.UsageError("give exactly one of --pubkey HEX or --new-key-file FILE")
    if new_key_file is not None:
        if new_key_file.exists():
            raise click.UsageError(f"{new_key_file} exists; choose another --new-key-file")
        key = Keypair.generate()
        write_key_file(new_key_file, new_account, key)  # before sending, so the key is never lost
        click.echo(f"wrote {new_key_file} for {new_account}", err=True)
        pubkey = key.public_key
    _send(opts, lambda w: w.refer(new_account, pubkey))


@tx.command("transfer")
@click.option("--to", required=True, type=NAME)
@click.option("--amount", required=True, type=AMOUNT, help="Milli-units.")
@click.option("--memo")
@signer_options
@send_options
def tx_transfer(to, amount, memo, **opts):
    """Send CP to another member."""
    _send(opts, lambda w: w.transfer(to, amount, memo))


@tx.command("stake")
@click.option("--amount", required=True, type=AMOUNT, help="Milli-units.")
@signer_options
@send_options
def tx_stake(amount, **opts):
    """Lock balance as stake (it weighs your producer approvals)."""
    _send(opts, lambda w: w.stake(amount))


@tx.command("unstake")
@click.option("--amount", required=True, type=AMOUNT, help="Milli-units.")
@signer_options
@send_options
def tx_unstake(amount, **opts):
    """Return stake to your balance."""
    _send(opts, lambda w: w.unstake(amount))


@tx.command("register-producer")
@click.option("--url", required=True, help="Public base URL of your node.")
@click.option("--node-key", type=HexBytes(32), help="Block-signing public key (default: yours).")
@signer_options
@send_options
def tx_register_producer(url, node_key, **opts):
    """Become a block-producer candidate."""
    _send(opts, lambda w: w.register_producer(node_key or w.public_key, url))


@tx.group("govern")
def tx_govern():
    """Propose and approve changes of the rules (producers in office only)."""


class EffectiveHeight(click.ParamType):
    """A block height, or '+N': N blocks after the node's head when the tx is signed."""

    name = "HEIGHT|+N"

    def convert(self, value, param, ctx):
        m = re.fullmatch(r"(\+?)(\d+)", str(value))
        if m is None:
            self.fail(f"{value!r}: use a block height or +N", param, ctx)
        return bool(m.group(1)), int(m.group(2))


def effective_height_option(f):
    return click.option("--effective-height", "height", required=True, type=EffectiveHeight(),
                        help="First block the change applies in: a height, or +N blocks from now.")(f)


def _height(opts: dict, height: tuple[bool, int]) -> int:
    relative, n = height
    if not relative:
        return n
    with Client(opts["node"]) as client:
        return client.status()["head"]["height"] + n


@tx_govern.command("set-param")
@click.argument("name")
@click.argument("value", type=click.IntRange(0, MAX_INT))
@effective_height_option
@signer_options
@send_options
def tx_govern_set_param(name, value, height, **opts):
    """Propose setting rules parameter NAME to VALUE (see `query rules`)."""
    at = _height(opts, height)
    _send(opts, lambda w: w.propose_param(name, value, at))


@tx_govern.command("upgrade-rules")
@click.argument("source_file", type=click.Path(exists=True, dir_okay=False, path_type=Path))
@effective_height_option
@signer_options
@send_options
def tx_govern_upgrade_rules(source_file, height, **opts):
    """Propose replacing the rules contract with SOURCE_FILE (compiled on chain)."""
    at = _height(opts, height)
    _send(opts, lambda w: w.propose_upgrade(source_file.read_text(encoding="utf-8"), at))


@tx_govern.command("approve")
@click.argument("proposal_id", type=HexBytes(32))
@signer_options
@send_options
def tx_govern_approve(proposal_id, **opts):
    """Approve a proposal by its id (the id of the tx that proposed it)."""
    _send(opts, lambda w: w.approve_proposal(proposal_id))


# ------------------------------------------------------------------------------------ query
@cli.group()
def query():
    """Read the chain (prints the node's JSON)."""


@query.command("account")
@click.argument("name")
@node_option
def query_account(name, node):
    with Client(node) as c:
        echo_json(c.account(name))


@query.command("post")
@click.argument("ref", metavar="AUTHOR/PERMLINK")
@node_option
def query_post(ref, node):
    author, _, permlink = ref.partition("/")
    if not permlink:
        raise click.BadParameter("use AUTHOR/PERMLINK", param_hint="REF")
    with Client(node) as c:
        echo_json(c.post(author, permlink))


@query.command("block")
@click.argument("ref", default="head", metavar="[HEIGHT|head|final]")
@node_option
def query_block(ref, node):
    with Client(node) as c:
        echo_json(c.block(ref))


@query.command("tx")
@click.argument("tx_id", metavar="ID")
@click.option("--wait", type=click.FloatRange(0, 3600), default=0,
              help="Poll up to this many seconds until the tx is final or rejected.")
@node_option
def query_tx(tx_id, wait, node):
    with Client(node) as c:
        echo_json(c.wait_final(tx_id, wait) if wait else c.tx_status(tx_id))


def _add_node_read(name: str, help_text: str) -> None:
    """A `query NAME` command that prints what `Client.NAME()` reads from the node."""
    @query.command(name, help=help_text)
    @node_option
    def command(node):
        with Client(node) as c:
            echo_json(getattr(c, name)())


for _name, _help in (("status", "The node's heads, peers, mempool and schedule."),
                     ("producers", "Producers, their approvals, missed slots and evidence."),
                     ("rules", "The rules contract's hash, parameters and reward pools."),
                     ("proposals", "Governance proposals with their approvals and status.")):
    _add_node_read(_name, _help)


cli.add_command(bench)
cli.add_command(simulate)
cli.add_command(testnet)

if __name__ == "__main__":
    cli()
