"""Limit rules compiled from the config, and which of them apply to a request (its checks)."""

from __future__ import annotations

from typing import Any, Literal

from llm_gateway.settings import LimitsConfig

Count = Literal["prompt", "completion", "total"]
ANONYMOUS = "anonymous"
KEY_RULE_ID = "virtual-key/60s"  # a virtual key's own rpm/tpm limits


class Rule:
    """One limit: at most `requests` and/or `tokens` per sliding window of `window_s`, per subject of `scope`."""

    __slots__ = ("bucket_ms", "buckets", "count", "id", "models", "params", "requests", "scope", "tokens",
                 "window_ms", "window_s")

    def __init__(self, id: str, scope: str, window_s: float, requests: int | None, tokens: int | None,
                 count: Count = "total", models: frozenset[str] | None = None, buckets: int = 20) -> None:
        self.id = id
        self.scope = scope
        self.window_s = window_s
        self.window_ms = max(1, round(window_s * 1000))
        # Whole milliseconds so both backends (and every replica) cut the same buckets.
        self.bucket_ms = max(1, self.window_ms // buckets)
        self.buckets = self.window_ms // self.bucket_ms
        self.requests = requests
        self.tokens = tokens
        self.count = count
        self.models = models
        # What the Redis script needs of the rule (-1: not limited), built once rather than per request.
        self.params = (self.bucket_ms, self.buckets, -1 if requests is None else requests,
                       -1 if tokens is None else tokens)

    def cost(self, prompt: int, completion: int) -> int:
        """The tokens of a request this rule counts."""
        if self.count == "total":
            return prompt + completion
        return prompt if self.count == "prompt" else completion

    def describe(self) -> str:
        what = " and ".join(w for w, n in (("requests", self.requests), ("tokens", self.tokens)) if n is not None)
        per = "in total" if self.scope == "global" else f"per {self.scope.replace('_', '×')}"
        return f"{what} per {_duration(self.window_s)} {per}"

    def __repr__(self) -> str:
        return f"Rule({self.id!r}, {self.describe()})"


def _duration(seconds: float) -> str:
    for unit, size in (("d", 86400), ("h", 3600), ("m", 60)):
        if seconds >= size and seconds % size == 0:
            return f"{int(seconds // size)}{unit}"
    return f"{seconds:g}s"


def compile_rules(config: LimitsConfig) -> list[Rule]:
    rules = [Rule(r.id, r.scope, r.window_s, r.requests, r.tokens, r.count,
                  frozenset(r.models) if r.models is not None else None, config.buckets) for r in config.rules]
    genai = config.per_user_tokens
    if genai.enabled:
        rules.append(Rule("per_user_tokens", "user", genai.window_minutes * 60, None, genai.max_tokens,
                          genai.count, None, config.buckets))
    return rules


class Checks:
    """The rules that apply to one request and the counter each one uses (its storage key)."""

    __slots__ = ("keys", "rules")

    def __init__(self) -> None:
        self.rules: list[Rule] = []
        self.keys: list[str] = []


class RuleSet:
    """All configured rules, plus the per-key rules that virtual keys with rpm/tpm limits bring."""

    def __init__(self, rules: list[Rule], buckets: int = 20) -> None:
        self.rules = rules
        self.buckets = buckets
        self._key_rules: dict[tuple[int | None, int | None], Rule] = {}

    def key_rule(self, rpm: int | None, tpm: int | None) -> Rule:
        rule = self._key_rules.get((rpm, tpm))
        if rule is None:
            if len(self._key_rules) > 10_000:  # bounded: limits are few distinct numbers in practice
                self._key_rules.clear()
            rule = self._key_rules[(rpm, tpm)] = Rule(KEY_RULE_ID, "key", 60.0, rpm, tpm, "total", None,
                                                      self.buckets)
        return rule

    def checks(self, user: str, model: str, key: Any, end_user: str = "") -> Checks:
        """`user` is whom the request is for (a bound key's user); `end_user` the user the client named, counted
        within its key (so no key can use up another key's end users' quota)."""
        out = Checks()
        key_id = getattr(key, "id", None) if key is not None else None
        if not user and key_id is not None:
            user_scopes: tuple[str, ...] = ("user", "user_model")  # a key of no user: no user to count
        else:
            user_scopes = ()
        user = user or ANONYMOUS
        for rule in self.rules:
            if rule.models is not None and model not in rule.models:
                continue
            scope = rule.scope
            if scope in user_scopes:
                continue
            # The subject's principal is the key's hash tag: a Redis Cluster keeps each principal's counters in
            # one slot, so a request's checks take one script call per principal at most.
            if scope == "end_user":
                if not end_user:
                    continue
                subject = f"{{{key_id or ''}}}|{end_user}"
            elif scope == "user":
                subject = f"{{{user}}}"
            elif scope == "global":
                subject = "{}"
            elif scope == "model":
                subject = f"{{{model}}}"
            elif scope == "user_model":
                subject = f"{{{user}}}|{model}"
            elif key_id is None:
                continue  # key scopes apply only to requests made with a virtual key
            elif scope == "key":
                subject = f"{{{key_id}}}"
            else:
                subject = f"{{{key_id}}}|{model}"
            out.rules.append(rule)
            out.keys.append(f"{rule.id}|{subject}")
        if key_id is not None:
            rpm, tpm = getattr(key, "rpm_limit", None), getattr(key, "tpm_limit", None)
            if rpm is not None or tpm is not None:
                rule = self.key_rule(rpm, tpm)
                out.rules.append(rule)
                out.keys.append(f"{KEY_RULE_ID}|{{{key_id}}}")
        return out
