# syntax=docker/dockerfile:1.7
#
# One Dockerfile, four images, built from the repository root:
#
#   docker build --target trainer   -t synth-trainer:0.1.0   .   # CUDA PyTorch (GPU nodes)
#   docker build --target sampler   -t synth-sampler:0.1.0   .   # CPU-only PyTorch
#   docker build --target evaluator -t synth-evaluator:0.1.0 .   # CPU-only PyTorch
#   docker build --target gateway   -t synth-gateway:0.1.0   .   # no PyTorch at all
#
# Build stages generate the gRPC code (scripts/gen_protos.py, the one place code
# generation happens) and install the pinned requirements into /opt/venv; the
# runtime stages copy only that venv, the generated code and the service's own
# packages, and run as the unprivileged user 10001 (the manifests' runAsUser)
# on a read-only root filesystem. docs/DEPLOY.md has the details.

# Python 3.11 as tested; pin by digest in your registry (docs/DEPLOY.md).
ARG PYTHON_IMAGE=python:3.11.7-slim-bookworm
# The trainer's PyTorch: "cuda" (PyPI's CUDA build: GPU nodes need an NVIDIA
# driver recent enough for it) or "cpu" (a small image for CPU-only clusters).
ARG TRAINER_TORCH=cuda
# Where the CPU-only PyTorch wheel (2.13.0+cpu) comes from.
ARG CPU_TORCH_INDEX=https://download.pytorch.org/whl/cpu

# ---- common base --------------------------------------------------------------
FROM ${PYTHON_IMAGE} AS python
ENV PYTHONDONTWRITEBYTECODE=1 \
    PYTHONUNBUFFERED=1 \
    PIP_NO_CACHE_DIR=1 \
    PIP_DISABLE_PIP_VERSION_CHECK=1 \
    PIP_ROOT_USER_ACTION=ignore
WORKDIR /app

# ---- build: gRPC code from protos/ into /app/gen --------------------------------
FROM python AS codegen
COPY requirements.txt ./
# Only the code generator, protobuf and the googleapis protos (google.rpc.Status),
# at the versions requirements.txt pins.
RUN grep -E '^(grpcio-tools|protobuf|googleapis-common-protos)==' requirements.txt > codegen.txt \
    && python -m venv /opt/codegen \
    && /opt/codegen/bin/pip install --no-cache-dir -r codegen.txt
COPY protos/ protos/
COPY scripts/gen_protos.py scripts/
RUN /opt/codegen/bin/python scripts/gen_protos.py

# ---- build: dependencies (requirements.txt pins every runtime package) ----------
FROM python AS deps-cpu
ARG CPU_TORCH_INDEX
COPY requirements.txt ./
# torch first from the CPU-only index (2.13.0+cpu satisfies torch==2.13.0), so
# the second install does not pull the CUDA build and its libraries.
RUN python -m venv /opt/venv \
    && /opt/venv/bin/pip install --no-cache-dir --index-url "${CPU_TORCH_INDEX}" \
        "torch==$(sed -n 's/^torch==//p' requirements.txt)" \
    && /opt/venv/bin/pip install --no-cache-dir -r requirements.txt

FROM python AS deps-cuda
COPY requirements.txt ./
# PyPI's Linux x86_64 torch wheel is the CUDA build; it brings the CUDA runtime
# libraries as nvidia-* wheels, so only the driver comes from the node.
RUN python -m venv /opt/venv \
    && /opt/venv/bin/pip install --no-cache-dir -r requirements.txt

FROM python AS deps-gateway
COPY docker/requirements-gateway.txt ./
RUN python -m venv /opt/venv \
    && /opt/venv/bin/pip install --no-cache-dir -r requirements-gateway.txt

# A stage picked by a build argument, not an image: nothing to tag.
# hadolint ignore=DL3006
FROM deps-${TRAINER_TORCH} AS deps-trainer

# ---- runtime base ---------------------------------------------------------------
FROM python AS runtime
RUN groupadd --system --gid 10001 synth \
    && useradd --system --uid 10001 --gid 10001 --no-create-home --home-dir /nonexistent \
        --shell /usr/sbin/nologin synth
# HOME=/tmp: the one writable place (an emptyDir) under a read-only root.
ENV PATH=/opt/venv/bin:$PATH \
    PYTHONPATH=/app:/app/gen \
    HOME=/tmp
COPY --from=codegen /app/gen/ gen/
COPY services/__init__.py services/
COPY services/common/ services/common/
LABEL org.opencontainers.image.title="synth" \
      org.opencontainers.image.version="0.1.0" \
      org.opencontainers.image.licenses="Apache-2.0"

# ---- images -----------------------------------------------------------------------
FROM runtime AS trainer
COPY --from=deps-trainer /opt/venv /opt/venv
COPY services/trainer/ services/trainer/
RUN python -m compileall -q /app
ENV SYNTH_TRAINER_HOST=0.0.0.0
# gRPC, metrics, health-only (probes)
EXPOSE 50051 9101 50061
USER 10001:10001
CMD ["python", "-m", "services.trainer"]

FROM runtime AS sampler
COPY --from=deps-cpu /opt/venv /opt/venv
COPY services/sampler/ services/sampler/
RUN python -m compileall -q /app
ENV SYNTH_SAMPLER_HOST=0.0.0.0
EXPOSE 50052 9102 50062
USER 10001:10001
CMD ["python", "-m", "services.sampler"]

FROM runtime AS evaluator
COPY --from=deps-cpu /opt/venv /opt/venv
COPY services/evaluator/ services/evaluator/
RUN python -m compileall -q /app
ENV SYNTH_EVALUATOR_HOST=0.0.0.0
EXPOSE 50053 9103 50063
USER 10001:10001
CMD ["python", "-m", "services.evaluator"]

# `docker run --rm synth-gateway:0.1.0 python -m gateway new-key` makes an API key.
FROM runtime AS gateway
COPY --from=deps-gateway /opt/venv /opt/venv
COPY gateway/ gateway/
RUN python -m compileall -q /app
ENV SYNTH_GATEWAY_HOST=0.0.0.0
# HTTP, gRPC, metrics, health-only (probes)
EXPOSE 8080 50050 9100 50060
USER 10001:10001
CMD ["python", "-m", "gateway"]
