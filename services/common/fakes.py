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

The hashing is in ``services.common.fake_hashing``, the pattern shapes in
``services.common.fake_patterns``, the rare numbers (``Avoid``) in
``services.common.fake_avoid``; the public names are importable from here.
"""

from __future__ import annotations

import hashlib
import re
import secrets
from collections import Counter
from collections.abc import Sequence
from typing import Any

import numpy as np
import pyarrow as pa

from services.common.fake_avoid import Avoid, learn_avoid
from services.common.fake_avoid import rare_hash_count as rare_hash_count
from services.common.fake_hashing import contains, mix, pack, text_hash, unpack
from services.common.fake_patterns import describe_token, learn_shapes, permute, shape_space, token_space, unrank

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
# Draws of one identifier before its shape's distinctness guarantee is given up: row r's draw a is
# value number r + a * (space // (_UNIQUE_ATTEMPTS + 1)) of the shape's keyed permutation, so rows
# below space // (_UNIQUE_ATTEMPTS + 1) get distinct fakes.
_UNIQUE_ATTEMPTS = 8
# Shapes larger than this are not permuted: a random draw repeats with negligible odds.
_MAX_PERMUTED = 1 << 60
# Draws of one cell before a fake that hits a real value gives up (never in practice).
_MAX_ATTEMPTS = 64
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
        "exclude": pack(text_hash(v, salt) for v in distinct),
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
    spec.update(generator="pattern", unique=unique, shapes=learn_shapes(train_values, distinct, k, integer))
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
    top = "".join(describe_token(t) for t in shapes[0]["tokens"])
    more = f" and {len(shapes) - 1} more format{'s' if len(shapes) > 2 else ''}" if len(shapes) > 1 else ""
    return f"pattern {top}{more}"


# ---------------------------------------------------------------------------------------------
# Making fakes (sampler)
# ---------------------------------------------------------------------------------------------


class FakeMaker:
    """Makes the fakes of one column from its spec (see ``learn_fake``)."""

    def __init__(self, spec: dict[str, Any], column: str) -> None:
        self._spec = spec
        self._salt = bytes.fromhex(spec["salt"])
        self._exclude = np.sort(unpack(spec.get("exclude") or ""))
        self._column_key = mix(int.from_bytes(hashlib.blake2b(column.encode(), digest_size=8).digest(), "little"))
        self._integer = bool(spec.get("integer"))
        self._faker: Any = None
        if spec.get("generator") == "pattern":
            self._shapes = spec["shapes"]
            self._cumulative = np.cumsum([s["w"] for s in self._shapes])
            self._spaces = [shape_space(s["tokens"]) for s in self._shapes]
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
            key = mix(seed, self._column_key, row)
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
        return bool(contains(self._exclude, np.array([text_hash(text, self._salt)], dtype=np.uint64))[0])

    def _one(self, seed: int, row: int, key: int) -> str:
        for attempt in range(_MAX_ATTEMPTS):
            if self._spec.get("generator") == "faker":
                text = self._faker_value(mix(key, attempt, 0xFA4E))
            else:
                text = self._pattern_value(seed, row, key, attempt)
            if not self._is_real(text):
                return text
        return text

    # ---- pattern ------------------------------------------------------------------------------
    def _pattern_value(self, seed: int, row: int, key: int, attempt: int) -> str:
        stride = self._slots // (_UNIQUE_ATTEMPTS + 1)
        if self._spec.get("unique") and self._slots <= _MAX_PERMUTED and attempt <= _UNIQUE_ATTEMPTS and stride > 0:
            slot = permute((row % stride) + attempt * stride, self._slots, mix(seed, self._column_key))
            index = int(np.searchsorted(self._slot_starts, slot, side="right")) - 1
            space = self._spaces[index]
            number = permute(slot - int(self._slot_starts[index]), space, mix(seed, self._column_key, index))
        else:
            u = (mix(key, 0x5A) >> 11) / 2.0**53
            index = int(np.searchsorted(self._cumulative, u * self._cumulative[-1], side="right"))
            index = min(index, len(self._shapes) - 1)
            space = self._spaces[index]
            number = mix(seed, self._column_key, index, attempt, row) % max(space, 1)
        tokens = self._shapes[index]["tokens"]
        parts = []
        for t in tokens:
            if t["c"] == "=":
                parts.append(next(iter(t["t"])))
                continue
            number, value = divmod(number, token_space(t))
            parts.append(unrank(value, t))
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
