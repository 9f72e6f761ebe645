"""`bench` commands: print measured figures next to this machine's own limits (never asserted)."""
import json

import click


@click.group()
def bench():
    """Measure throughput against the machine's raw Ed25519 verify rate, measured in the same run."""


def _print(title: str, figures: dict) -> None:
    click.echo(f"== {title}")
    for key, value in figures.items():
        click.echo(f"  {key:40s} {value}")


@bench.command("apply")
@click.option("--txs", default=20000, show_default=True, type=click.IntRange(1000))
@click.option("--json", "as_json", is_flag=True, help="Print one JSON object instead of a table.")
def bench_apply_cmd(txs, as_json):
    """Single node, no HTTP: decode + verify + apply + produce + finalize + LevelDB commit."""
    from node.bench import bench_apply
    figures = bench_apply(txs)
    click.echo(json.dumps(figures)) if as_json else _print("apply (one core)", figures)


@bench.command("ingest")
@click.option("--single", default=8000, show_default=True, type=click.IntRange(100))
@click.option("--batched", default=20000, show_default=True, type=click.IntRange(500))
@click.option("--port", default=18555, show_default=True)
@click.option("--json", "as_json", is_flag=True)
def bench_ingest_cmd(single, batched, port, as_json):
    """HTTP ingestion into a real node process: one tx per request, then the batch endpoint."""
    from node.bench import bench_ingest, measure_raw_verify
    figures = {"raw_verify_per_s_1core": round(measure_raw_verify())}
    figures.update(bench_ingest(single, batched, port=port))
    figures["ingest_single_ratio_to_raw_verify"] = round(
        figures["ingest_single_tx_per_server_core_s"] / figures["raw_verify_per_s_1core"], 3)
    click.echo(json.dumps(figures)) if as_json else _print("HTTP ingestion", figures)


@bench.command("testnet")
@click.option("--rate", default=2000, show_default=True, type=click.IntRange(100),
              help="Offered load, txs per second, steady (each batch at a random point of its period).")
@click.option("--seconds", default=60, show_default=True, type=click.IntRange(10))
@click.option("--batch-size", default=200, show_default=True, type=click.IntRange(1, 2000))
@click.option("--nodes", default=4, show_default=True, type=click.IntRange(1, 16))
@click.option("--json", "as_json", is_flag=True)
def bench_testnet_cmd(rate, seconds, batch_size, nodes, as_json):
    """A local N-validator testnet under a load of pre-signed txs sent in batches."""
    from node.bench_testnet import bench_testnet
    figures = bench_testnet(rate, seconds, batch_size, nodes)
    click.echo(json.dumps(figures)) if as_json else _print(f"testnet ({nodes} validators)", figures)


@bench.command("snapshot")
@click.option("--txs", default=1_000_000, show_default=True, type=click.IntRange(10_000))
@click.option("--members", default=20_000, show_default=True, type=click.IntRange(100))
@click.option("--retain", default=100, show_default=True, type=click.IntRange(100),
              help="retain_blocks of the pruned copy.")
@click.option("--json", "as_json", is_flag=True)
def bench_snapshot_cmd(txs, members, retain, as_json):
    """Joining a chain of N txs from genesis against from a snapshot; snapshot size and time; disk
    per 1M txs with and without pruning."""
    from node.bench_snapshot import bench_snapshot
    figures = bench_snapshot(txs, members, retain)
    click.echo(json.dumps(figures)) if as_json else _print(f"snapshot ({txs} txs)", figures)


@bench.command("vm")
@click.option("--members", default=300, show_default=True, type=click.IntRange(10))
@click.option("--txs", default=1000, show_default=True, type=click.IntRange(50),
              help="Txs of each kind applied per run.")
@click.option("--json", "as_json", is_flag=True)
def bench_vm_cmd(members, txs, as_json):
    """Contract VM instructions/s, the cost of each default rules hook, and what the hooks add
    to applying a tx, as a share of the tx's whole cost (apply + one raw Ed25519 verify)."""
    from contracts.bench import bench_vm
    from node.bench_vm import bench_vm_share
    figures = bench_vm()
    figures["apply"] = bench_vm_share(members, txs)
    if as_json:
        click.echo(json.dumps(figures))
        return
    flat = {"vm_instructions_per_s": figures["vm"]}
    for hook, row in figures["hooks"].items():
        flat[hook] = ", ".join(f"{k}={v}" for k, v in row.items())
    _print("contract VM", flat)
    apply = figures["apply"]
    click.echo(f"== apply_tx per tx, {apply['members']} members, CPU µs (least of 5 interleaved runs)")
    click.echo(f"  raw Ed25519 verify: {apply['raw_verify_us']} µs")
    click.echo(f"  {'kind':8s} {'txs':>5s} {'with rules':>11s} {'without':>9s} {'vm':>8s} {'vm_share':>9s}")
    for kind, row in apply["kinds"].items():
        click.echo(f"  {kind:8s} {row['txs']:5d} {row['with_rules_us']:11.1f} "
                   f"{row['without_rules_us']:9.1f} {row['vm_us']:8.1f} {row['vm_share']:9.3f}")
    click.echo("  vm_share = (with rules - without) / (with rules + raw verify): the VM's part of all a\n"
               "  node spends on the tx, since apply_tx gets a signature verified once at mempool entry")


@bench.command("attacks")
@click.option("--seconds", default=10.0, show_default=True, type=click.FloatRange(2),
              help="Measuring time of the baseline and of each attack.")
@click.option("--attack", "only", multiple=True, help="Run only this attack (repeatable); default all.")
@click.option("--port", default=18556, show_default=True)
@click.option("--json", "as_json", is_flag=True)
def bench_attacks_cmd(seconds, only, port, as_json):
    """A real node under each attack of node.bench_attacks.ATTACKS: its memory, a wallet's
    /v1/status latency and the finalized blocks per second, next to the same without attack."""
    from node.bench_attacks import ATTACKS, bench_attacks, print_table
    unknown = set(only) - {a.name for a in ATTACKS}
    if unknown:
        raise click.BadParameter(f"unknown: {', '.join(sorted(unknown))}; known: "
                                 + ", ".join(a.name for a in ATTACKS), param_hint="--attack")
    results = bench_attacks(seconds, port, tuple(only))
    click.echo(json.dumps(results)) if as_json else print_table(results, click.echo)


@bench.command("all")
@click.pass_context
def bench_all(ctx):
    """apply, then ingest."""
    ctx.invoke(bench_apply_cmd, txs=20000, as_json=False)
    ctx.invoke(bench_ingest_cmd, single=8000, batched=20000, port=18555, as_json=False)
