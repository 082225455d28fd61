"""The Dockerfile, read as Docker reads it (no daemon here to build it): a pinned slim Python
base, CPU and CUDA variants of torch at requirements.txt's pins, the server, client and every
first-party plugin and nothing of the tests, a non-root user, the exec-form entrypoint, and
exposed ports that are the ones its default config listens on."""

from __future__ import annotations

import json
import re
import tomllib
from pathlib import Path

from modelplex.server.config import load_config

ROOT = Path(__file__).resolve().parents[2]


def instructions(text: str) -> list[tuple[str, str]]:
    """(INSTRUCTION, arguments) in order: comments dropped, continuation lines joined."""
    out: list[tuple[str, str]] = []
    pending = ""
    for line in text.splitlines():
        stripped = line.strip()
        if not pending and (not stripped or stripped.startswith("#")):
            continue
        if stripped.startswith("#"):
            continue
        if stripped.endswith("\\"):
            pending += stripped[:-1] + " "
            continue
        full = pending + stripped
        pending = ""
        keyword, _, args = full.partition(" ")
        out.append((keyword.upper(), args.strip()))
    assert not pending, "the Dockerfile ends inside a continued line"
    return out


def stages(items: list[tuple[str, str]]) -> tuple[dict[str, str], dict[str, list[tuple[str, str]]], dict[str, str]]:
    """Global ARG defaults, each stage's instructions (by name), and each stage's base."""
    args: dict[str, str] = {}
    by_stage: dict[str, list[tuple[str, str]]] = {}
    bases: dict[str, str] = {}
    current = None
    for keyword, value in items:
        if keyword == "FROM":
            base, _, name = value.partition(" AS ")
            current = name.strip()
            bases[current] = base.strip()
            by_stage[current] = []
        elif current is None:
            assert keyword == "ARG", f"{keyword} before the first FROM"
            key, _, default = value.partition("=")
            args[key] = default
        else:
            by_stage[current].append((keyword, value))
    return args, by_stage, bases


ITEMS = instructions((ROOT / "Dockerfile").read_text())
ARGS, STAGES, BASES = stages(ITEMS)
FINAL = list(STAGES)[-1]


def last(stage: str, keyword: str) -> str:
    found = [v for k, v in STAGES[stage] if k == keyword]
    assert found, f"stage {stage} has no {keyword}"
    return found[-1]


def test_the_base_is_a_pinned_slim_python():
    image = ARGS["PYTHON_IMAGE"]
    assert re.fullmatch(r"python:3\.1[1-9]-slim-[a-z]+", image), image
    assert BASES["base"] == "${PYTHON_IMAGE}"


def test_a_cpu_and_a_cuda_variant_of_torch_at_the_requirements_pins():
    assert ARGS["VARIANT"] == "cpu"
    assert BASES[FINAL] == "torch-${VARIANT}"
    assert BASES["torch-cpu"] == BASES["torch-cuda"] == "base"
    cpu, cuda = (" ".join(v for k, v in STAGES[s] if k == "RUN") for s in ("torch-cpu", "torch-cuda"))
    assert "--index-url https://download.pytorch.org/whl/cpu" in cpu and "--index-url" not in cuda
    pins = re.findall(r"^torch(?:vision|audio)?==\S+$", (ROOT / "requirements.txt").read_text(), re.MULTILINE)
    assert len(pins) == 3
    for run in (cpu, cuda):
        pattern = re.search(r"grep -E '([^']+)' requirements.txt", run).group(1)
        assert [p for p in pins if re.match(pattern, p)] == pins
    assert "NVIDIA_VISIBLE_DEVICES=all" in last("torch-cuda", "ENV")


def test_the_image_holds_the_server_client_and_every_plugin_but_no_tests():
    copied = [v.split()[0] for stage in STAGES.values() for k, v in stage if k == "COPY"]
    assert {"server", "clients/python", "plugins"} <= set(copied)
    assert not any(c.startswith(("tests", "benchmarks", "examples", ".venv")) for c in copied)
    installs = " ".join(v for k, v in STAGES[FINAL] if k == "RUN")
    assert "pip install ./clients/python . plugins/*/" in installs
    ignore = [line for line in (ROOT / ".dockerignore").read_text().splitlines() if not line.startswith("#")]
    assert ignore[0] == "*"  # an allow-list: the build context holds only what is named after it
    allowed = {line[1:].rstrip("/") for line in ignore if line.startswith("!")}
    assert not allowed & {"tests", "benchmarks", "examples", "docs"}
    assert {"server", "plugins", "clients/python", "requirements.txt"} <= allowed


def test_it_runs_as_a_non_root_user_with_the_servers_entrypoint():
    user = last(FINAL, "USER")
    uid = user.split(":")[0]
    assert uid.isdigit() and int(uid) >= 1000, user  # numeric: Kubernetes' runAsNonRoot can verify it
    assert "--uid " + uid in " ".join(v for k, v in STAGES["base"] if k == "RUN")
    assert json.loads(last(FINAL, "ENTRYPOINT")) == ["modelplex", "serve"]  # exec form: SIGTERM reaches it
    scripts = tomllib.loads((ROOT / "clients/python/pyproject.toml").read_text())["project"]["scripts"]
    assert scripts["modelplex"] == "modelplex_client.cli:main"
    assert last(FINAL, "STOPSIGNAL") == "SIGTERM"


def test_the_exposed_ports_are_the_ones_the_default_config_serves():
    cmd = json.loads(last(FINAL, "CMD"))
    assert cmd[0] == "--config"
    copies = {v.split()[1]: v.split()[0] for k, v in STAGES[FINAL] if k == "COPY" and len(v.split()) == 2}
    config = load_config(ROOT / copies[cmd[1]])
    exposed = {int(p) for p in last(FINAL, "EXPOSE").split()}
    assert exposed == {config.server.port, config.server.metrics_port}
    assert config.server.host == "0.0.0.0" and not config.server.allow_runtime_loading
    assert config.server.max_connection_age_s is not None
