"""Pattern fakes (``services.common.fakes``): a column's values cut into runs,
grouped into shapes with their frequencies, widened where real values fill them,
and the runs' texts numbered (rank/unrank) so that a keyed permutation of a
shape's numbers gives distinct values."""

from __future__ import annotations

import re
from collections import Counter
from collections.abc import Sequence
from typing import Any

from services.common.fake_hashing import mix

# A shape is widened until it has this many times more values than real values use (so at
# most half of a shape's values are real ones, and a drawn fake is real at most half the time).
_ROOM = 2
# At most this many formats per column (the most frequent ones).
_MAX_SHAPES = 64
_TOKEN = re.compile(r"[A-Z]+|[a-z]+|[0-9]+|.", re.S)
_CLASSES = {"A": "ABCDEFGHIJKLMNOPQRSTUVWXYZ", "a": "abcdefghijklmnopqrstuvwxyz", "9": "0123456789"}


def _tokens(value: str) -> list[str]:
    return _TOKEN.findall(value)


def _token_class(token: str) -> str:
    c = token[0]
    if "A" <= c <= "Z":
        return "A"
    if "a" <= c <= "z":
        return "a"
    if "0" <= c <= "9":
        return "9"
    return "=" + token


def _shape_key(tokens: Sequence[str]) -> tuple[tuple[str, int], ...]:
    return tuple((_token_class(t), len(t)) for t in tokens)


def learn_shapes(values: Sequence[str], all_distinct: Sequence[str], k: int, integer: bool) -> list[dict[str, Any]]:
    groups: dict[tuple[tuple[str, int], ...], Counter[str]] = {}
    for v in values:
        groups.setdefault(_shape_key(_tokens(v)), Counter())[v] += 1
    real_per_key = Counter(_shape_key(_tokens(v)) for v in all_distinct)
    kept = {key: c for key, c in groups.items() if len(c) >= k}
    safe_texts = True
    if not kept:  # no format shared by k values: keep them all, every run drawn at random
        kept, safe_texts = groups, False
    merged: dict[tuple[tuple[str, int], ...], dict[str, Any]] = {}
    for key, counts in kept.items():
        weight = sum(counts.values())
        tokens = []
        for pos, (cls, length) in enumerate(key):
            if cls.startswith("="):
                tokens.append({"c": "=", "t": {cls[1:]: 1.0}, "n": 1})
                continue
            at_pos: Counter[str] = Counter()
            for v in counts:
                at_pos[_tokens(v)[pos]] += 1
            texts = {t: c for t, c in at_pos.items() if c >= k} if safe_texts else {}
            shared = sum(texts.values())
            lead = cls == "9" and not any(_tokens(v)[pos].startswith("0") for v in counts)
            token: dict[str, Any] = {"c": cls, "n": length, "lead": lead}
            if texts:
                token["t"] = {t: c / len(counts) for t, c in texts.items()}
            token["r"] = 1.0 - shared / len(counts)
            tokens.append(token)
        tokens = _widened(tokens, real_per_key, key, len(counts))
        if integer and tokens and tokens[0]["c"] == "9":
            tokens[0]["lead"] = True
        for share, expanded in _expand(tokens):
            final = tuple((t["c"] if t["c"] != "=" else "=" + next(iter(t["t"])), t["n"]) for t in expanded)
            if final in merged:
                merged[final]["w"] += weight * share
            else:
                merged[final] = {"w": weight * share, "tokens": expanded}
    ranked = sorted(merged.values(), key=lambda s: -s["w"])[:_MAX_SHAPES]
    total = sum(s["w"] for s in ranked)
    return [{"w": s["w"] / total, "tokens": s["tokens"]} for s in ranked]


def _expand(tokens: list[dict[str, Any]]) -> list[tuple[float, list[dict[str, Any]]]]:
    """A shape whose runs may keep a shared real text, as shapes whose runs are each a fixed
    text or fully random, with their shares: so every fake of a shape is one of its values,
    and distinct values give distinct fakes."""
    out: list[tuple[float, list[dict[str, Any]]]] = [(1.0, [])]
    for t in tokens:
        texts = t.get("t") or {}
        if t["c"] == "=" or not texts:
            out = [(w, [*ts, t]) for w, ts in out]
            continue
        options = [(share, {"c": "=", "t": {text: 1.0}, "n": t["n"]}) for text, share in texts.items()]
        if t.get("r", 0.0) > 1e-9:  # any other text of the run's class and length
            random_run = {"c": t["c"], "n": t["n"], "lead": t.get("lead", False), "r": 1.0}
            random_run["x"] = sorted(_rank(text, random_run) for text in texts)
            options.append((t["r"], random_run))
        out = [(w * share, [*ts, option]) for w, ts in out for share, option in options]
        out = sorted(out, key=lambda x: -x[0])[:_MAX_SHAPES]
    return out


def _radices(t: dict[str, Any]) -> list[int]:
    alphabet = len(_CLASSES[t["c"]])
    return [alphabet - 1 if j == 0 and t.get("lead") else alphabet for j in range(t["n"])]


def token_space(t: dict[str, Any]) -> int:
    if t["c"] == "=" or t.get("r", 1.0) <= 0:
        return 1
    size = 1
    for radix in _radices(t):
        size *= radix
    return size - len(t.get("x", ()))


def _rank(text: str, t: dict[str, Any]) -> int:
    """A run's text as its number (first character least significant), as ``unrank`` reads it."""
    alphabet = _CLASSES[t["c"]]
    rank, scale = 0, 1
    for j, (char, radix) in enumerate(zip(text, _radices(t), strict=True)):
        rank += (alphabet.index(char) - (1 if j == 0 and t.get("lead") else 0)) * scale
        scale *= radix
    return rank


def unrank(value: int, t: dict[str, Any]) -> str:
    for excluded in t.get("x", ()):  # skip the texts the shape's other options write
        if excluded <= value:
            value += 1
    alphabet = _CLASSES[t["c"]]
    chars = []
    for j, radix in enumerate(_radices(t)):
        value, digit = divmod(value, radix)
        chars.append(alphabet[digit + (1 if j == 0 and t.get("lead") else 0)])
    return "".join(chars)


def shape_space(tokens: Sequence[dict[str, Any]]) -> int:
    size = 1
    for t in tokens:
        size *= token_space(t)
    return size


def _widened(
    tokens: list[dict[str, Any]], real_per_key: Counter, key: tuple[tuple[str, int], ...], own: int
) -> list[dict[str, Any]]:
    """Lengthen the longest fully random run until the shape has _ROOM times more values than
    real values take (its own, and those of the shape it grows into)."""
    current = list(key)
    for _ in range(16):
        if shape_space(tokens) >= _ROOM * (real_per_key.get(tuple(current), 0) + own):
            return tokens
        random_runs = [i for i, t in enumerate(tokens) if t["c"] != "=" and t.get("r", 0) >= 1.0]
        if not random_runs:
            return tokens
        i = max(random_runs, key=lambda j: (tokens[j]["c"] == "9", tokens[j]["n"]))
        tokens[i] = {**tokens[i], "n": tokens[i]["n"] + 1}
        current[i] = (current[i][0], current[i][1] + 1)
    return tokens


def describe_token(t: dict[str, Any]) -> str:
    if t["c"] == "=":
        return next(iter(t["t"]))
    texts = t.get("t") or {}
    if texts and t.get("r", 1.0) <= 0 and len(texts) == 1:
        return next(iter(texts))
    return {"A": "A", "a": "a", "9": "9"}[t["c"]] * t["n"]


def permute(x: int, n: int, key: int) -> int:
    """A keyed bijection of [0, n): a 4-round Feistel network on the next even bit width,
    cycle-walked into range."""
    if n <= 1:
        return 0
    bits = max(2, (n - 1).bit_length())
    bits += bits % 2
    half = bits // 2
    mask = (1 << half) - 1
    while True:
        left, right = x >> half, x & mask
        for round_ in range(4):
            left, right = right, left ^ (mix(key, round_, right) & mask)
        x = (left << half) | right
        if x < n:
            return x
