"""Shared jobs' claims in the store (``services.common.jobs``): a worker runs
attempt n of a job only after creating ``run-<n>`` in its folder exclusively,
and keeps that file's mtime fresh while it runs; a claim not refreshed within
``LEASE_SECONDS`` is a dead worker's. Domain code: no protobuf, no grpc."""

from __future__ import annotations

import os
import time
from pathlib import Path

CLAIM_PREFIX = "run-"
# Shared jobs: a claim not refreshed for this long is a dead worker's; claims are
# refreshed, cancel files looked for and the store looked at for jobs to take
# every TICK_SECONDS; watchers read what other replicas appended as often.
LEASE_SECONDS = 30.0
TICK_SECONDS = 1.0


def claim_next(folder: Path, owner: str) -> Path | None:
    """Claim the job's next attempt: ``run-<n+1>`` created exclusively when
    no live worker holds ``run-<n>``. None when another worker holds it or
    won the race."""
    attempt = last_attempt(folder)
    if attempt and alive(folder / f"{CLAIM_PREFIX}{attempt}"):
        return None
    path = folder / f"{CLAIM_PREFIX}{attempt + 1}"
    try:
        fd = os.open(path, os.O_CREAT | os.O_EXCL | os.O_WRONLY, 0o644)
    except FileExistsError:
        return None
    with os.fdopen(fd, "w") as fh:
        fh.write(owner)
    return path


def taken_over(claim: Path) -> bool:
    """Another worker claimed the attempt after ``claim`` (presumed this one dead)."""
    attempt = int(claim.name.removeprefix(CLAIM_PREFIX))
    return (claim.parent / f"{CLAIM_PREFIX}{attempt + 1}").exists()


def last_attempt(folder: Path) -> int:
    numbers = [
        int(p.name.removeprefix(CLAIM_PREFIX))
        for p in folder.glob(f"{CLAIM_PREFIX}*")
        if p.name.removeprefix(CLAIM_PREFIX).isdigit()
    ]
    return max(numbers, default=0)


def alive(claim: Path) -> bool:
    """A claim refreshed within the lease."""
    try:
        return time.time() - claim.stat().st_mtime < LEASE_SECONDS
    except FileNotFoundError:
        return False


def held(folder: Path) -> bool:
    attempt = last_attempt(folder)
    return bool(attempt) and alive(folder / f"{CLAIM_PREFIX}{attempt}")
