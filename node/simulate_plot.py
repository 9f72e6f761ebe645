"""The PNG of `cli.py simulate`: who earns what, how unequally, and when, in four panels.

Drawn on a bare matplotlib Figure (Agg canvas), so no display and no pyplot global state is needed.
"""
from pathlib import Path

from matplotlib.figure import Figure

from contracts import DIMENSIONS
from node.simulate import GROUPS, SimResult, dimension_gini, group_stats

COLORS = {"honest": "tab:green", "sybil farm": "tab:orange", "self-vote ring": "tab:red"}


def lorenz(values) -> tuple[list[float], list[float]]:
    """Cumulative share of members (x) against cumulative share of rewards (y), poorest first."""
    xs = sorted(values)
    total, n = sum(xs) or 1, len(xs)
    running, ys = 0, [0.0]
    for x in xs:
        running += x
        ys.append(running / total)
    return [i / n for i in range(n + 1)], ys


def _bars(ax, groups: tuple[str, ...], dims: tuple[str, ...], value, title: str,
          ylabel: str) -> None:
    """Bars of value(group, dimension), grouped by dimension, labelled with their values."""
    width = 0.8 / len(groups)
    for i, group in enumerate(groups):
        bars = ax.bar([d + i * width for d in range(len(dims))], [value(group, d) for d in dims],
                      width, label=group, color=COLORS[group])
        ax.bar_label(bars, fmt="%.2f", fontsize=8)
    ax.set_xticks([d + width * (len(groups) - 1) / 2 for d in range(len(dims))], dims)
    ax.set_title(title)
    ax.set_ylabel(ylabel)
    ax.legend()


def plot(result: SimResult, path: Path | str) -> Path:
    stats = group_stats(result)
    fig = Figure(figsize=(14, 10), layout="constrained")
    (mean_ax, ratio_ax), (lorenz_ax, time_ax) = fig.subplots(2, 2)
    cfg = result.config
    fig.suptitle(f"{cfg.members} members, {cfg.days} days (seed {cfg.seed}): community-asset "
                 "rewards under the default rules", fontsize=14)

    _bars(mean_ax, GROUPS, DIMENSIONS, lambda g, d: stats[g].mean(d) / 1000,
          "Mean reward per member", "CP")
    honest = stats["honest"]
    _bars(ratio_ax, GROUPS[1:], DIMENSIONS + ("all",),
          lambda g, d: stats[g].per_stake(d) / honest.per_stake(d) if honest.per_stake(d) else 0,
          "Abusers' reward per CP staked, relative to honest members", "x honest")
    ratio_ax.axhline(1, color=COLORS["honest"], linestyle="--", label="honest")
    ratio_ax.legend()

    ginis = dimension_gini(result)
    for i, dim in enumerate(DIMENSIONS + ("all",)):
        rewards = [sum(m.rewards) if dim == "all" else m.rewards[i] for m in result.members]
        lorenz_ax.plot(*lorenz(rewards), label=f"{dim} (Gini {ginis[dim]:.2f})",
                       linewidth=2.5 if dim == "all" else 1.5)
    lorenz_ax.plot([0, 1], [0, 1], color="grey", linestyle=":", label="equal shares")
    lorenz_ax.set_title("Lorenz curves across all members")
    lorenz_ax.set_xlabel("share of members, lowest rewards first")
    lorenz_ax.set_ylabel("share of rewards")
    lorenz_ax.legend()

    days = range(len(result.daily) + 1)
    for group in GROUPS:
        n = stats[group].members or 1
        time_ax.plot(days, [0] + [sum(day[group]) / n / 1000 for day in result.daily],
                     label=group, color=COLORS[group], marker=".")
    window_days = result.params["payout_window_ms"] / 86_400_000
    time_ax.axvline(window_days, color="grey", linestyle=":", label="payout window: posts paid")
    time_ax.set_title("Cumulative reward per member (all dimensions)")
    time_ax.set_xlabel("days since genesis")
    time_ax.set_ylabel("CP")
    time_ax.legend()

    path = Path(path)
    fig.savefig(path, dpi=100)
    return path
