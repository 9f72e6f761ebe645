"""`cli.py simulate`: a small community through the real state transition and rules contract.
The same seed gives the same result; every group takes part with the stake it should hold; the
honest members act the same with or without the griefers, whose harm is measured; the report and
the PNG come out; and, in a smaller version of the default run, no adversary out-earns honest
members per CP staked where it abuses, and the griefers cost their targets nothing."""
import pytest
from click.testing import CliRunner

from cli import cli
from node.simulate import (GRIEFERS, GROUPS, SimConfig, dimension_gini, gini, griefing_harm,
                           group_stats, issuance, simulate, without_griefers)

CONFIG = SimConfig(members=100, days=9, seed=7)  # past the 7-day payout window


@pytest.fixture(scope="module")
def result():
    return simulate(CONFIG)


@pytest.fixture(scope="module")
def result_without_griefers():
    return simulate(without_griefers(CONFIG))


def test_the_same_seed_gives_the_same_result_and_another_seed_does_not(result):
    assert simulate(CONFIG) == result  # everything but the wall time
    assert simulate(SimConfig(100, 9, seed=8)) != result


def test_every_group_takes_part_with_its_stake(result):
    stats = group_stats(result)
    assert all(stats[g].members > 0 for g in GROUPS)
    assert sum(s.members for s in stats.values()) == CONFIG.members
    honest_mean = stats["honest"].stake / stats["honest"].members
    for g in set(GROUPS) - {"honest", "whale", *GRIEFERS}:  # an equal-sized honest group's stake
        assert stats[g].stake / stats[g].members == pytest.approx(honest_mean, rel=1e-3), g
    assert stats["whale"].stake / sum(s.stake for s in stats.values()) == pytest.approx(0.44, abs=1e-3)
    assert all(m.stake == 0 for m in result.members if m.group in GRIEFERS and "sponsor" not in m.name)
    assert result.applied["vote"] > 0 and result.applied["post"] > 0
    assert result.blocks == CONFIG.days * 1440 - 1


def test_the_honest_members_act_the_same_without_the_griefers(result, result_without_griefers):
    def honest_txs(r):
        return {m.name: m.txs for m in r.members if m.group == "honest"}

    assert honest_txs(result) == honest_txs(result_without_griefers)
    assert not {g for m in result_without_griefers.members for g in GRIEFERS if m.group == g}


def test_griefing_harm_compares_the_targets_in_both_runs(result, result_without_griefers):
    harm = griefing_harm(result, result_without_griefers)
    assert set(harm) == set(GRIEFERS)
    assert harm["slot squatters"].targets == len(result.squat_targets) == 20
    assert harm["post spam"].targets == group_stats(result)["honest"].members
    for h in harm.values():
        assert h.content_without > 0 and h.harm == 1 - h.content_with / h.content_without
    with pytest.raises(ValueError):
        griefing_harm(result_without_griefers, result)


def test_gini(result):
    assert gini([5, 5, 5]) == 0 and gini([0, 0, 0, 8]) == 0.75 and gini([]) == 0
    assert all(0 <= g <= 1 for g in dimension_gini(result).values())


def test_cli_prints_the_report_and_writes_a_png(tmp_path):
    out = tmp_path / "sim.png"
    r = CliRunner().invoke(cli, ["simulate", "--members", "100", "--days", "2", "--out", str(out)])
    assert r.exit_code == 0, r.output
    for text in ("Gini", "txs applied", "issued into the pools", "share of rewards", str(out),
                 *GROUPS, *(f"griefing harm of {g}" for g in GRIEFERS)):
        assert text in r.output
    png = out.read_bytes()
    assert png.startswith(b"\x89PNG\r\n\x1a\n") and len(png) > 10_000


# The issue-16 targets on a 500-member, 21-day run (the default is 1,000 members for 30 days).
# Small groups are noisy in the dimensions where they act as honest members do (an 11-member
# clique's posts earn what honest posts of the same quality earn, give or take a lucky post; 5
# comment spammers' four paid comments a day draw honest votes by their quality), so each group
# is held to the dimensions it abuses; every group's total is held to 1.0x but the clique's,
# which its posts' luck can move.
SMALL = SimConfig(members=500, days=21, seed=1)
ABUSED = {"self-vote ring": ("content",), "leaky ring": ("content",),
          "sybil farm": ("content", "behaviour", "relationship"), "event clique": ("behaviour",),
          "whale": ("content",), "comment spammers": ("behaviour",),
          "stake passers": ("content", "behaviour", "relationship")}


@pytest.fixture(scope="module")
def small_runs():
    return simulate(SMALL), simulate(without_griefers(SMALL))


def test_no_adversary_out_earns_honest_members_per_cp_staked(small_runs):
    stats = group_stats(small_runs[0])
    honest = stats["honest"]

    def ratio(group, dimension):
        return stats[group].per_stake(dimension) / honest.per_stake(dimension)

    assert set(ABUSED) == set(GROUPS) - {"honest", *GRIEFERS}
    for group, dimensions in ABUSED.items():
        assert group == "event clique" or ratio(group, "all") <= 1.0, group
        for dimension in dimensions:
            assert ratio(group, dimension) <= 1.0, (group, dimension)
    assert ratio("whale", "content") < 0.2  # 44% of the stake, voting only for its alt
    assert ratio("sybil farm", "relationship") <= 0.8  # its accomplices vouch once a period each


def test_griefers_cost_their_targets_nothing_and_the_pools_pay_out(small_runs):
    for harm in griefing_harm(*small_runs).values():
        assert harm.harm <= 0.05
    issued, paid, _ = issuance(small_runs[0])
    assert paid >= 0.8 * issued  # content pays from day 7: the default month pays over 90%
