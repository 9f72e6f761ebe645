"""`cli.py simulate`: a small community through the real state transition and rules contract.
The same seed gives the same result; the rules' limits hold for every member (referral cap per
period, participation cap per day, payout window); the report and the PNG come out."""
import pytest
from click.testing import CliRunner

from cli import cli
from node.simulate import (GROUPS, SimConfig, dimension_gini, gini, group_stats, referral_periods,
                           simulate)

CONFIG = SimConfig(members=60, days=9, seed=7)  # past the 7-day payout window and a referral period


@pytest.fixture(scope="module")
def result():
    return simulate(CONFIG)


def test_the_same_seed_gives_the_same_result_and_another_seed_does_not(result):
    assert simulate(CONFIG) == result  # everything but the wall time
    assert simulate(SimConfig(60, 9, seed=8)) != result


def test_population_and_txs(result):
    stats = group_stats(result)
    assert sum(s.members for s in stats.values()) == CONFIG.members
    honest_mean = stats["honest"].stake / stats["honest"].members
    for abusers in ("sybil farm", "self-vote ring"):  # the stake of an equal-sized honest group
        assert stats[abusers].stake / stats[abusers].members == pytest.approx(honest_mean, rel=1e-3)
    assert result.applied["vote"] > result.applied["post"] > 0
    assert result.blocks == CONFIG.days * 1440 - 1


def test_the_referral_cap_limits_the_farm_per_period(result):
    p, stats = result.params, group_stats(result)
    bonus, cap = p["referral_bonus"], p["referral_cap_per_period"]
    farmer = next(m for m in result.members if m.name == "farmer")
    farm, honest = stats["sybil farm"], stats["honest"]
    assert farm.referrals > cap * referral_periods(result)  # the farm refers more than the cap
    assert farmer.rewards[2] <= bonus * cap * referral_periods(result)
    assert farm.totals["relationship"] / farm.referrals < honest.totals["relationship"] / honest.referrals


def test_behaviour_stays_within_attendance_and_the_daily_participation_cap(result):
    p = result.params
    for m in result.members:
        assert m.rewards[1] <= m.sent("attend") * p["attend_points"] + CONFIG.days * p["participation_cap_per_day"]


def test_content_is_paid_only_after_the_payout_window(result):
    window_days = result.params["payout_window_ms"] // 86_400_000
    assert all(result.daily[window_days - 1][g][0] == 0 for g in GROUPS)
    assert sum(m.rewards[0] for m in result.members) > 0


def test_gini(result):
    assert gini([5, 5, 5]) == 0 and gini([0, 0, 0, 8]) == 0.75 and gini([]) == 0
    assert all(0 <= g <= 1 for g in dimension_gini(result).values())


def test_cli_prints_the_report_and_writes_a_png(tmp_path):
    out = tmp_path / "sim.png"
    r = CliRunner().invoke(cli, ["simulate", "--members", "40", "--days", "2", "--out", str(out)])
    assert r.exit_code == 0, r.output
    for text in ("Gini", "honest", "sybil farm", "self-vote ring", "txs applied", str(out)):
        assert text in r.output
    png = out.read_bytes()
    assert png.startswith(b"\x89PNG\r\n\x1a\n") and len(png) > 10_000
