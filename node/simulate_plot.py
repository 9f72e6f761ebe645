"""The PNG of `cli.py simulate`: who earns what, how unequally, and when, in four panels, with
the griefers' harm in the title when it was measured.

Drawn on a bare matplotlib Figure (Agg canvas), so no display and no pyplot global state is needed.
"""
from pathlib import Path

from matplotlib.figure import Figure

from contracts import DIMENSIONS
from node.simulate import GRIEFERS, GROUPS, Harm, SimResult, dimension_gini, group_stats

COLORS = {"honest": "tab:green", "self-vote ring": "tab:red", "leaky ring": "salmon",
          "sybil farm": "tab:orange", "event clique": "tab:purple", "whale": "tab:blue",
          "comment spammers": "tab:brown", "stake passers": "tab:olive",
          "slot squatters": "tab:gray", "post spam": "black"}


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
        ax.bar_label(bars, fmt="%.2f", fontsize=6, rotation=90, padding=2)
    ax.set_xticks([d + width * (len(groups) - 1) / 2 for d in range(len(dims))], dims)
    ax.set_title(title)
    ax.set_ylabel(ylabel)
    ax.legend(fontsize=8)


def plot(result: SimResult, path: Path | str, harm: dict[str, Harm] | None = None) -> Path:
    stats = group_stats(result)
    fig = Figure(figsize=(18, 11), layout="constrained")
    (mean_ax, ratio_ax), (lorenz_ax, time_ax) = fig.subplots(2, 2)
    cfg = result.config
    harms = "; ".join(f"{g} {h.harm:.0%}" for g, h in (harm or {}).items())
    fig.suptitle(f"{cfg.members} members, {cfg.days} days (seed {cfg.seed}): community-asset "
                 "rewards under the default rules"
                 + (f"\nharm to the griefers' targets' content reward: {harms}" if harms else ""),
                 fontsize=14)

    _bars(mean_ax, GROUPS, DIMENSIONS, lambda g, d: stats[g].mean(d) / 1000,
          "Mean reward per member", "CP")
    honest = stats["honest"]
    staked = tuple(g for g in GROUPS[1:] if g not in GRIEFERS)
    _bars(ratio_ax, staked, DIMENSIONS + ("all",),
          lambda g, d: stats[g].per_stake(d) / honest.per_stake(d) if honest.per_stake(d) else 0,
          "Abusers' reward per CP staked, relative to honest members", "x honest")
    ratio_ax.axhline(1, color=COLORS["honest"], linestyle="--", label="honest")
    ratio_ax.legend(fontsize=8)

    ginis = dimension_gini(result)
    for i, dim in enumerate(DIMENSIONS + ("all",)):
        rewards = [sum(m.rewards) if dim == "all" else m.rewards[i] for m in result.members]
        lorenz_ax.plot(*lorenz(rewards), label=f"{dim} (Gini {ginis[dim]:.2f})",
                       linewidth=2.5 if dim == "all" else 1.5)
    lorenz_ax.plot([0, 1], [0, 1], color="grey", linestyle=":", label="equal shares")
    lorenz_ax.set_title("Lorenz curves across all members")
    lorenz_ax.set_xlabel("share of members, lowest rewards first")
    lorenz_ax.set_ylabel("share of rewards")
    lorenz_ax.legend(fontsize=8)

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
    time_ax.legend(fontsize=8)

    path = Path(path)
    fig.savefig(path, dpi=100)
    return path
