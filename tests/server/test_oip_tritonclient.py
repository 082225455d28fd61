"""The Open Inference Protocol front door, called by tritonclient (a client nobody here wrote):
health and metadata, a classification whose outputs equal the typed Classify's, a streamed
generation through ModelStreamInfer whose tokens equal the typed Generate stream's (and the
in-process model's), and the repository extension. tritonclient runs in a process of its own
(tritonclient_calls.py says why); the server runs here."""

from __future__ import annotations

import base64
import importlib.util
import io
import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from google.protobuf import descriptor_pb2, json_format

from modelplex.testing import running_server
from modelplex_client import Client
from modelplex_client.pb import grpc_predict_v2_pb2
from text_models import model_dirs, reference, text_model, weights_root

# Looked up, not imported: importing it here would clash with the server's OIP module.
pytestmark = pytest.mark.skipif(
    importlib.util.find_spec("tritonclient") is None, reason="needs tritonclient (the dev extra)"
)

HERE = Path(__file__).resolve().parent
PROMPTS = ["hello world", "the quick brown fox", "héllo 日本語"]
MAX_NEW_TOKENS = 12
MESSAGES = [
    "ServerLiveRequest",
    "ServerLiveResponse",
    "ServerReadyRequest",
    "ServerReadyResponse",
    "ModelReadyRequest",
    "ModelReadyResponse",
    "ServerMetadataRequest",
    "ServerMetadataResponse",
    "ModelMetadataRequest",
    "ModelMetadataResponse",
    "InferParameter",
    "InferTensorContents",
    "ModelInferRequest",
    "ModelInferResponse",
    "ModelStreamInferResponse",
    "ModelRepositoryParameter",
    "RepositoryIndexRequest",
    "RepositoryIndexResponse",
    "RepositoryModelLoadRequest",
    "RepositoryModelLoadResponse",
    "RepositoryModelUnloadRequest",
    "RepositoryModelUnloadResponse",
]


def photo(seed: int) -> bytes:
    from PIL import Image

    pixels = np.random.default_rng(seed).integers(0, 255, (48, 64, 3), dtype=np.uint8)
    buf = io.BytesIO()
    Image.fromarray(pixels).save(buf, format="PNG")
    return buf.getvalue()


IMAGES = [photo(1), photo(2)]
PIXELS = np.random.default_rng(3).standard_normal((2, 3, 224, 224)).astype(np.float32)


@pytest.fixture(scope="module")
def server():
    models = [
        {"spec": "resnet18", "name": "resnet", "weights": "random", "devices": ["cpu"]},
        text_model("gpt2", "gpt2", "gpt2"),
    ]
    config = {"models": models, "server": {"weights_roots": [weights_root()], "allow_runtime_loading": True}}
    with running_server(config) as s:
        yield s


@pytest.fixture(scope="module")
def triton(server, tmp_path_factory):
    """What tritonclient saw, calling the server from its own process."""
    plan = {
        "address": server.address,
        "messages": MESSAGES,
        "classifier": "resnet",
        "generator": "gpt2",
        "top_k": 3,
        "images": [base64.b64encode(b).decode() for b in IMAGES],
        "pixels": PIXELS.tolist(),
        "prompts": PROMPTS,
        "max_new_tokens": MAX_NEW_TOKENS,
        "load": {
            "name": "loaded",
            "config": {"spec": "gpt2", "weights": str(model_dirs()["gpt2"]), "devices": ["cpu"], "max_new_tokens": 8},
        },
    }
    path = tmp_path_factory.mktemp("triton") / "plan.json"
    path.write_text(json.dumps(plan))
    run = subprocess.run(
        [sys.executable, str(HERE / "tritonclient_calls.py"), str(path)], capture_output=True, text=True, timeout=300
    )
    assert run.returncode == 0, run.stderr[-4000:]
    return json.loads(run.stdout.strip().splitlines()[-1])


@pytest.fixture
def client(server):
    with Client(server.address, timeout=60) as c:
        yield c


def test_our_proto_has_tritons_names_and_numbers(triton):
    theirs = triton["descriptors"]
    fd = descriptor_pb2.FileDescriptorProto()
    grpc_predict_v2_pb2.DESCRIPTOR.CopyToProto(fd)
    ours = {m.name: json_format.MessageToDict(m) for m in fd.message_type}
    assert {name: ours[name] for name in MESSAGES} == theirs["messages"]
    [service] = fd.service
    assert f"{fd.package}.{service.name}" == theirs["service"]
    for method in service.method:
        assert json_format.MessageToDict(method) == theirs["methods"][method.name]


def test_server_live_ready_and_metadata(triton):
    assert triton["live"] is True and triton["ready"] is True
    assert triton["model_ready"] == {"resnet": True, "gpt2": True, "nope": False}
    assert triton["server_metadata"]["name"] == "modelplex"
    assert "model_repository" in triton["server_metadata"]["extensions"]
    assert "NOT_FOUND" in triton["unknown_model"]["status"]
    assert "no model named 'nope'" in triton["unknown_model"]["message"]


def test_model_metadata_describes_each_tasks_tensors(triton):
    resnet, gpt2 = triton["metadata"]["resnet"], triton["metadata"]["gpt2"]
    assert resnet["platform"] == "modelplex/image_classification"
    assert [(t["name"], t["datatype"], t["shape"]) for t in resnet["inputs"]] == [
        ("images", "BYTES", ["-1"]),
        ("pixel_values", "FP32", ["-1", "3", "224", "224"]),
    ]
    assert [t["name"] for t in resnet["outputs"]] == ["scores", "indices", "labels"]
    assert gpt2["platform"] == "modelplex/text_generation"
    assert [(t["name"], t["datatype"]) for t in gpt2["inputs"]] == [("text_input", "BYTES")]
    assert [t["name"] for t in gpt2["outputs"]][:2] == ["text_output", "token_ids"]


def test_infer_outputs_equal_the_typed_classify(triton, client):
    typed = client.classify(IMAGES, model="resnet", top_k=3)
    got = triton["classify"]
    assert got["id"] == "c1"
    assert got["indices"] == [[c.index for c in r] for r in typed]
    assert got["labels"] == [[c.label for c in r] for r in typed]
    assert np.array(got["scores"], dtype=np.float32).tolist() == [[c.score for c in r] for r in typed]


def test_infer_of_a_float_batch_equals_the_typed_tensor_classify(triton, client):
    typed = client.classify(list(PIXELS), model="resnet", top_k=3)
    got = triton["classify"]["pixels"]
    assert got["outputs"] == ["scores", "indices"]  # the requested ones, in the declared order
    assert got["indices"] == [[c.index for c in r] for r in typed]
    np.testing.assert_allclose(got["scores"], [[c.score for c in r] for r in typed], rtol=1e-6)


def test_stream_infer_tokens_equal_the_typed_generate_stream(triton, client):
    responses = triton["stream"]["responses"]
    for i, prompt in enumerate(PROMPTS):
        streamed = responses[f"p{i}"]
        typed = list(client.generate(prompt, model="gpt2", max_new_tokens=MAX_NEW_TOKENS))
        tokens = [t for r in streamed for t in r["token_ids"]]
        assert tokens == [t for c in typed for t in c.token_ids] == reference("gpt2", prompt, MAX_NEW_TOKENS)
        assert "".join(r["text"] for r in streamed) == "".join(c.text for c in typed)
        # Decoupled: one response per decode step, only the last flagged final, with the finish reason.
        assert len(streamed) > 1
        assert [r["final"] for r in streamed] == [False] * (len(streamed) - 1) + [True]
        assert streamed[-1]["finish_reason"] in ("length", "eos")
        assert streamed[-1]["completion_tokens"] == len(tokens)


def test_unary_infer_on_a_generator_equals_the_typed_complete(triton, client):
    options = dict(max_new_tokens=MAX_NEW_TOKENS, temperature=0.9, seed=7, stop=["zz", "qq"])
    typed = client.complete(PROMPTS[0], model="gpt2", **options)
    got = triton["complete"]
    assert got["text"] == typed.text and got["token_ids"] == list(typed.token_ids)
    assert got["finish_reason"] in ("length", "eos", "stop")


def test_a_failed_request_on_the_stream_is_answered_and_the_others_go_on(triton):
    [error] = triton["stream"]["errors"]
    assert error["message"].startswith("INVALID_ARGUMENT: max_new_tokens must be between 1 and")
    assert len(triton["stream"]["responses"]) == len(PROMPTS)


def test_the_repository_extension_loads_and_unloads(triton, client):
    repo = triton["repository"]
    assert repo["ready_after_load"] is True and repo["ready_after_unload"] is False
    states = {m["name"]: m["state"] for m in repo["index"]["models"]}
    assert states == {"resnet": "READY", "gpt2": "READY", "loaded": "READY"}
    assert "spec" in repo["refused"]["message"] and "no-such-spec" in repo["refused"]["message"]
    assert [m.name for m in client.list_models()] == ["resnet", "gpt2"]
