"""The Node.js example client (clients/node/example.js, @grpc/grpc-js with the protos loaded at run
time by @grpc/proto-loader) against a real server over loopback: what it lists, classifies and
generates equals what the Python client gets for the same calls, and a LoadModel with an unknown
setting, sent as `settings_json`, is rejected with INVALID_ARGUMENT."""

from __future__ import annotations

import json
import shutil
import subprocess
from pathlib import Path

import pytest

from modelplex.testing import running_server
from modelplex_client import Client
from modelplex_client.pb import models_pb2, text_generation_pb2
from text_models import text_model

# Skipped before any fixture runs (the session-scoped plugin install included) without Node.js.
pytestmark = pytest.mark.skipif(
    shutil.which("node") is None or shutil.which("npm") is None, reason="node and npm are not on PATH"
)

NODE_DIR = Path(__file__).resolve().parents[2] / "clients" / "node"
CLASSIFIER = "dominant-color"
TEXT_MODEL = "tiny-gpt2"
# What npm prints when it cannot reach the registry (as opposed to a broken lock file).
NETWORK_ERRORS = ("ENOTFOUND", "EAI_AGAIN", "ECONNREFUSED", "ECONNRESET", "ETIMEDOUT", "ENETUNREACH", "EHOSTUNREACH")


@pytest.fixture(scope="module")
def node() -> str:
    """The node binary, with the example's dependencies installed (``npm ci`` from the lock
    file when they are not)."""
    node, npm = shutil.which("node"), shutil.which("npm")
    if node is None or npm is None:  # also checked by pytestmark; kept for the type checker
        pytest.skip("node and npm are not on PATH")
    modules = NODE_DIR / "node_modules" / "@grpc"
    if not ((modules / "grpc-js").is_dir() and (modules / "proto-loader").is_dir()):
        try:
            done = subprocess.run(
                [npm, "ci", "--no-audit", "--no-fund"],
                cwd=NODE_DIR,
                capture_output=True,
                text=True,
                timeout=180,
            )
        except subprocess.TimeoutExpired:
            pytest.skip("npm ci did not finish in 180 s (is the npm registry reachable?)")
        if done.returncode != 0:
            output = done.stdout + done.stderr
            if any(code in output for code in NETWORK_ERRORS):
                pytest.skip(f"npm ci could not reach the npm registry:\n{output[-2000:]}")
            pytest.fail(f"npm ci failed:\n{output[-4000:]}")
    return node


@pytest.fixture(scope="module")
def server(example_plugins):
    """The example plugin's dominant-color classifier and a tiny random GPT-2 (causal-lm)."""
    config = {
        "server": {"allow_runtime_loading": True},  # the example's LoadModel must reach validation
        "models": [
            {"spec": CLASSIFIER, "weights": "random", "devices": ["cpu"]},
            text_model(TEXT_MODEL, "causal-lm", "gpt2"),
        ],
    }
    with running_server(config) as s:
        yield s


def run_example(node: str, address: str, image: Path) -> dict[str, list[dict]]:
    """Runs example.js; its JSON lines grouped by kind."""
    done = subprocess.run(
        [node, str(NODE_DIR / "example.js"), address, CLASSIFIER, TEXT_MODEL, str(image)],
        cwd=NODE_DIR,
        capture_output=True,
        text=True,
        timeout=300,  # only against a hang: the client's own deadlines are 60 s a call
    )
    assert done.returncode == 0, f"example.js exited {done.returncode}\n{done.stderr}\n{done.stdout}"
    lines: dict[str, list[dict]] = {}
    for line in done.stdout.splitlines():
        if line.strip():
            record = json.loads(line)
            lines.setdefault(record["kind"], []).append(record)
    return lines


def test_node_example_matches_the_python_client(node, server, tmp_path, make_image):
    image = tmp_path / "mixed.png"
    image.write_bytes(make_image((180, 120, 60)))  # three different scores, no ties
    out = run_example(node, server.address, image)

    with Client(server.address, timeout=60) as client:
        # 1. ListModels: both models, by their task ids, ready; task_info decoded to its type.
        models = {m["name"]: m for m in out["model"]}
        assert set(models) == {CLASSIFIER, TEXT_MODEL}
        assert models[CLASSIFIER]["task"] == "image_classification"
        assert models[TEXT_MODEL]["task"] == "text_generation"
        for info in client.list_models():
            assert models[info.name]["state"] == models_pb2.ModelState.Name(info.state)
            assert models[info.name]["state"].endswith("READY")
            if info.task_info.type_url:
                assert models[info.name]["task_info"]["@type"] == info.task_info.type_url

        # 2. Classify: the same classes as the Python client, best first.
        expected = client.classify([image.read_bytes()], model=CLASSIFIER, top_k=3)[0]
        classes = out["class"]
        assert [(c["label"], c["index"]) for c in classes] == [(c.label, c.index) for c in expected]
        assert len(classes) == 3 and all(c["image"] == 0 for c in classes)
        for got, want in zip(classes, expected, strict=True):
            assert got["score"] == pytest.approx(want.score, abs=1e-6)

        # 3. Generate: the streamed deltas add up to Complete's greedy text.
        complete = client.complete("Hello", model=TEXT_MODEL, max_new_tokens=8)
        deltas = out["delta"]
        assert "".join(d["text"] for d in deltas) == complete.text
        assert [t for d in deltas for t in d["token_ids"]] == list(complete.token_ids)
        (final,) = out["final"]
        assert final["finish_reason"] == text_generation_pb2.FinishReason.Name(complete.finish_reason)
        assert final["completion_tokens"] == complete.usage.completion_tokens == len(complete.token_ids)

        # 4. LoadModel with an unknown setting in settings_json is refused, and leaves nothing behind.
        assert "load_ok" not in out, "LoadModel accepted an unknown setting"
        (error,) = out["load_error"]
        assert error["code"] == "INVALID_ARGUMENT", error
        assert "no_such_setting" in error["details"]
        assert "node-bad" not in {m.name for m in client.list_models()}
