"""community-chain command line: keys, genesis, node, transactions and queries.

Exit codes, so scripts can tell failures apart: 0 ok, 1 the node rejected the request (its code and
message are printed), 2 usage error, 3 the node could not be reached, 4 a `tx` did not reach the
status it waited for (--wait) within its --timeout.
"""
import json
from pathlib import Path

import click

from core.crypto import Keypair
from core.devnet import make_devnet
from core.errors import ProtocolError
from core.types import CHAIN_ID_RE
from core.wallet import ApiError, Client, NodeUnreachable
from node.cli_bench import bench
from node.cli_keys import keys
from node.cli_node import node
from node.cli_params import (EXIT_NOT_REACHED, EXIT_REJECTED, EXIT_UNREACHABLE, echo_json, node_option,
                             now_ms, write_private_json)
from node.cli_simulate import simulate
from node.cli_snapshot import snapshot
from node.cli_testnet import testnet
from node.cli_tx import tx
from node.keystore import write_key_file


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


def finality_hint(out: Path, first: str, producers: int) -> str:
    """How many producers' nodes must run for blocks to become final (core.quorum), and how the
    first one starts: a chain started with fewer produces blocks that never become final."""
    from core.devnet import DEFAULT_BASE_PORT  # (producer i's URL in the genesis is on this + i)
    from core.quorum import notarization_quorum
    run = f"python cli.py node run --genesis {out}/genesis.json --key-file {out}/keys/{first}.json"
    if producers == 1:
        return f"blocks become final while the producer's node runs:\n  {run}"
    peers = " ".join(f"--peer http://127.0.0.1:{DEFAULT_BASE_PORT + i}" for i in range(1, min(producers, 4)))
    return (f"blocks become final only while the nodes of at least {notarization_quorum(producers)} "
            f"of the {producers} producers run (2/3 + 1; with fewer, `query status` says stalled), "
            f"each with its own key file, port and the others as peers, e.g.\n"
            f"  {run} --port {DEFAULT_BASE_PORT} {peers}{' ...' if producers > 4 else ''}")


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
               f"member keys: {out}/dev-keys.json   producer key files: {out}/keys/\n"
               + finality_hint(out, dev_keys["members"][0]["name"], producers))
    if producers < 3:
        click.echo(f"note: a chain of {producers} producer(s) never changes its producer set (an "
                   "election keeps 2/3 + 1 of the producers it had); start with 3 or more for "
                   "elections to add producers, 4 or more to tolerate one that fails", err=True)


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
              help="Poll up to this many seconds until the tx is final or rejected; not by then: "
                   "exit code 4.")
@node_option
def query_tx(tx_id, wait, node):
    with Client(node) as c:
        result = c.wait_final(tx_id, wait) if wait else c.tx_status(tx_id)
    echo_json(result)
    if wait and result.get("status") not in ("final", "rejected"):
        click.echo(f"not final after {wait:g}s (still {result.get('status')})", err=True)
        raise click.exceptions.Exit(EXIT_NOT_REACHED)


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


cli.add_command(keys)
node.add_command(snapshot)
cli.add_command(node)
cli.add_command(bench)
cli.add_command(tx)
cli.add_command(simulate)
cli.add_command(testnet)

if __name__ == "__main__":
    cli()
