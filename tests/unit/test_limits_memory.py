"""The in-memory limit backend and rule selection: sliding windows, all-or-nothing reserve, settle, sweeping."""

from __future__ import annotations

import random
from types import SimpleNamespace

import pytest

from llm_gateway.limits.memory import MemoryBackend
from llm_gateway.limits.rules import KEY_RULE_ID, Rule, RuleSet, compile_rules
from llm_gateway.settings import LimitsConfig


class Clock:
    def __init__(self, t: float = 1_000_000.0) -> None:
        self.t = t

    def __call__(self) -> float:
        return self.t


def test_request_limit_is_exact_and_slides() -> None:
    clock = Clock()
    backend = MemoryBackend(clock)
    rule = Rule("r", "user", 10.0, 3, None, buckets=10)  # buckets of 1s
    outcomes = [backend.reserve_now(["r|a"], [rule], [0]) for _ in range(4)]
    assert [o.ok for o in outcomes] == [True, True, True, False]
    assert [o.used_requests[0] for o in outcomes] == [1, 2, 3, 3]
    refused = outcomes[3]
    assert refused.failed == 0
    # All three sit in the current bucket: it leaves the window 10 s after its end.
    assert 10.0 < refused.retry_after <= 11.0
    assert 10.0 < outcomes[0].resets[0] <= 11.0
    clock.t += 5
    assert not backend.reserve_now(["r|a"], [rule], [0]).ok  # still inside the window
    clock.t += 6.5
    assert backend.reserve_now(["r|a"], [rule], [0]).ok  # slid out
    assert backend.reserve_now(["r|b"], [rule], [0]).ok  # another subject has its own window


def test_bucket_sliding_out_counts_in_proportion() -> None:
    clock = Clock(1000.0)
    backend = MemoryBackend(clock)
    rule = Rule("t", "global", 10.0, None, 100, buckets=10)
    assert backend.reserve_now(["t|"], [rule], [100]).ok
    clock.t += 10.25  # the charged bucket is a quarter of the way out of the window
    out = backend.reserve_now(["t|"], [rule], [26])
    assert not out.ok and out.used_tokens[0] == 75
    assert backend.reserve_now(["t|"], [rule], [25]).ok


def test_reserve_is_all_or_nothing_across_checks() -> None:
    backend = MemoryBackend(Clock())
    tight = Rule("tight", "user", 60, 1, None)
    loose = Rule("loose", "global", 60, None, 1000)
    assert backend.reserve_now(["tight|a", "loose|"], [tight, loose], [0, 10]).ok
    refused = backend.reserve_now(["tight|a", "loose|"], [tight, loose], [0, 10])
    assert not refused.ok and refused.failed == 0
    assert refused.used_tokens[1] == 10  # the loose limit was not charged for the refused request
    assert backend.reserve_now(["loose|"], [loose], [10]).used_tokens[0] == 20


def test_too_large_request_is_refused_with_the_window_as_retry() -> None:
    backend = MemoryBackend(Clock())
    rule = Rule("t", "user", 60, None, 50)
    out = backend.reserve_now(["t|a"], [rule], [51])
    assert not out.ok and out.retry_after == 60.0


def test_settle_releases_and_charges_overrun() -> None:
    clock = Clock()
    backend = MemoryBackend(clock)
    rule = Rule("t", "user", 60, None, 100)
    first = backend.reserve_now(["t|a"], [rule], [80])
    assert first.used_tokens == [80]
    backend.settle(["t|a"], [rule], [-70], first.stamp_ms)  # used 10 of the 80 reserved
    second = backend.reserve_now(["t|a"], [rule], [90])
    assert second.ok and second.used_tokens == [100]
    backend.settle(["t|a"], [rule], [5], second.stamp_ms)  # used 95: 5 more than reserved
    assert backend.reserve_now(["t|a"], [rule], [0]).used_tokens == [105]
    clock.t += 120  # the charged bucket left the window: a release is moot, an overrun counts now
    backend.settle(["t|a"], [rule], [-50], first.stamp_ms)
    backend.settle(["t|a"], [rule], [7], first.stamp_ms)
    assert backend.reserve_now(["t|a"], [rule], [0]).used_tokens == [7]


def test_idle_windows_are_swept() -> None:
    clock = Clock()
    backend = MemoryBackend(clock)
    rule = Rule("r", "user", 1, 5, None)
    for user in range(100):
        backend.reserve_now([f"r|{user}"], [rule], [0])
    clock.t += 120
    backend.reserve_now(["r|new"], [rule], [0])
    assert list(backend._windows) == ["r|new"]


def test_rule_selection_by_scope_model_and_key() -> None:
    config = LimitsConfig.model_validate({
        "per_user_tokens": {"enabled": True, "window_minutes": 1, "max_tokens": 100, "count": "prompt"},
        "rules": [
            {"scope": "global", "window": "1d", "tokens": 10**6},
            {"name": "gpt4-only", "scope": "model", "requests": 5, "models": ["gpt-4"]},
            {"scope": "key", "requests": 10},
            {"scope": "key_model", "window": "1h", "requests": 10},
            {"scope": "user_model", "window": 30, "requests": 10},
        ]})
    rules = compile_rules(config)
    assert [r.id for r in rules] == ["global/86400s", "gpt4-only", "key/60s", "key_model/3600s",
                                     "user_model/30s", "per_user_tokens"]
    genai = rules[-1]
    assert (genai.scope, genai.window_s, genai.tokens, genai.requests) == ("user", 60, 100, None)
    assert genai.cost(7, 5) == 7 and rules[0].cost(7, 5) == 12
    ruleset = RuleSet(rules)
    no_key = ruleset.checks("", "gpt-3.5", None)
    assert no_key.keys == ["global/86400s|{}", "user_model/30s|{anonymous}|gpt-3.5", "per_user_tokens|{anonymous}"]
    key = SimpleNamespace(id="key_1", rpm_limit=2, tpm_limit=None)
    with_key = ruleset.checks("bob", "gpt-4", key)
    # Each key carries its principal as a Redis Cluster hash tag: one slot per principal.
    assert with_key.keys == ["global/86400s|{}", "gpt4-only|{gpt-4}", "key/60s|{key_1}",
                             "key_model/3600s|{key_1}|gpt-4", "user_model/30s|{bob}|gpt-4", "per_user_tokens|{bob}",
                             f"{KEY_RULE_ID}|{{key_1}}"]
    key_rule = with_key.rules[-1]
    assert (key_rule.requests, key_rule.tokens, key_rule.window_s) == (2, None, 60.0)
    assert ruleset.checks("bob", "gpt-4", key).rules[-1] is key_rule  # built once per distinct limit pair
    assert "requests per 1m per key" in rules[2].describe()


def test_rule_config_errors_have_paths() -> None:
    from llm_gateway.settings import ConfigError, parse_config

    def problems(rules: list[dict[str, object]]) -> list[str]:
        with pytest.raises(ConfigError) as exc:
            parse_config({"limits": {"rules": rules}})
        return exc.value.problems

    assert problems([{"scope": "key", "requests": 1, "window": "1x"}]) == [
        "limits.rules[0].window: not a duration: '1x' (use e.g. 30s, 1m, 1h, 1d)"]
    assert problems([{"scope": "key"}]) == ["limits.rules[0]: set requests, tokens or both"]
    assert problems([{"scope": "key", "requests": 1, "window": 5, "window_seconds": 5}]) == [
        "limits.rules[0]: set window or window_seconds, not both"]
    assert problems([{"scope": "key", "requests": 1}, {"scope": "key", "tokens": 1, "window": 60}]) == [
        "limits: rules: duplicate limit(s) key/60s: give each a distinct name"]
    ok = parse_config({"limits": {"rules": [{"scope": "key", "requests": 1, "window_seconds": 90},
                                            {"scope": "user", "tokens": 1, "window": "250ms"}]}})
    assert [r.window_s for r in ok.limits.rules] == [90.0, 0.25]


def test_running_totals_agree_with_summing_every_bucket() -> None:
    """The window keeps running totals; over a random history they must match a sum over all its buckets."""
    rng = random.Random(7)
    clock = Clock(5_000.0)
    backend = MemoryBackend(clock)
    rule = Rule("w", "user", 10.0, 10**9, 10**9, buckets=10)  # buckets of 1 s
    charged: list[tuple[int, int]] = []  # (tokens reserved, stamp)
    for _ in range(2000):
        clock.t += rng.choice([0.0, 0.05, 0.3, 1.1, 4.0, 12.0])
        if charged and rng.random() < 0.3:
            tokens, stamp = charged.pop(rng.randrange(len(charged)))
            backend.settle(["w|a"], [rule], [rng.randint(-tokens - 5, 20)], stamp)
            continue
        cost = rng.randint(0, 50)
        out = backend.reserve_now(["w|a"], [rule], [cost])
        charged.append((cost, out.stamp_ms))
        win = backend._windows["w|a"]
        now = int(clock.t * 1000)
        cur, frac = now // 1000, (now % 1000) / 1000
        oldest = cur - rule.buckets
        for series in (win.requests, win.tokens):
            live = {i: v for i, v in series.buckets.items() if i >= oldest}
            expected = sum(v * (1 - frac) if i == oldest else v for i, v in live.items())
            used, newest = series.measure(oldest, frac)
            assert used == pytest.approx(expected)
            assert newest == max((i for i, v in live.items() if v > 0), default=-1)
            assert series.total == sum(live.values())
