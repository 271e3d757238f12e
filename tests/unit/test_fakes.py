"""Fakes keep the source's format, are reproducible per seed, and are never a real value;
rare real numbers are kept out of synthetic ones."""

from __future__ import annotations

import re

import numpy as np
import pytest

from services.common.fakes import Avoid, FakeMaker, describe_fake, learn_avoid, learn_fake

# Kaggle Titanic's ticket formats (values made up here, in the real ones' shapes).
_PREFIXES = ["PC ", "A/5 ", "STON/O2. ", "C.A. ", "SC/PARIS "]


def _fake(
    name: str, values: list[str], *, k: int = 5, free_text: bool = False, integer: bool = False, unique: bool = True
):
    spec = learn_fake(
        name, values, values, rows=len(values), missing=0, k=k, free_text=free_text, integer=integer, unique=unique
    )
    return spec, FakeMaker(spec, name)


def test_pattern_ids_keep_the_format_are_distinct_and_never_real() -> None:
    rng = np.random.default_rng(1)
    real = [f"S{n:06d}" for n in rng.choice(900_000, 800, replace=False) + 100_000]
    spec, maker = _fake("customer_id", real)
    fakes = maker.make(seed=7, first_row=0, rows=2000).to_pylist()
    assert all(re.fullmatch(r"S[1-9]\d{5}", f) for f in fakes)  # the prefix is shared by all: kept
    assert len(set(fakes)) == len(fakes)  # identifiers: distinct within a sample
    assert not set(fakes) & set(real)
    assert describe_fake(spec) == "pattern S999999"


def test_fakes_depend_on_seed_and_row_only() -> None:
    real = [f"AB-{n:04d}" for n in range(1000, 1400)]
    spec, maker = _fake("code_ref", real)
    whole = maker.make(seed=3, first_row=0, rows=100).to_pylist()
    halves = (
        maker.make(seed=3, first_row=0, rows=40).to_pylist() + maker.make(seed=3, first_row=40, rows=60).to_pylist()
    )
    assert whole == halves  # chunking does not matter
    assert FakeMaker(spec, "code_ref").make(3, 0, 100).to_pylist() == whole  # a fresh maker: the same fakes
    assert maker.make(seed=4, first_row=0, rows=100).to_pylist() != whole
    assert all(re.fullmatch(r"AB-\d{4}", f) for f in whole) and not set(whole) & set(real)


def test_prefixes_shared_by_k_values_are_kept_rare_texts_are_not() -> None:
    rng = np.random.default_rng(2)
    real = [f"{_PREFIXES[i % 5]}{n}" for i, n in enumerate(rng.choice(900_000, 500, replace=False) + 100_000)]
    real += ["LINE", "WE/P 5735"]  # formats of one value each: never reproduced
    _, maker = _fake("Ticket", real)
    fakes = maker.make(seed=1, first_row=0, rows=1000).to_pylist()
    assert not set(fakes) & set(real)
    prefixes = {f.rsplit(" ", 1)[0] + " " for f in fakes}
    assert prefixes <= set(_PREFIXES)
    assert all(re.fullmatch(r"\d{6}", f.rsplit(" ", 1)[1]) for f in fakes)
    assert "LINE" not in fakes and not any(f.startswith("WE/P") for f in fakes)


def test_integer_ids_stay_integers_and_widen_past_the_real_ones() -> None:
    real = [str(i) for i in range(1, 892)]  # Titanic PassengerId: 1..891 leaves no free 3-digit id
    spec, maker = _fake("PassengerId", real, integer=True)
    fakes = maker.make(seed=5, first_row=0, rows=891).to_pylist()
    assert all(isinstance(f, int) for f in fakes)
    assert len(set(fakes)) == 891 and not {str(f) for f in fakes} & set(real)
    assert all(1000 <= f <= 9999 for f in fakes)


def test_person_names_keep_the_layout_and_titles() -> None:
    firsts = ["Owen", "John", "Laina", "Anna", "William", "James", "Timothy", "Gosta", "Elizabeth", "Mary"]
    lasts = ["Braund", "Cumings", "Heikkinen", "Futrelle", "Allen", "Moran", "McCarthy", "Palsson", "Sandstrom"]
    titles = ["Mr.", "Mrs.", "Miss.", "Master."]
    real = [f"{lasts[i % 9]}, {titles[i % 4]} {firsts[i % 10]} {chr(65 + i % 26)}{i}" for i in range(200)]
    real.append("Rothes, the Countess. of (Lucy Noel Martha Dyer-Edwards)")  # one title: not reproduced
    spec, maker = _fake("Name", real, free_text=True, unique=False)
    fakes = maker.make(seed=2, first_row=0, rows=200).to_pylist()
    assert all(re.fullmatch(r"[A-Z][A-Za-z' -]+, (Mr|Mrs|Miss|Master)\. [A-Z][a-z]+", f) for f in fakes), fakes[:5]
    assert not set(fakes) & set(real)
    assert describe_fake(spec) == "person names (Faker, en_US)"


def test_emails_phones_and_free_text() -> None:
    emails = [f"user{i}@mail{i % 7}.example.com" for i in range(100)]
    _, maker = _fake("contact", emails, unique=False)  # recognised from the values
    assert all(re.fullmatch(r"[^@\s]+@[^@\s]+\.[a-z]+", f) for f in maker.make(1, 0, 50).to_pylist())
    phones = [f"555-01{i:02d}" for i in range(100)]
    spec, maker = _fake("phone_number", phones, unique=False)
    assert spec["kind"] == "phone" and all(re.search(r"\d{3}", f) for f in maker.make(1, 0, 20).to_pylist())
    notes = [f"note {i}: the passenger boarded late and asked for tea" for i in range(50)]
    spec, maker = _fake("remarks", notes, free_text=True, unique=False)
    texts = maker.make(1, 0, 20).to_pylist()
    assert spec["kind"] == "text" and all(len(t.split()) >= 3 for t in texts)


def test_missing_share_is_kept() -> None:
    values = [f"C{i}" for i in range(10, 214)]
    spec = learn_fake("Cabin", values, values, rows=891, missing=687, k=5, free_text=False, integer=False, unique=True)
    fakes = FakeMaker(spec, "Cabin").make(seed=1, first_row=0, rows=4000).to_pylist()
    share = sum(f is None for f in fakes) / len(fakes)
    assert share == pytest.approx(687 / 891, abs=0.03)


def test_rare_numbers_are_top_coded_and_moved_off() -> None:
    ages = np.array([22.0, 38, 26, 35, 54, 2, 27, 14, 4, 58, 20, 39, 55, 31] * 5 + [80.0, 70.5, 0.42, 66.0, np.nan])
    spec = learn_avoid(ages, k=5)
    assert spec is not None and spec["rare_values"] == 4 and spec["step"] == 0.01
    assert (spec["low"], spec["high"]) == (2.0, 58.0)  # the 5th smallest and largest
    avoid = Avoid.from_spec(spec)
    out = avoid.apply(np.array([80.0, 70.5, 0.42, 22.0, 66.0, np.nan, 30.0]))
    assert out[0] == 58.0 and out[1] == 58.0 and out[2] == 2.0  # top- and bottom-coded
    assert out[3] == 22.0 and np.isnan(out[5]) and out[6] == 30.0  # frequent and unseen values stay
    ints = np.array([1.0] * 10 + [2.0, 3.0] + [4.0] * 10)
    avoid = Avoid.from_spec(learn_avoid(ints, k=5))
    moved = avoid.apply(np.array([2.0, 3.0, 2.0]))
    assert set(moved.tolist()) <= {1.0, 4.0}  # 2 and 3 are rare: moved to the nearest value that is not
