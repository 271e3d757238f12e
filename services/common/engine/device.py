"""The one place where a torch device is chosen, and the CPUs this process may use."""

from __future__ import annotations

import os
from pathlib import Path

import torch

from services.common.errors import FailedPrecondition, FieldViolation, InvalidArgument


def resolve_device(name: str | torch.device = "auto") -> torch.device:
    """Turn ``"auto"``, ``"cpu"``, ``"cuda"`` or ``"cuda:N"`` into a ``torch.device``.

    ``"auto"`` picks CUDA when it is available and the CPU otherwise. Asking for
    CUDA on a machine without it is a ``FailedPrecondition``, not a silent fallback.
    """
    if isinstance(name, torch.device):
        name = str(name)
    text = str(name).strip().lower()
    if text == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    if text == "cpu":
        return torch.device("cpu")
    if text == "cuda" or text.startswith("cuda:"):
        try:
            device = torch.device(text)
        except RuntimeError as exc:
            raise InvalidArgument(f"invalid device {name!r}", violations=[FieldViolation("device", str(exc))]) from None
        if not torch.cuda.is_available():
            raise FailedPrecondition(f"device {name!r} was requested but CUDA is not available")
        if device.index is not None and device.index >= torch.cuda.device_count():
            raise FailedPrecondition(
                f"device {name!r} was requested but only {torch.cuda.device_count()} CUDA device(s) exist"
            )
        return device
    raise InvalidArgument(
        f"invalid device {name!r}: expected 'auto', 'cpu', 'cuda' or 'cuda:N'",
        violations=[FieldViolation("device", "expected 'auto', 'cpu', 'cuda' or 'cuda:N'")],
    )


def available_cpus() -> int:
    """CPUs this process may use: its affinity, capped by the cgroup CPU quota
    of its container (a pod limited to 2 CPUs on a 64-core node gets 2)."""
    try:
        available = len(os.sched_getaffinity(0))
    except (AttributeError, OSError):
        available = os.cpu_count() or 1
    quota = _cgroup_cpu_quota()
    if quota is not None:
        available = min(available, max(1, int(quota)))
    return max(1, available)


def _cgroup_cpu_quota(root: Path = Path("/sys/fs/cgroup"), membership: str | None = None) -> float | None:
    """CPUs allowed by the cgroup (v2 ``cpu.max`` or v1 CFS quota), or None when unlimited/unknown.

    Looked up at this process's own cgroup (``/proc/self/cgroup``, for hosts that
    show containers the whole hierarchy) and at the root (a container's private
    cgroup namespace); the tightest quota wins."""
    if membership is None:
        try:
            membership = Path("/proc/self/cgroup").read_text()
        except OSError:
            membership = ""
    v2_dirs, v1_dirs = [root], [root / "cpu"]
    for line in membership.splitlines():
        parts = line.split(":", 2)
        if len(parts) != 3 or not parts[2].startswith("/") or parts[2] == "/":
            continue
        relative = parts[2].lstrip("/")
        if parts[0] == "0" and parts[1] == "":
            v2_dirs.append(root / relative)
        elif "cpu" in parts[1].split(","):
            v1_dirs.append(root / "cpu" / relative)
    quotas = [q for q in map(_v2_quota, v2_dirs) if q is not None]
    quotas += [q for q in map(_v1_quota, v1_dirs) if q is not None]
    return min(quotas) if quotas else None


def _v2_quota(folder: Path) -> float | None:
    try:
        quota, period = (folder / "cpu.max").read_text().split()[:2]
        return None if quota == "max" else int(quota) / int(period)
    except (OSError, ValueError):
        return None


def _v1_quota(folder: Path) -> float | None:
    try:
        quota_us = int((folder / "cpu.cfs_quota_us").read_text())
        period_us = int((folder / "cpu.cfs_period_us").read_text())
        return None if quota_us <= 0 else quota_us / period_us
    except (OSError, ValueError):
        return None
