"""`simulate`: print and plot what honest members and abusers with the same stake earn."""
import shutil
from pathlib import Path

import click


def _cp(milli: float) -> str:
    return f"{milli / 1000:,.3f}"


def _times(value: float, honest: float) -> str:
    return f"{value / honest:.2f}x" if honest else "-"


@click.command("simulate")
@click.option("--members", default=1000, show_default=True, type=click.IntRange(100, 100_000))
@click.option("--days", default=30, show_default=True, type=click.IntRange(1, 365))
@click.option("--seed", default=1, show_default=True, type=int, help="Same seed, same output.")
@click.option("--out", default="simulate.png", show_default=True,
              type=click.Path(dir_okay=False, path_type=Path), help="Where to write the plot.")
def simulate(members, days, seed, out):
    """Run a synthetic community (honest members and every adversary group of
    node.simulate_adversaries) through the real state transition and rules contract, and again
    without the griefers to measure their harm; print and plot rewards per dimension and group."""
    from rich.console import Console
    from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn

    from node.simulate import SimConfig, griefing_harm, simulate as run, without_griefers
    from node.simulate_plot import plot

    columns = (TextColumn("{task.description}"), BarColumn(), MofNCompleteColumn(),
               TextColumn("days"), TimeElapsedColumn(), TextColumn("{task.fields[txs]:,} txs"))
    config = SimConfig(members, days, seed)
    with Progress(*columns, console=Console(stderr=True)) as progress:
        results = []
        for label, cfg in (("simulating", config), ("again without griefers", without_griefers(config))):
            task = progress.add_task(label, total=days, txs=0)
            results.append(run(cfg, lambda day, txs: progress.update(task, completed=day, txs=txs)))
    result, harm = results[0], griefing_harm(*results)
    console = Console(width=max(160, shutil.get_terminal_size((120, 24)).columns))
    _print_report(console, result, harm, results[1].wall_s)
    click.echo(f"plot: {plot(result, out, harm).resolve()}")


def _print_report(console, result, harm, second_run_s: float) -> None:
    from rich.table import Table

    from contracts import DIMENSIONS
    from node.simulate import GRIEFERS, GROUPS, dimension_gini, group_stats, issuance

    cfg, stats, ginis = result.config, group_stats(result), dimension_gini(result)
    applied, rejected = sum(result.applied.values()), sum(result.rejected.values())
    console.print(
        f"{cfg.members:,} members, {cfg.days} days, seed {cfg.seed}: {result.blocks:,} blocks (one per "
        f"simulated minute) in {result.wall_s:.1f} s ({applied / result.wall_s:,.0f} tx/s); the run "
        f"without griefers took {second_run_s:.1f} s\n"
        f"txs applied {applied:,}: {', '.join(f'{k} {v:,}' for k, v in result.applied.items())}\n"
        f"txs rejected {rejected:,}: "
        f"{', '.join(f'{k} {v:,}' for k, v in result.rejected.items()) or 'none'}")

    issued, paid, left = issuance(result)
    console.print(f"issued into the pools {_cp(issued)} CP (issuance_per_block x {result.blocks:,} "
                  f"blocks): paid out {_cp(paid)} ({_pct(paid, issued)}), left in the pools "
                  f"{_cp(left)} ({_pct(left, issued)}; the pools also take the rules' fees)")
    dims = Table(title="Rewards per dimension (CP)")
    for name in ("dimension", "paid", "Gini across members", "left in pool"):
        dims.add_column(name, justify="left" if name == "dimension" else "right")
    for dim in DIMENSIONS + ("all",):
        paid = sum(stats[g].totals[dim] for g in GROUPS)
        left = sum(result.pools_left.values()) if dim == "all" else result.pools_left[dim]
        dims.add_row(dim, _cp(paid), f"{ginis[dim]:.3f}", _cp(left))
    console.print(dims)

    groups = Table(title="Rewards per group (CP): each adversary group holds the stake of an "
                         "equal-sized honest group, but the whale (44% of all stake) and the "
                         "griefers (free accounts and a sponsor)")
    for name in ("group", "members", "staked", "dimension", "total", "per member",
                 "per 1,000 staked", "vs honest", "share of rewards"):
        groups.add_column(name, justify="left" if name in ("group", "dimension") else "right",
                          no_wrap=True)
    honest = stats["honest"]
    for g in GROUPS:
        s = stats[g]
        for i, dim in enumerate(DIMENSIONS + ("all",)):
            head = (g, f"{s.members:,}", _cp(s.stake)) if i == 0 else ("", "", "")
            per_1000 = f"{s.per_stake(dim) * 1000:,.2f}" if s.stake else "-"
            groups.add_row(*head, dim, _cp(s.totals[dim]), _cp(s.mean(dim)), per_1000,
                           _times(s.per_stake(dim), honest.per_stake(dim)) if s.stake else "-",
                           _pct(s.totals[dim], sum(stats[x].totals[dim] for x in GROUPS)))
        groups.add_section()
    console.print(groups)

    for g in GRIEFERS:
        h = harm[g]
        console.print(f"griefing harm of {g}: {h.harm:.1%} of the content reward of its "
                      f"{h.targets:,} targets ({_cp(h.content_with)} CP with the griefers, "
                      f"{_cp(h.content_without)} without)")
    for g in ("honest", "sybil farm"):
        s = stats[g]
        each = _cp(s.totals["relationship"] / s.referrals) if s.referrals else "-"
        console.print(f"{g}: {s.referrals:,} referrals made, {each} relationship earned per referral")


def _pct(part: float, whole: float) -> str:
    return f"{part / whole:.1%}" if whole else "-"
