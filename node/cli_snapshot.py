"""`node snapshot`: fetch a node's snapshot into a file, check one, start a data directory from one."""
import time
from pathlib import Path

import click
import httpx

from core.genesis import load_genesis
from node.cli_params import echo_json, node_option
from node.config import load_config
from node.snapshots import SnapshotError, read_manifest, restore
from node.store import LevelDBStore

DOWNLOAD_TIMEOUT = httpx.Timeout(10.0, read=60.0)


@click.group()
def snapshot():
    """Start new nodes from a snapshot instead of replaying every block."""


@snapshot.command("list")
@node_option
def snapshot_list(node):
    """The snapshots a node keeps, newest first (`attested_by`: the final block proving each)."""
    echo_json(_get_json(node, "/v1/snapshots"))


@snapshot.command("create")
@node_option
@click.option("--height", type=click.IntRange(1), help="Snapshot height (default: the newest attested).")
@click.option("--out", required=True, type=click.Path(dir_okay=False, path_type=Path))
@click.option("--force", is_flag=True, help="Overwrite --out.")
def snapshot_create(node, height, out, force):
    """Write a node's snapshot at a final height, with the block and votes that attest it, to a
    file (a node computes one at every multiple of the chain's snapshot_interval)."""
    if out.exists() and not force:
        raise click.UsageError(f"{out} exists; pass --force to overwrite it")
    if height is None:
        listed = [s for s in _get_json(node, "/v1/snapshots")["snapshots"] if s["attested_by"] is not None]
        if not listed:
            raise click.ClickException(f"{node} has no attested snapshot yet (GET /v1/snapshots); "
                                       "a snapshot is attested a few blocks after its height is final")
        height = listed[0]["height"]
    started = time.perf_counter()
    tmp = out.with_name(out.name + ".part")
    try:
        with httpx.stream("GET", f"{node}/v1/snapshots/{height}", timeout=DOWNLOAD_TIMEOUT) as r:
            if r.status_code != 200:
                r.read()
                raise click.ClickException(f"{node} answered {r.status_code}: {r.text[:300]}")
            with open(tmp, "wb") as f:
                for data in r.iter_bytes(1 << 20):
                    f.write(data)
    except httpx.HTTPError as e:
        tmp.unlink(missing_ok=True)
        raise click.ClickException(f"cannot fetch the snapshot from {node}: {e}") from None
    tmp.replace(out)
    echo_json({"height": height, "file": str(out), "bytes": out.stat().st_size,
               "seconds": round(time.perf_counter() - started, 3)})


@snapshot.command("restore")
@click.argument("file", type=click.Path(exists=True, dir_okay=False))
@click.option("--config", "config_file", type=click.Path(exists=True, dir_okay=False),
              help="The new node's config: its data_dir, genesis and peers.")
@click.option("--data-dir", help="A new, empty data directory.")
@click.option("--genesis", "genesis_file", type=click.Path(exists=True, dir_okay=False))
@click.option("--peer", "peers", multiple=True, metavar="URL",
              help="A node of the chain to check the attesting block against (repeatable; default: "
                   "the config's peers).")
@click.option("--trust-block-id", metavar="HEX",
              help="The attesting block's id as you know it from a source you trust (instead of peers).")
def snapshot_restore(file, config_file, data_dir, genesis_file, peers, trust_block_id):
    """Check a snapshot file and write a new data directory from it; then `node run` on that
    directory goes on from the snapshot's height. Every chunk is checked against the commitment a
    final block attests, that block against the votes of its producers and against the chain's
    peers (or --trust-block-id): a forged file is refused and nothing is written."""
    try:
        config = load_config(config_file, data_dir=data_dir, genesis=genesis_file)
        genesis = load_genesis(config.genesis)
    except (OSError, ValueError) as e:
        raise click.UsageError(str(e)) from None
    peers = list(peers) or list(config.peers)
    started = time.perf_counter()
    try:
        with open(file, "rb") as f:
            manifest = read_manifest(f, genesis)
        anchors = _anchors(manifest["attesting"].header.height, peers, trust_block_id)
        result = restore(file, config.data_dir, genesis, anchors, LevelDBStore)
    except SnapshotError as e:
        raise click.ClickException(f"snapshot refused: {e}") from None
    result["seconds"] = round(time.perf_counter() - started, 3)
    echo_json(result)


def _anchors(height: int, peers: list[str], trust_block_id: str | None) -> list[bytes]:
    """The attesting block's id as the operator or each reachable peer has it (final there)."""
    if trust_block_id:
        try:
            return [bytes.fromhex(trust_block_id)]
        except ValueError:
            raise click.BadParameter("64 hex digits", param_hint="--trust-block-id") from None
    ids = []
    for peer in peers:
        try:
            doc = _get_json(peer, f"/v1/blocks/{height}")
        except click.ClickException as e:
            click.echo(f"peer {peer}: {e.message}", err=True)
            continue
        if not doc.get("final"):
            raise SnapshotError(f"peer {peer} does not hold block {height} as final")
        ids.append(bytes.fromhex(doc["id"]))
    if peers and not ids:
        raise SnapshotError("no peer answered: cannot check the attesting block")
    return ids


def _get_json(url: str, path: str) -> dict:
    try:
        r = httpx.get(url.rstrip("/") + path, timeout=10.0)
    except httpx.HTTPError as e:
        raise click.ClickException(f"cannot reach {url} ({e})") from None
    if r.status_code != 200:
        raise click.ClickException(f"{url}{path} answered {r.status_code}: {r.text[:300]}")
    return r.json()

