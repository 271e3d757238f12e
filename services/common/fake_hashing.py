"""Hashing for fakes (``services.common.fakes``): well-spread row keys
(splitmix64), salted 8-byte hashes of real values, and sorted hash sets packed
as base64 text for the model's spec."""

from __future__ import annotations

import base64
import hashlib
from collections.abc import Iterable

import numpy as np

_MASK64 = (1 << 64) - 1


def mix(*parts: int) -> int:
    """splitmix64 over the parts: a well-spread 64-bit key."""
    z = 0x9E3779B97F4A7C15
    for part in parts:
        z = (z ^ (part & _MASK64)) & _MASK64
        z = (z + 0x9E3779B97F4A7C15) & _MASK64
        z = ((z ^ (z >> 30)) * 0xBF58476D1CE4E5B9) & _MASK64
        z = ((z ^ (z >> 27)) * 0x94D049BB133111EB) & _MASK64
        z ^= z >> 31
    return z


def mix_array(values: np.ndarray, salt: int) -> np.ndarray:
    """splitmix64 of uint64 values xor ``salt``, vectorised."""
    with np.errstate(over="ignore"):
        z = values.astype(np.uint64) ^ np.uint64(salt & _MASK64)
        z = z + np.uint64(0x9E3779B97F4A7C15)
        z = (z ^ (z >> np.uint64(30))) * np.uint64(0xBF58476D1CE4E5B9)
        z = (z ^ (z >> np.uint64(27))) * np.uint64(0x94D049BB133111EB)
        return z ^ (z >> np.uint64(31))


def text_hash(text: str, salt: bytes) -> int:
    return int.from_bytes(hashlib.blake2b(text.encode("utf-8"), digest_size=8, key=salt).digest(), "little")


def pack(hashes: Iterable[int] | np.ndarray) -> str:
    array = np.unique(np.asarray(list(hashes) if not isinstance(hashes, np.ndarray) else hashes, dtype=np.uint64))
    return base64.b64encode(array.astype("<u8").tobytes()).decode("ascii")


def unpack(packed: str) -> np.ndarray:
    return np.frombuffer(base64.b64decode(packed), dtype="<u8").astype(np.uint64)


def contains(sorted_hashes: np.ndarray, keys: np.ndarray) -> np.ndarray:
    if len(sorted_hashes) == 0:
        return np.zeros(len(keys), dtype=bool)
    pos = np.minimum(np.searchsorted(sorted_hashes, keys), len(sorted_hashes) - 1)
    return sorted_hashes[pos] == keys
