"""`simulate`: print and plot what honest members and abusers with the same stake earn."""
import shutil
from pathlib import Path

import click


def _cp(milli: float) -> str:
    return f"{milli / 1000:,.3f}"


def _times(value: float, honest: float) -> str:
    return f"{value / honest:.2f}x" if honest else "-"


@click.command("simulate")
@click.option("--members", default=1000, show_default=True, type=click.IntRange(40, 100_000))
@click.option("--days", default=30, show_default=True, type=click.IntRange(1, 365))
@click.option("--seed", default=1, show_default=True, type=int, help="Same seed, same output.")
@click.option("--out", default="simulate.png", show_default=True,
              type=click.Path(dir_okay=False, path_type=Path), help="Where to write the plot.")
def simulate(members, days, seed, out):
    """Run a synthetic community (honest members, a sybil referral farm, a self-vote ring) through
    the real state transition and rules contract; print and plot rewards per dimension and group."""
    from rich.console import Console
    from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn

    from node.simulate import SimConfig, simulate as run
    from node.simulate_plot import plot

    columns = (TextColumn("simulating"), BarColumn(), MofNCompleteColumn(), TextColumn("days"),
               TimeElapsedColumn(), TextColumn("{task.fields[txs]:,} txs"))
    with Progress(*columns, console=Console(stderr=True)) as progress:
        task = progress.add_task("", total=days, txs=0)
        result = run(SimConfig(members, days, seed),
                     lambda day, txs: progress.update(task, completed=day, txs=txs))
    console = Console(width=max(100, shutil.get_terminal_size((120, 24)).columns))
    _print_report(console, result)
    click.echo(f"plot: {plot(result, out).resolve()}")


def _print_report(console, result) -> None:
    from rich.table import Table

    from contracts import DIMENSIONS
    from node.simulate import GROUPS, dimension_gini, group_stats, referral_periods

    cfg, stats, ginis = result.config, group_stats(result), dimension_gini(result)
    applied, rejected = sum(result.applied.values()), sum(result.rejected.values())
    console.print(
        f"{cfg.members:,} members, {cfg.days} days, seed {cfg.seed}: {result.blocks:,} blocks (one per "
        f"simulated minute) in {result.wall_s:.1f} s ({applied / result.wall_s:,.0f} tx/s)\n"
        f"txs applied {applied:,}: {', '.join(f'{k} {v:,}' for k, v in result.applied.items())}\n"
        f"txs rejected {rejected:,}: "
        f"{', '.join(f'{k} {v:,}' for k, v in result.rejected.items()) or 'none'}")

    dims = Table(title="Rewards per dimension (CP)")
    for name in ("dimension", "paid", "Gini across members", "left in pool"):
        dims.add_column(name, justify="left" if name == "dimension" else "right")
    for dim in DIMENSIONS + ("all",):
        paid = sum(stats[g].totals[dim] for g in GROUPS)
        left = sum(result.pools_left.values()) if dim == "all" else result.pools_left[dim]
        dims.add_row(dim, _cp(paid), f"{ginis[dim]:.3f}", _cp(left))
    console.print(dims)

    groups = Table(title="Rewards per group (CP); the farm and the ring hold the stake of an "
                         "equal-sized honest group")
    for name in ("group", "members", "staked", "dimension", "total", "per member",
                 "per 1,000 staked", "vs honest"):
        groups.add_column(name, justify="left" if name in ("group", "dimension") else "right")
    honest = stats["honest"]
    for g in GROUPS:
        s = stats[g]
        for i, dim in enumerate(DIMENSIONS + ("all",)):
            head = (g, f"{s.members:,}", _cp(s.stake)) if i == 0 else ("", "", "")
            groups.add_row(*head, dim, _cp(s.totals[dim]), _cp(s.mean(dim)),
                           f"{s.per_stake(dim) * 1000:,.2f}",
                           _times(s.per_stake(dim), honest.per_stake(dim)))
        groups.add_section()
    console.print(groups)

    p, farm, ring = result.params, stats["sybil farm"], stats["self-vote ring"]

    def per_referral(s) -> str:
        return _cp(s.totals["relationship"] / s.referrals) if s.referrals else "-"

    console.print(
        f"referral cap: {p['referral_cap_per_period']} bonuses of {_cp(p['referral_bonus'])} per "
        f"referrer per {p['referral_period_ms'] // 86_400_000}-day period "
        f"({referral_periods(result)} periods in this run):\n"
        f"  the farmer made {farm.referrals} referrals and earned {per_referral(farm)} per referral; "
        f"honest referrers made {honest.referrals}, earning {per_referral(honest)} each.\n"
        f"self-vote cap: {p['self_vote_max_bps'] / 100:g}% weight; the ring still earns "
        f"{_times(ring.per_stake('content'), honest.per_stake('content'))} honest content per CP "
        f"staked by voting for each other.\n"
        f"posts awaiting payout at the end: {result.posts_awaiting_payout:,} (paid "
        f"{p['payout_window_ms'] // 86_400_000} days after posting).")
