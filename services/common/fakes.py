"""Fakes in a source column's format, and rare real values kept out of synthetic numbers.

Identifier and free-text columns are not learned (a model could only memorise them). A
training job records instead how to make *fakes* for them (``learn_fake``, run by the
trainer on the real values), and the sampler makes them (``FakeMaker``):

- ``pattern``: values with the source's character classes, lengths and shared prefixes.
  Each value is cut into runs of upper-case letters, lower-case letters and digits, and
  single other characters (``S123456`` -> ``S`` ``123456``; ``A/5 21171`` -> ``A`` ``/``
  ``5`` `` `` ``21171``); values with the same runs form a *shape*, drawn with its real
  frequency. A run keeps a real text only where at least ``k`` distinct real values share
  it (``PC`` in ``PC 17599``; the rare-value count of the job); every other run is drawn
  at random in its class and length (a digit run that never starts with 0 in the source
  does not start with 0). Where real values fill most of a shape (Titanic ``PassengerId``
  1..891 leaves no free 3-digit number), the shape is widened by a digit or letter.
  Identifier fakes are distinct within a sample (of up to about a ninth as many rows as the
  shapes have values): row ``i`` takes slot ``i`` of a keyed permutation in which each shape
  owns as many slots as its weight asks, and each slot a distinct value of its shape.
- ``faker``: person names (with the source's layout: ``Last, Title First`` or ``First
  Last``, titles drawn at their real frequency when ``k`` values share them), first or
  last names, e-mail addresses, phone numbers, addresses, cities, countries, companies,
  jobs, URLs (from the column name, or from the values for e-mail addresses), or
  sentences of the source's length for other free text, from Faker in the job's locale.

A fake depends on (seed, row number) alone: nothing links it to a real row, and the
same seed gives the same fakes like the rest of the sampler's output. It is never a
real value: the real values' salted hashes (8 bytes each, never the values) are kept
with the model, and a fake that hits one is drawn again. Missing cells keep the
source's missing share.

Learned numeric columns (``Avoid``): the real values seen in fewer than ``k`` training
rows are kept out of synthetic rows. Values are top- and bottom-coded at the ``k``-th
largest and smallest real values (a table's oldest person is usually unique), and a
synthetic number that lands exactly on a rare real value (on the column's grid of
decimals, seconds or days) moves to the nearest grid point that is not one. The rare
values are again kept as salted hashes.
"""

from __future__ import annotations

import base64
import hashlib
import re
import secrets
from collections import Counter
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
import pyarrow as pa

__all__ = [
    "DEFAULT_LOCALE",
    "Avoid",
    "FakeMaker",
    "describe_fake",
    "learn_avoid",
    "learn_fake",
    "locale_ok",
]

DEFAULT_LOCALE = "en_US"
_MASK64 = (1 << 64) - 1
# A shape is widened until it has this many times more values than real values use (so at
# most half of a shape's values are real ones, and a drawn fake is real at most half the time).
_ROOM = 2
# Draws of one identifier before its shape's distinctness guarantee is given up: row r's draw a is
# value number r + a * (space // (_UNIQUE_ATTEMPTS + 1)) of the shape's keyed permutation, so rows
# below space // (_UNIQUE_ATTEMPTS + 1) get distinct fakes.
_UNIQUE_ATTEMPTS = 8
# At most this many formats per column (the most frequent ones).
_MAX_SHAPES = 64
# Shapes larger than this are not permuted: a random draw repeats with negligible odds.
_MAX_PERMUTED = 1 << 60
# Draws of one cell before a fake that hits a real value gives up (never in practice).
_MAX_ATTEMPTS = 64
_TOKEN = re.compile(r"[A-Z]+|[a-z]+|[0-9]+|.", re.S)
_CLASSES = {"A": "ABCDEFGHIJKLMNOPQRSTUVWXYZ", "a": "abcdefghijklmnopqrstuvwxyz", "9": "0123456789"}
_EMAIL = re.compile(r"^[^@\s]+@[^@\s]+\.[A-Za-z]{2,}$")
_TITLE = re.compile(r"^[A-Z][a-z]{0,7}\.$")
# A name ending in one of these words holds codes, made by pattern whatever the words before.
_CODE_WORDS = frozenset({"id", "key", "uuid", "guid", "pk", "no", "nr", "number", "num", "code", "ref", "zip"})
_FEMALE_TITLES = frozenset({"Mrs.", "Miss.", "Ms.", "Mme.", "Mlle.", "Lady.", "Mrs", "Miss", "Ms"})
_MALE_TITLES = frozenset({"Mr.", "Master.", "Sir.", "Mr", "Master"})
# Column-name words -> Faker kinds (the last match wins for names like "customer_email").
_NAME_WORDS: dict[str, str] = {
    "name": "name",
    "fullname": "name",
    "passenger": "name",
    "customer": "name",
    "person": "name",
    "patient": "name",
    "firstname": "first_name",
    "forename": "first_name",
    "givenname": "first_name",
    "lastname": "last_name",
    "surname": "last_name",
    "familyname": "last_name",
    "email": "email",
    "mail": "email",
    "emailaddress": "email",
    "mailaddress": "email",
    "phonenumber": "phone",
    "phoneno": "phone",
    "telno": "phone",
    "mobilenumber": "phone",
    "cellnumber": "phone",
    "faxnumber": "phone",
    "streetaddress": "address",
    "phone": "phone",
    "telephone": "phone",
    "tel": "phone",
    "mobile": "phone",
    "cell": "phone",
    "fax": "phone",
    "address": "address",
    "street": "address",
    "addr": "address",
    "city": "city",
    "town": "city",
    "country": "country",
    "company": "company",
    "employer": "company",
    "job": "job",
    "occupation": "job",
    "url": "url",
    "website": "url",
}


# ---------------------------------------------------------------------------------------------
# Hashing: row keys, salted value hashes
# ---------------------------------------------------------------------------------------------


def _mix(*parts: int) -> int:
    """splitmix64 over the parts: a well-spread 64-bit key."""
    z = 0x9E3779B97F4A7C15
    for part in parts:
        z = (z ^ (part & _MASK64)) & _MASK64
        z = (z + 0x9E3779B97F4A7C15) & _MASK64
        z = ((z ^ (z >> 30)) * 0xBF58476D1CE4E5B9) & _MASK64
        z = ((z ^ (z >> 27)) * 0x94D049BB133111EB) & _MASK64
        z ^= z >> 31
    return z


def _mix_array(values: np.ndarray, salt: int) -> np.ndarray:
    """splitmix64 of uint64 values xor ``salt``, vectorised."""
    with np.errstate(over="ignore"):
        z = values.astype(np.uint64) ^ np.uint64(salt & _MASK64)
        z = z + np.uint64(0x9E3779B97F4A7C15)
        z = (z ^ (z >> np.uint64(30))) * np.uint64(0xBF58476D1CE4E5B9)
        z = (z ^ (z >> np.uint64(27))) * np.uint64(0x94D049BB133111EB)
        return z ^ (z >> np.uint64(31))


def _text_hash(text: str, salt: bytes) -> int:
    return int.from_bytes(hashlib.blake2b(text.encode("utf-8"), digest_size=8, key=salt).digest(), "little")


def _pack(hashes: Iterable[int] | np.ndarray) -> str:
    array = np.unique(np.asarray(list(hashes) if not isinstance(hashes, np.ndarray) else hashes, dtype=np.uint64))
    return base64.b64encode(array.astype("<u8").tobytes()).decode("ascii")


def _unpack(packed: str) -> np.ndarray:
    return np.frombuffer(base64.b64decode(packed), dtype="<u8").astype(np.uint64)


def _contains(sorted_hashes: np.ndarray, keys: np.ndarray) -> np.ndarray:
    if len(sorted_hashes) == 0:
        return np.zeros(len(keys), dtype=bool)
    pos = np.minimum(np.searchsorted(sorted_hashes, keys), len(sorted_hashes) - 1)
    return sorted_hashes[pos] == keys


# ---------------------------------------------------------------------------------------------
# Learning a fake (trainer)
# ---------------------------------------------------------------------------------------------


def locale_ok(locale: str) -> bool:
    from faker.config import AVAILABLE_LOCALES

    return locale in AVAILABLE_LOCALES


def _words(name: str) -> list[str]:
    spaced = re.sub(r"([a-z0-9])([A-Z])", r"\1 \2", name.strip())
    return [w.lower() for w in re.split(r"[^A-Za-z0-9]+", spaced) if w]


def _faker_kind(name: str, values: Sequence[str], free_text: bool) -> str | None:
    words = _words(name)
    kind = None
    pairs = [a + b for a, b in zip(words, words[1:], strict=False)]
    for key in ("".join(words), *reversed(pairs)):  # "phone_number", "email_address", "last_name"
        if key in _NAME_WORDS:
            kind = _NAME_WORDS[key]
            break
    if kind is None and words and words[-1] not in _CODE_WORDS:  # "customer_id" is a code, not a name
        for key in reversed(words):
            if key in _NAME_WORDS:
                kind = _NAME_WORDS[key]
                break
    sample = [v for v in values[:2000] if v]
    if sample and sum(bool(_EMAIL.match(v)) for v in sample) >= 0.8 * len(sample):
        return "email"
    if kind is not None:
        return kind
    return "text" if free_text else None


def learn_fake(
    name: str,
    train_values: Sequence[str],
    all_values: Sequence[str],
    *,
    rows: int,
    missing: int,
    k: int,
    free_text: bool,
    integer: bool,
    unique: bool,
    locale: str = DEFAULT_LOCALE,
) -> dict[str, Any]:
    """How to fake a column: ``train_values`` (the training rows' present cells, as text)
    give the format; ``all_values`` (every real present cell) the values fakes must avoid.
    ``rows``/``missing`` give the missing share; ``k`` the rare-value count; ``unique``:
    an identifier (fakes distinct within a sample); ``integer``: fakes are whole numbers."""
    salt = secrets.token_bytes(16)
    distinct = sorted(set(all_values))
    spec: dict[str, Any] = {
        "missing": missing / rows if rows else 0.0,
        "salt": salt.hex(),
        "exclude": _pack(_text_hash(v, salt) for v in distinct),
        "integer": integer,
    }
    kind = None if integer else _faker_kind(name, list(train_values), free_text)
    if kind is not None:
        spec.update(generator="faker", kind=kind, locale=locale)
        if kind == "name":
            spec.update(_name_layout(train_values, k))
        elif kind == "text":
            lengths = [len(v.split()) for v in train_values] or [5]
            spec["words"] = max(1, round(float(np.mean(lengths))))
        elif kind == "address":
            spec["one_line"] = not any("\n" in v for v in train_values[:2000])
        return spec
    spec.update(generator="pattern", unique=unique, shapes=_learn_shapes(train_values, distinct, k, integer))
    return spec


def _name_layout(values: Sequence[str], k: int) -> dict[str, Any]:
    sample = [v for v in values if v]
    n = max(len(sample), 1)
    comma = sum("," in v for v in sample) / n
    titles: Counter[str] = Counter()
    for v in sample:
        for token in v.replace(",", " ").split():
            if _TITLE.match(token):
                titles[token] += 1
                break
    titled = sum(titles.values()) / n
    kept = {t: c for t, c in titles.items() if c >= k}
    return {
        "last_first": comma >= 0.5,
        "titles": kept if titled >= 0.5 and kept else {},
    }


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


def _learn_shapes(values: Sequence[str], all_distinct: Sequence[str], k: int, integer: bool) -> list[dict[str, Any]]:
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


def _token_space(t: dict[str, Any]) -> int:
    if t["c"] == "=" or t.get("r", 1.0) <= 0:
        return 1
    size = 1
    for radix in _radices(t):
        size *= radix
    return size - len(t.get("x", ()))


def _rank(text: str, t: dict[str, Any]) -> int:
    """A run's text as its number (first character least significant), as ``_unrank`` reads it."""
    alphabet = _CLASSES[t["c"]]
    rank, scale = 0, 1
    for j, (char, radix) in enumerate(zip(text, _radices(t), strict=True)):
        rank += (alphabet.index(char) - (1 if j == 0 and t.get("lead") else 0)) * scale
        scale *= radix
    return rank


def _unrank(value: int, t: dict[str, Any]) -> str:
    for excluded in t.get("x", ()):  # skip the texts the shape's other options write
        if excluded <= value:
            value += 1
    alphabet = _CLASSES[t["c"]]
    chars = []
    for j, radix in enumerate(_radices(t)):
        value, digit = divmod(value, radix)
        chars.append(alphabet[digit + (1 if j == 0 and t.get("lead") else 0)])
    return "".join(chars)


def _space(tokens: Sequence[dict[str, Any]]) -> int:
    size = 1
    for t in tokens:
        size *= _token_space(t)
    return size


def _widened(
    tokens: list[dict[str, Any]], real_per_key: Counter, key: tuple[tuple[str, int], ...], own: int
) -> list[dict[str, Any]]:
    """Lengthen the longest fully random run until the shape has _ROOM times more values than
    real values take (its own, and those of the shape it grows into)."""
    current = list(key)
    for _ in range(16):
        if _space(tokens) >= _ROOM * (real_per_key.get(tuple(current), 0) + own):
            return tokens
        random_runs = [i for i, t in enumerate(tokens) if t["c"] != "=" and t.get("r", 0) >= 1.0]
        if not random_runs:
            return tokens
        i = max(random_runs, key=lambda j: (tokens[j]["c"] == "9", tokens[j]["n"]))
        tokens[i] = {**tokens[i], "n": tokens[i]["n"] + 1}
        current[i] = (current[i][0], current[i][1] + 1)
    return tokens


def describe_fake(spec: dict[str, Any] | None) -> str:
    """A short human description, e.g. ``pattern A/9 99999 (3 formats)`` or ``names (Faker, en_US)``."""
    if not spec:
        return ""
    if spec.get("generator") == "faker":
        what = {
            "name": "person names",
            "first_name": "first names",
            "last_name": "last names",
            "email": "e-mail addresses",
            "phone": "phone numbers",
            "address": "addresses",
            "city": "city names",
            "country": "country names",
            "company": "company names",
            "job": "job titles",
            "url": "URLs",
            "text": "sentences",
        }.get(str(spec.get("kind")), str(spec.get("kind")))
        return f"{what} (Faker, {spec.get('locale', DEFAULT_LOCALE)})"
    shapes = sorted(spec.get("shapes", []), key=lambda s: -s["w"])
    if not shapes:
        return "pattern"
    top = "".join(_describe_token(t) for t in shapes[0]["tokens"])
    more = f" and {len(shapes) - 1} more format{'s' if len(shapes) > 2 else ''}" if len(shapes) > 1 else ""
    return f"pattern {top}{more}"


def _describe_token(t: dict[str, Any]) -> str:
    if t["c"] == "=":
        return next(iter(t["t"]))
    texts = t.get("t") or {}
    if texts and t.get("r", 1.0) <= 0 and len(texts) == 1:
        return next(iter(texts))
    return {"A": "A", "a": "a", "9": "9"}[t["c"]] * t["n"]


# ---------------------------------------------------------------------------------------------
# Making fakes (sampler)
# ---------------------------------------------------------------------------------------------


def _permute(x: int, n: int, key: int) -> int:
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
            left, right = right, left ^ (_mix(key, round_, right) & mask)
        x = (left << half) | right
        if x < n:
            return x


class FakeMaker:
    """Makes the fakes of one column from its spec (see ``learn_fake``)."""

    def __init__(self, spec: dict[str, Any], column: str) -> None:
        self._spec = spec
        self._salt = bytes.fromhex(spec["salt"])
        self._exclude = np.sort(_unpack(spec.get("exclude") or ""))
        self._column_key = _mix(int.from_bytes(hashlib.blake2b(column.encode(), digest_size=8).digest(), "little"))
        self._integer = bool(spec.get("integer"))
        self._faker: Any = None
        if spec.get("generator") == "pattern":
            self._shapes = spec["shapes"]
            self._cumulative = np.cumsum([s["w"] for s in self._shapes])
            self._spaces = [_space(s["tokens"]) for s in self._shapes]
            # Identifiers: one keyed permutation over a "virtual" range in which each shape owns a
            # slice as large as its weight, no larger than its own number of values: a row's slot
            # gives its shape and a distinct value of it.
            # (Shapes of fewer than 100 values, e.g. one fixed text, only get what they have.)
            weights = [max(float(s["w"]), 1e-12) for s in self._shapes]
            roomy = [space / w for space, w in zip(self._spaces, weights, strict=True) if space >= 100]
            virtual = min(roomy) if roomy else max(self._spaces) / max(weights)
            sizes = [max(1, min(space, int(w * virtual))) for space, w in zip(self._spaces, weights, strict=True)]
            self._slot_starts = np.cumsum([0, *sizes])
            self._slots = int(self._slot_starts[-1])

    @property
    def arrow_type(self) -> pa.DataType:
        return pa.int64() if self._integer else pa.string()

    def make(self, seed: int, first_row: int, rows: int) -> pa.Array:
        """Fakes of rows ``first_row`` .. ``first_row + rows - 1`` of a sample drawn with ``seed``."""
        out: list[Any] = []
        missing = float(self._spec.get("missing", 0.0))
        for row in range(first_row, first_row + rows):
            key = _mix(seed, self._column_key, row)
            if missing > 0 and (key >> 11) / 2.0**53 < missing:
                out.append(None)
                continue
            out.append(self._one(seed, row, key))
        if self._integer:
            return pa.array([None if v is None else int(v) for v in out], type=pa.int64())
        return pa.array(out, type=pa.string())

    def _is_real(self, text: str) -> bool:
        if len(self._exclude) == 0:
            return False
        return bool(_contains(self._exclude, np.array([_text_hash(text, self._salt)], dtype=np.uint64))[0])

    def _one(self, seed: int, row: int, key: int) -> str:
        for attempt in range(_MAX_ATTEMPTS):
            if self._spec.get("generator") == "faker":
                text = self._faker_value(_mix(key, attempt, 0xFA4E))
            else:
                text = self._pattern_value(seed, row, key, attempt)
            if not self._is_real(text):
                return text
        return text

    # ---- pattern ------------------------------------------------------------------------------
    def _pattern_value(self, seed: int, row: int, key: int, attempt: int) -> str:
        stride = self._slots // (_UNIQUE_ATTEMPTS + 1)
        if self._spec.get("unique") and self._slots <= _MAX_PERMUTED and attempt <= _UNIQUE_ATTEMPTS and stride > 0:
            slot = _permute((row % stride) + attempt * stride, self._slots, _mix(seed, self._column_key))
            index = int(np.searchsorted(self._slot_starts, slot, side="right")) - 1
            space = self._spaces[index]
            number = _permute(slot - int(self._slot_starts[index]), space, _mix(seed, self._column_key, index))
        else:
            u = (_mix(key, 0x5A) >> 11) / 2.0**53
            index = int(np.searchsorted(self._cumulative, u * self._cumulative[-1], side="right"))
            index = min(index, len(self._shapes) - 1)
            space = self._spaces[index]
            number = _mix(seed, self._column_key, index, attempt, row) % max(space, 1)
        tokens = self._shapes[index]["tokens"]
        parts = []
        for t in tokens:
            if t["c"] == "=":
                parts.append(next(iter(t["t"])))
                continue
            number, value = divmod(number, _token_space(t))
            parts.append(_unrank(value, t))
        return "".join(parts)

    # ---- Faker ----------------------------------------------------------------------------------
    def _faker_value(self, key: int) -> str:
        if self._faker is None:
            from faker import Faker

            self._faker = Faker(self._spec.get("locale", DEFAULT_LOCALE))
        fake = self._faker
        fake.seed_instance(key)
        kind = self._spec["kind"]
        if kind == "name":
            titles = self._spec.get("titles") or {}
            title = ""
            if titles:
                total = sum(titles.values())
                u = fake.random.random() * total
                for t, c in titles.items():
                    u -= c
                    if u < 0:
                        title = t
                        break
            if title in _FEMALE_TITLES:
                first = fake.first_name_female()
            elif title in _MALE_TITLES:
                first = fake.first_name_male()
            else:
                first = fake.first_name()
            given = f"{title} {first}".strip()
            last = fake.last_name()
            return f"{last}, {given}" if self._spec.get("last_first") else f"{given} {last}"
        if kind == "first_name":
            return str(fake.first_name())
        if kind == "last_name":
            return str(fake.last_name())
        if kind == "email":
            return str(fake.email())
        if kind == "phone":
            return str(fake.phone_number())
        if kind == "address":
            address = str(fake.address())
            return address.replace("\n", ", ") if self._spec.get("one_line", True) else address
        if kind == "city":
            return str(fake.city())
        if kind == "country":
            return str(fake.country())
        if kind == "company":
            return str(fake.company())
        if kind == "job":
            return str(fake.job())
        if kind == "url":
            return str(fake.url())
        return str(fake.sentence(nb_words=int(self._spec.get("words", 6)))).rstrip(".")


# ---------------------------------------------------------------------------------------------
# Rare real numbers kept out of synthetic ones
# ---------------------------------------------------------------------------------------------

_GRID_STEPS = (86_400.0, 3_600.0, 60.0, 1.0, 0.1, 0.01, 1e-3, 1e-4, 1e-5, 1e-6)
_MAX_NUDGE = 16


def _grid_step(values: np.ndarray, datetime: bool) -> float | None:
    steps = _GRID_STEPS if datetime else _GRID_STEPS[3:]
    for step in steps:
        q = values / step
        if np.all(np.abs(q - np.round(q)) <= 1e-6 * np.maximum(1.0, np.abs(q) * 1e-9)):
            return step
    return None


def learn_avoid(
    values: np.ndarray, k: int, *, datetime: bool = False, others: np.ndarray | None = None
) -> dict[str, Any] | None:
    """The rare values of a learned numeric column (float64 training values, NaN missing;
    datetimes as epoch seconds): bounds at the k-th smallest and largest value, and the
    salted hashes of the grid points that fewer than ``k`` training rows hold, or fewer than
    ``k`` rows of the whole table (``others``: the rest of its rows, e.g. the holdout). None
    when the column has no present value."""
    present = values[~np.isnan(values)]
    if present.size == 0:
        return None
    ordered = np.sort(present)
    kk = min(k, ordered.size)
    low, high = float(ordered[kk - 1]), float(ordered[-kk])
    if low > high:
        low = high = float(np.median(ordered))
    step = _grid_step(present, datetime)
    salt = secrets.randbits(63)
    keys = _grid_keys(present, step)
    uniq, counts = np.unique(keys, return_counts=True)
    rare = uniq[counts < k]
    if others is not None:
        rest = others[~np.isnan(others)]
        everyone, total = np.unique(np.concatenate([keys, _grid_keys(rest, step)]), return_counts=True)
        rare = np.union1d(rare, everyone[total < k])
    return {
        "low": low,
        "high": high,
        "step": step,
        "salt": salt,
        "hashes": _pack(_mix_array(rare.view(np.uint64), salt)),
        "rare_values": int(rare.size),
    }


def _grid_keys(values: np.ndarray, step: float | None) -> np.ndarray:
    if step is None:
        return np.ascontiguousarray(values, dtype=np.float64).view(np.int64)
    return np.round(values / step).astype(np.int64)


@dataclass
class Avoid:
    """Applies a column's ``learn_avoid`` spec to synthetic numbers."""

    low: float
    high: float
    step: float | None
    salt: int
    hashes: np.ndarray

    @classmethod
    def from_spec(cls, spec: dict[str, Any]) -> Avoid:
        return cls(
            low=float(spec["low"]),
            high=float(spec["high"]),
            step=None if spec.get("step") is None else float(spec["step"]),
            salt=int(spec["salt"]),
            hashes=np.sort(_unpack(spec.get("hashes") or "")),
        )

    def _rare(self, values: np.ndarray) -> np.ndarray:
        keys = _grid_keys(values, self.step)
        return _contains(self.hashes, _mix_array(keys.view(np.uint64), self.salt))

    def apply(self, values: np.ndarray) -> np.ndarray:
        """Clip to [low, high], then move values on a rare real value to the nearest grid
        point (within the bounds) that is not one. NaN stays NaN."""
        out = np.clip(values, self.low, self.high)
        present = ~np.isnan(out)
        if len(self.hashes) == 0 or not present.any():
            return out
        idx = np.flatnonzero(present)
        hit = idx[self._rare(out[idx])]
        if hit.size == 0:
            return out
        base = out[hit]
        fixed = np.zeros(hit.size, dtype=bool)
        for distance in range(1, _MAX_NUDGE + 1):
            for sign in (1.0, -1.0):
                todo = ~fixed
                if not todo.any():
                    break
                if self.step is None:
                    cand = base[todo] * (1.0 + sign * distance * 1e-9) + sign * distance * 1e-300
                else:
                    cand = np.round(base[todo] / self.step + sign * distance) * self.step
                ok = (cand >= self.low) & (cand <= self.high) & ~self._rare(cand)
                where = np.flatnonzero(todo)[ok]
                out[hit[where]] = cand[ok]
                fixed[where] = True
        return out


def rare_hash_count(spec: dict[str, Any] | None) -> int:
    return 0 if not spec else int(spec.get("rare_values", 0))
