"""The one place where a torch device is chosen."""

from __future__ import annotations

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
