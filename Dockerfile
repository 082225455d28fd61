# syntax=docker/dockerfile:1
# The modelplex server image: the server, its client, and the first-party plugins (every folder
# under plugins/), nothing of the tests, benchmarks or examples (.dockerignore). Two variants,
# one per torch build (docs/deployment.md):
#
#   docker build --build-arg VARIANT=cpu  -t modelplex:cpu  .   # CPU-only torch (about 2 GB smaller)
#   docker build --build-arg VARIANT=cuda -t modelplex:cuda .   # CUDA torch; run with the NVIDIA runtime
#
# It runs as an unprivileged user (uid 10001) and serves /etc/modelplex/modelplex.toml (the demo
# models with random weights; mount your own there, as deploy/base does). A third-party plugin
# is a derived image:  FROM modelplex:cuda  /  RUN pip install my-modelplex-plugin
ARG PYTHON_IMAGE=python:3.11-slim-bookworm
ARG VARIANT=cpu

FROM ${PYTHON_IMAGE} AS base
ENV PYTHONDONTWRITEBYTECODE=1 \
    PYTHONUNBUFFERED=1 \
    PIP_NO_CACHE_DIR=1 \
    PIP_DISABLE_PIP_VERSION_CHECK=1 \
    VIRTUAL_ENV=/opt/modelplex \
    PATH=/opt/modelplex/bin:$PATH
# libsndfile: soundfile (audio tasks). The virtual environment keeps pip installs of derived
# images (third-party plugins) out of the system Python.
RUN apt-get update \
 && apt-get install -y --no-install-recommends libsndfile1 \
 && rm -rf /var/lib/apt/lists/* \
 && python -m venv /opt/modelplex \
 && useradd --system --uid 10001 --gid 0 --create-home --home-dir /home/modelplex modelplex
WORKDIR /src
COPY requirements.txt ./

# torch, torchvision and torchaudio at requirements.txt's pins, from the CPU-only index...
FROM base AS torch-cpu
RUN pip install --index-url https://download.pytorch.org/whl/cpu $(grep -E '^torch(vision|audio)?==' requirements.txt)

# ...or PyPI's builds, which bundle the CUDA libraries (the driver comes from the node).
FROM base AS torch-cuda
ENV NVIDIA_VISIBLE_DEVICES=all \
    NVIDIA_DRIVER_CAPABILITIES=compute,utility
RUN pip install $(grep -E '^torch(vision|audio)?==' requirements.txt)

FROM torch-${VARIANT} AS server
RUN pip install -r requirements.txt
COPY pyproject.toml README.md ./
COPY clients/python clients/python
COPY server server
COPY plugins plugins
# Not editable: the image needs no source tree at run time.
RUN pip install ./clients/python . plugins/*/ \
 && rm -rf /src
COPY deploy/docker/modelplex.toml /etc/modelplex/modelplex.toml
WORKDIR /home/modelplex
# Model caches (Hugging Face, torch hub) under the user's home: mount a volume there to keep
# downloaded or pre-seeded weights across restarts.
ENV HOME=/home/modelplex \
    HF_HOME=/home/modelplex/.cache/huggingface \
    TORCH_HOME=/home/modelplex/.cache/torch
USER 10001:0
# 50051: gRPC (modelplex.v1, the Open Inference Protocol, health, reflection); 9090: Prometheus.
EXPOSE 50051 9090
STOPSIGNAL SIGTERM
ENTRYPOINT ["modelplex", "serve"]
CMD ["--config", "/etc/modelplex/modelplex.toml"]
