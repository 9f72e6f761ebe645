"""Throughput of the VM and the cost of each default-rules hook (printed by the CLI's bench).
What the hooks add to applying a tx on a chain state is measured by node/bench_vm.py, since
contracts/ knows nothing of the chain.

This is the one module in contracts/ that reads a clock, and only to time itself: it uses
`timeit.default_timer` unless a clock is injected. Nothing here runs during block application.
"""
from timeit import default_timer

from contracts.compiler import compile_source
from contracts.host import DictHost
from contracts.rules import (DEFAULT_PARAMS, HOOK_FOR_KIND, HOOK_GAS_LIMITS, ROUND_HOOK,
                             load_default_rules)
from contracts.translate import translate
from contracts.vm import Limits, prepare, run

_SPIN = '''
def spin(n):
    total = 0
    i = 0
    while i < n:
        total = total + i % 7
        i += 1
    return total
'''
_SPIN_LIMITS = Limits(max_steps=100_000_000)


def _timed(clock, fn):
    start = clock()
    value = fn()
    return value, clock() - start


def _instructions_per_second(clock, loop_iterations: int) -> dict:
    code = compile_source(_SPIN)
    translate(code)  # translation happens once per contract, not per call: keep it out
    result, seconds = _timed(clock, lambda: run(code, "spin", [loop_iterations], DictHost(),
                                                10 ** 12, limits=_SPIN_LIMITS))
    return {"instructions": result.steps, "seconds": round(seconds, 4),
            "instructions_per_second": int(result.steps / seconds) if seconds > 0 else 0}


def _hook(clock, code, host, kind_or_round, sender=None, body=None, args=()) -> dict:
    """Run one hook as the chain would and report its time, gas and steps."""
    if sender is not None:
        host.set_tx(kind_or_round, sender, body)
    hook = HOOK_FOR_KIND.get(kind_or_round, kind_or_round)
    result, seconds = _timed(clock, lambda: run(code, hook, list(args), host, HOOK_GAS_LIMITS[hook]))
    return {"ms": round(seconds * 1000, 3), "gas": result.gas_used, "steps": result.steps}


def _summary(runs: list[dict]) -> dict:
    """Median time, worst time, worst gas and steps of many calls of one hook."""
    times = sorted(r["ms"] for r in runs)
    return {"ms": times[len(times) // 2], "ms_max": times[-1], "calls": len(runs),
            "gas": max(r["gas"] for r in runs), "steps": max(r["steps"] for r in runs)}


def _post_body(permlink: str) -> dict:
    return {"permlink": permlink, "title": "", "body": "", "tags": []}


def _rules_hooks(clock, posts: int, voters: int) -> dict:
    """Each hook on a community of `voters` members (on_post and on_vote: over all calls), and
    on_round at the worse, in gas, of its two worst cases: `posts` posts that each drew `voters`
    votes (with voters = max_votes_per_post), and a budget's worth of posts without votes."""
    code = load_default_rules()
    prepare(code)  # decode, verify and translate outside the timings, as a running node has done
    translate(code)
    budget = DEFAULT_PARAMS["payout_budget_per_round"]
    params = dict(DEFAULT_PARAMS, max_votes_per_post=voters, posts_paid_per_day=budget)
    window = params["payout_window_ms"]
    host = DictHost(params=params)
    names = [f"member-{i:04d}" for i in range(voters)]
    for name in names:
        host.add_account(name, stake=1_000_000)
    host.add_account("newcomer")
    host.set_block(1, 1_000)
    timings = {"on_refer": _hook(clock, code, host, "refer", names[0],
                                 {"new_account": "newcomer", "pubkey": bytes(32)})}
    authors = ["newcomer"] + [names[p % voters] for p in range(1, posts)]
    event = dict(_post_body("event"), event={"capacity": 10, "ends_at": 7_200_000, "starts_at": 0})
    _hook(clock, code, host, "post", names[0], event)
    timings["on_post"] = _summary([_hook(clock, code, host, "post", author, _post_body(f"post-{p}"))
                                  for p, author in enumerate(authors)])
    timings["on_vote"] = _summary([
        _hook(clock, code, host, "vote", voter, {"post": f"{author}/post-{p}", "weight": 10_000})
        for p, author in enumerate(authors) for voter in names])
    timings["on_attend"] = _hook(clock, code, host, "attend", names[1],
                                 {"event": f"{names[0]}/event", "ticket": bytes(64)})
    host.set_block(2, 1_000 + window)
    voted = dict(_hook(clock, code, host, ROUND_HOOK, args=[1]), posts=posts, votes=posts * voters)
    host.set_block(3, 2_000 + window)
    for p in range(budget):
        _hook(clock, code, host, "post", names[-1], _post_body(f"flood-{p}"))
    host.set_block(4, 2_000 + 2 * window)
    flood = dict(_hook(clock, code, host, ROUND_HOOK, args=[2]), posts=budget, votes=0)
    timings[ROUND_HOOK] = max(voted, flood, key=lambda r: r["gas"])
    return timings


def bench_vm(clock=None, *, loop_iterations: int = 50_000, posts: int | None = None,
             voters: int | None = None) -> dict:
    """{"vm": instructions/s of a tight loop, "hooks": per hook {"ms", "gas", "steps", ...}}.

    By default the voted round pays as many posts of max_votes_per_post votes as one round's
    budget holds (the parameters it reads are the default rules' own).
    """
    clock = clock or default_timer
    voters = DEFAULT_PARAMS["max_votes_per_post"] if voters is None else voters
    if posts is None:
        posts = -(-DEFAULT_PARAMS["payout_budget_per_round"] // (1 + voters))
    return {"vm": _instructions_per_second(clock, loop_iterations),
            "hooks": _rules_hooks(clock, posts, voters)}
