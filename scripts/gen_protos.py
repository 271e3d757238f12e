"""Generate the synth.v1 Python code from protos/ into gen/ (git-ignored).

The one place code generation happens. Imports then read ``from synth.v1 import
datasets_pb2``. Run by scripts/setup.sh; rerun after editing a .proto.
"""

from __future__ import annotations

import shutil
import sys
from importlib import resources
from pathlib import Path

from grpc_tools import protoc

ROOT = Path(__file__).resolve().parents[1]
PROTOS = ROOT / "protos"
OUT = ROOT / "gen"


def _googleapis_root() -> str:
    """Where googleapis-common-protos keeps its .proto files (google/rpc/status.proto):
    the folder above ``google/``. Its generated modules (``google.rpc.status_pb2``)
    come from the same package at run time, so nothing of it is generated here."""
    import google.rpc.status_pb2 as status

    return str(Path(status.__file__).resolve().parents[2])


def main() -> int:
    if OUT.exists():
        shutil.rmtree(OUT)
    OUT.mkdir()
    well_known = str(resources.files("grpc_tools") / "_proto")
    files = sorted(str(p.relative_to(PROTOS)) for p in PROTOS.rglob("*.proto"))
    args = [
        "protoc",
        f"-I{PROTOS}",
        f"-I{well_known}",
        f"-I{_googleapis_root()}",
        f"--python_out={OUT}",
        f"--pyi_out={OUT}",
        f"--grpc_python_out={OUT}",
        *files,
    ]
    code = protoc.main(args)
    if code != 0:
        print(f"protoc failed with exit code {code}", file=sys.stderr)
        return code
    # Regular packages (not namespace packages) so tools and mypy find them.
    for folder in [OUT, *[p for p in OUT.rglob("*") if p.is_dir()]]:
        if folder != OUT:
            (folder / "__init__.py").touch()
    (OUT / "synth" / "py.typed").touch()
    print(f"generated {len(files)} proto files into {OUT.relative_to(ROOT)}/")
    return 0


if __name__ == "__main__":
    sys.exit(main())
