"""Record every synth.v1 field number in protos/fields.lock.

The contract test refuses a change that renumbers a field or reuses a removed
field's number without ``reserved``. Run this after adding fields:
    python scripts/proto_lock.py
"""

from __future__ import annotations

import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
LOCK = ROOT / "protos" / "fields.lock"


def current_fields() -> dict[str, int]:
    import importlib
    import pkgutil

    import synth.v1

    fields: dict[str, int] = {}

    def walk(message) -> None:  # type: ignore[no-untyped-def]
        for f in message.fields:
            fields[f"{message.full_name}.{f.name}"] = f.number
        for nested in message.nested_types:
            if not nested.GetOptions().map_entry:
                walk(nested)

    for mod in pkgutil.iter_modules(synth.v1.__path__):
        if mod.name.endswith("_pb2"):
            module = importlib.import_module(f"synth.v1.{mod.name}")
            for message in module.DESCRIPTOR.message_types_by_name.values():
                walk(message)
    return fields


def read_lock() -> dict[str, int]:
    if not LOCK.exists():
        return {}
    entries = {}
    for line in LOCK.read_text().splitlines():
        if line.strip() and not line.startswith("#"):
            name, _, number = line.partition(" = ")
            entries[name] = int(number)
    return entries


def main() -> int:
    merged = {**read_lock(), **current_fields()}  # removed fields stay recorded
    lines = ["# synth.v1 field numbers ever used; written by scripts/proto_lock.py. Never edit by hand."]
    lines += [f"{name} = {number}" for name, number in sorted(merged.items())]
    LOCK.write_text("\n".join(lines) + "\n")
    print(f"{len(merged)} fields recorded in {LOCK.relative_to(ROOT)}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
