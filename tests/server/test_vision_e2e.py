"""torchvision models served end to end: weights saved where torchvision keeps its
pretrained files, loaded by the vision plugin through torchvision's own builder, and
classified over gRPC; the top-k must equal the in-process torchvision model's."""

from __future__ import annotations

import io
import os
from pathlib import Path

import pytest
import torch
import torchvision
from PIL import Image

from modelplex.testing import running_server
from modelplex_client import Client
from modelplex_client.pb import models_pb2

FAMILIES = [
    ("resnet18", "ResNet18_Weights", "IMAGENET1K_V1"),
    ("googlenet", "GoogLeNet_Weights", "IMAGENET1K_V1"),
    ("vgg11", "VGG11_Weights", "IMAGENET1K_V1"),
    ("densenet121", "DenseNet121_Weights", "IMAGENET1K_V1"),
]


@pytest.fixture
def torch_home(tmp_path, monkeypatch):
    """A private torch hub cache; torch.hub reads TORCH_HOME on every call."""
    monkeypatch.setenv("TORCH_HOME", str(tmp_path))
    yield tmp_path


def save_as_pretrained(arch: str, weights: torchvision.models.WeightsEnum, seed: int) -> Path:
    """Random weights written exactly where torchvision looks for the pretrained file."""
    torch.manual_seed(seed)
    kwargs = {"aux_logits": True, "init_weights": True} if arch == "googlenet" else {}
    model = torchvision.models.get_model(arch, weights=None, **kwargs)
    path = Path(torch.hub.get_dir()) / "checkpoints" / os.path.basename(weights.url)
    path.parent.mkdir(parents=True, exist_ok=True)
    torch.save(model.state_dict(), path)
    return path


def photo(seed: int) -> bytes:
    g = torch.Generator().manual_seed(seed)
    pixels = (torch.rand(300, 400, 3, generator=g) * 255).to(torch.uint8).numpy()
    buf = io.BytesIO()
    Image.fromarray(pixels).save(buf, format="PNG")
    return buf.getvalue()


@pytest.mark.parametrize(("arch", "enum_name", "variant"), FAMILIES, ids=[f[0] for f in FAMILIES])
def test_served_top_k_equals_in_process_torchvision(torch_home, arch, enum_name, variant):
    weights = getattr(torchvision.models, enum_name)[variant]
    save_as_pretrained(arch, weights, seed=7)
    images = [photo(1), photo(2)]

    reference = torchvision.models.get_model(arch, weights=weights).eval()
    preprocess = weights.transforms()
    batch = torch.stack([preprocess(Image.open(io.BytesIO(b)).convert("RGB")) for b in images])
    with torch.inference_mode():
        probs = reference(batch).softmax(dim=1)
    expected_scores, expected_indices = probs.topk(5, dim=1)

    config = {"models": [{"spec": arch, "variant": variant, "weights": "pretrained", "devices": ["cpu"]}]}
    with running_server(config) as server, Client(server.address, timeout=120) as client:
        info = client.get_model(arch)
        assert info.weights.source == models_pb2.WEIGHTS_SOURCE_PRETRAINED
        assert info.weights.uri == f"{enum_name}.{variant}"
        served = client.classify(images, model=arch, top_k=5)
        # the same input as a raw preprocessed tensor
        served_raw = client.classify([batch[0].numpy()], model=arch, top_k=5)

    categories = weights.meta["categories"]
    for i, top in enumerate(served):
        assert [c.index for c in top] == expected_indices[i].tolist()
        assert [c.label for c in top] == [categories[j] for j in expected_indices[i].tolist()]
        assert [c.score for c in top] == pytest.approx(expected_scores[i].tolist(), abs=1e-5)
    assert [c.index for c in served_raw[0]] == expected_indices[0].tolist()
    assert [c.score for c in served_raw[0]] == pytest.approx(expected_scores[0].tolist(), abs=1e-5)


def test_missing_pretrained_file_fails_fast_with_what_to_do(torch_home):
    from modelplex.errors import WeightsNotFoundError

    config = {"models": [{"spec": "resnet18", "weights": "pretrained", "devices": ["cpu"]}]}
    with pytest.raises(WeightsNotFoundError) as info:
        with running_server(config):
            pass
    message = str(info.value)
    assert "resnet18-f37072fd.pth" in message and "random" in message


def test_demo_profile_serves_every_task_with_random_weights_and_says_so():
    from modelplex.server.config import load_config

    config = load_config(None, environ={}, overrides={"server": {"port": 0}})
    with running_server(config) as server, Client(server.address, timeout=60) as client:
        models = client.list_models()
        assert models and all(m.weights.source == models_pb2.WEIGHTS_SOURCE_RANDOM for m in models)
        served = {task_id for _plugin, task_id in ((p, t.id) for p in client.list_plugins() for t in p.tasks)}
        assert {m.task for m in models} == served  # a model of every task the server has
        by_task = {m.task: m.name for m in models}
        top = client.classify([photo(3)], model=by_task["image_classification"], top_k=3)
        assert len(top[0]) == 3
        done = client.complete("hello", model=by_task["text_generation"], max_new_tokens=4)
        assert done.usage.completion_tokens >= 1
        images = list(client.generate_images(model=by_task["image_generation"], num_images=2, seed=5))
        assert [r.index for r in images] == [0, 1] and all(r.image.encoded for r in images)
        assert "speech_recognition" in by_task and "speech_synthesis" in by_task
