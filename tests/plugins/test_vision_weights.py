"""Loading torchvision classifiers through the vision plugin: pretrained (from a local
torch.hub cache filled with random weights), checkpoints, and random init."""

from __future__ import annotations

import argparse
import re
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import torch
import torchvision.models as tvm
from safetensors.torch import save_file

from modelplex import (
    ClassScore,
    InvalidInputError,
    LoadContext,
    ModelLoadError,
    ModelNotReadyError,
    NoSettings,
    WeightsChoice,
    WeightsNotFoundError,
    WeightsSource,
)
from modelplex_vision.plugin import build_specs
from modelplex_vision.settings import VisionSettings
from modelplex_vision.weights import hub_cache_file

SPECS = {spec.name: spec for spec in build_specs()}
PRETRAINED = WeightsChoice(WeightsSource.PRETRAINED)
RANDOM = WeightsChoice(WeightsSource.RANDOM)
FAMILIES = ["resnet18", "googlenet", "inception_v3", "vgg11", "densenet121"]
# The kwargs torchvision's builders use for their own pretrained files, whose state
# dicts therefore hold the auxiliary heads.
_PRETRAINED_LAYOUT: dict[str, dict[str, Any]] = {
    "googlenet": {"transform_input": True, "aux_logits": True, "init_weights": False},
    "inception_v3": {"transform_input": True, "aux_logits": True, "init_weights": False},
    "vgg11": {"init_weights": False},
}


def make_classifier(arch: str, weights: WeightsChoice, variant: str | None = None, **settings: Any) -> Any:
    """The plugin's classifier for ``arch``, built by its spec's factory (not loaded)."""
    spec = SPECS[arch]
    ctx = LoadContext(
        model_name=f"test-{arch}",
        spec=spec,
        variant=spec.variant(variant),
        weights=weights,
        device="cpu",
        settings=VisionSettings(**settings),
    )
    return spec.factory(ctx)


def checkpoint(path: Path) -> WeightsChoice:
    return WeightsChoice(WeightsSource.CHECKPOINT, path)


def random_state_dict(arch: str, num_classes: int = 1000) -> dict[str, torch.Tensor]:
    torch.manual_seed(1234)
    kwargs = {**_PRETRAINED_LAYOUT.get(arch, {}), "num_classes": num_classes}
    return tvm.get_model_builder(arch)(weights=None, **kwargs).state_dict()


def legacy_densenet_keys(state_dict: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    """Keys as in torchvision's published DenseNet files: "norm.1", not "norm1", and no
    ``num_batches_tracked`` (they predate it)."""
    pattern = re.compile(r"(denselayer\d+\.(?:norm|relu|conv))([12])\.")
    return {pattern.sub(r"\1.\2.", k): v for k, v in state_dict.items() if "num_batches_tracked" not in k}


def top_k(probabilities: torch.Tensor, k: int) -> list[list[tuple[int, float]]]:
    scores, indices = probabilities.topk(k, dim=1)
    return [list(zip(i, s, strict=True)) for i, s in zip(indices.tolist(), scores.tolist(), strict=True)]


def assert_same_top_k(got: list[list[ClassScore]], expected: list[list[tuple[int, float]]]) -> None:
    assert [[c.index for c in row] for row in got] == [[i for i, _ in row] for row in expected]
    for got_row, expected_row in zip(got, expected, strict=True):
        assert [c.score for c in got_row] == pytest.approx([s for _, s in expected_row], abs=1e-5)


@pytest.fixture
def torch_home(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """An empty torch.hub cache; returns its checkpoints folder."""
    monkeypatch.setenv("TORCH_HOME", str(tmp_path / "torch"))
    # torch.hub.set_dir() would take precedence over TORCH_HOME.
    monkeypatch.setattr(torch.hub, "_hub_dir", None)
    return Path(torch.hub.get_dir()) / "checkpoints"


class Family:
    """One architecture's random 'pretrained' file in a hub cache, and torchvision's outputs for it."""

    def __init__(self, arch: str, home: Path, tmp: Path) -> None:
        self.arch = arch
        self.home = home
        self.weights = tvm.get_model_weights(arch).DEFAULT
        self.cache_file = hub_cache_file(self.weights)
        self.cache_file.parent.mkdir(parents=True)
        state_dict = random_state_dict(arch)
        published = legacy_densenet_keys(state_dict) if arch.startswith("densenet") else state_dict
        torch.save(published, self.cache_file)
        # A state dict as saved from the loaded model: without the auxiliary heads.
        self.safetensors_file = tmp / f"{arch}.safetensors"
        heads = ("aux1.", "aux2.", "AuxLogits.")
        save_file({k: v for k, v in state_dict.items() if not k.startswith(heads)}, self.safetensors_file)
        del state_dict, published

        preset = self.weights.transforms()
        generator = torch.Generator().manual_seed(0)
        self.inputs = [preset(torch.randint(0, 256, (3, 260, 330), dtype=torch.uint8, generator=generator))]
        self.inputs.append(preset(torch.full((3, 300, 300), 128, dtype=torch.uint8)))
        reference = tvm.get_model_builder(arch)(weights=self.weights).eval()
        with torch.inference_mode():
            self.expected = top_k(torch.softmax(reference(torch.stack(self.inputs)), dim=1), 5)


@pytest.fixture(scope="module", params=FAMILIES)
def family(request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Family]:
    tmp = tmp_path_factory.mktemp(request.param)
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv("TORCH_HOME", str(tmp / "torch"))
        mp.setattr(torch.hub, "_hub_dir", None)
        family = Family(request.param, tmp / "torch", tmp)
        yield family
    # VGG's files are half a gigabyte each; pytest keeps old temporary folders.
    family.cache_file.unlink()
    family.safetensors_file.unlink()


@pytest.fixture
def family_home(family: Family, monkeypatch: pytest.MonkeyPatch) -> Family:
    monkeypatch.setenv("TORCH_HOME", str(family.home))
    monkeypatch.setattr(torch.hub, "_hub_dir", None)
    return family


def test_pretrained_from_cache_matches_torchvision(family_home: Family) -> None:
    model = make_classifier(family_home.arch, PRETRAINED)
    model.load()
    assert_same_top_k(model.classify(family_home.inputs, top_k=5), family_home.expected)
    assert model.labels == tuple(family_home.weights.meta["categories"])


@pytest.mark.parametrize("kind", ["pth", "safetensors"])
def test_checkpoint_matches_torchvision(family: Family, kind: str) -> None:
    path = family.cache_file if kind == "pth" else family.safetensors_file
    model = make_classifier(family.arch, checkpoint(path))
    model.load()
    assert_same_top_k(model.classify(family.inputs, top_k=5), family.expected)


def test_missing_cache_file_without_download_says_what_to_do(torch_home: Path) -> None:
    model = make_classifier("resnet50", PRETRAINED)
    with pytest.raises(WeightsNotFoundError) as info:
        model.load()
    message = str(info.value)
    weights = tvm.ResNet50_Weights.IMAGENET1K_V2
    assert str(torch_home / "resnet50-11ad3fa6.pth") in message
    assert weights.url in message
    assert "allow" in message and "checkpoint" in message and '"random"' in message


def test_corrupt_cache_file_is_a_load_error(torch_home: Path) -> None:
    torch_home.mkdir(parents=True)
    (torch_home / "resnet18-f37072fd.pth").write_bytes(b"not a checkpoint")
    with pytest.raises(ModelLoadError, match="resnet18-f37072fd.pth"):
        make_classifier("resnet18", PRETRAINED).load()


def test_missing_checkpoint_is_weights_not_found(tmp_path: Path) -> None:
    path = tmp_path / "nope.pth"
    with pytest.raises(WeightsNotFoundError, match=re.escape(str(path))):
        make_classifier("resnet18", checkpoint(path)).load()


def test_fine_tuned_head_needs_num_classes(tmp_path: Path) -> None:
    path = tmp_path / "three.pth"
    state_dict = random_state_dict("resnet18", num_classes=3)
    torch.save({"model": state_dict, "epoch": 7}, path)
    with pytest.raises(ModelLoadError, match="num_classes"):
        make_classifier("resnet18", checkpoint(path)).load()

    model = make_classifier("resnet18", checkpoint(path), num_classes=3)
    model.load()
    assert model.labels == ("class_0", "class_1", "class_2")
    (scores,) = model.classify([torch.zeros(3, 224, 224)], top_k=10)
    assert sorted(c.index for c in scores) == [0, 1, 2]
    assert sum(c.score for c in scores) == pytest.approx(1.0)

    named = make_classifier("resnet18", checkpoint(path), labels=["cat", "dog", "owl"])
    named.load()
    assert {c.label for c in named.classify([torch.zeros(3, 224, 224)], top_k=3)[0]} == {"cat", "dog", "owl"}


def test_data_parallel_state_dict_under_state_dict_key_loads(tmp_path: Path) -> None:
    path = tmp_path / "ddp.pt"
    state_dict = random_state_dict("resnet18")
    torch.save({"state_dict": {f"module.{k}": v for k, v in state_dict.items()}}, path)
    model = make_classifier("resnet18", checkpoint(path))
    model.load()
    params = dict(model._model.named_parameters())
    assert torch.equal(params["fc.weight"], state_dict["fc.weight"])


@pytest.mark.parametrize(
    "content",
    [{"args": argparse.Namespace(lr=0.1)}, {"weights": [1, 2, 3]}],
    ids=["pickled-object", "not-tensors"],
)
def test_checkpoint_that_is_not_a_state_dict_is_a_load_error(tmp_path: Path, content: object) -> None:
    path = tmp_path / "odd.pth"
    torch.save(content, path)
    with pytest.raises(ModelLoadError, match="odd.pth"):
        make_classifier("resnet18", checkpoint(path)).load()


def test_random_weights_are_reproducible_and_unload_frees() -> None:
    first, second = make_classifier("resnet18", RANDOM), make_classifier("resnet18", RANDOM)
    first.load()
    second.load()
    first.warmup()
    batch = [torch.rand(3, 224, 224)]
    assert first.classify(batch, top_k=3) == second.classify(batch, top_k=3)
    assert first.memory_bytes() >= 11_689_512 * 4
    first.unload()
    assert first.memory_bytes() == 0


def test_classify_clamps_top_k_and_rejects_nonpositive() -> None:
    model = make_classifier("resnet18", RANDOM, num_classes=4)
    with pytest.raises(ModelNotReadyError):
        model.classify([torch.zeros(3, 224, 224)], top_k=1)
    model.load()
    assert [len(row) for row in model.classify([torch.zeros(3, 224, 224)] * 2, top_k=100)] == [4, 4]
    with pytest.raises(InvalidInputError, match="top_k"):
        model.classify([torch.zeros(3, 224, 224)], top_k=0)


def test_channels_last_gives_the_same_scores() -> None:
    plain, channels_last = (
        make_classifier("resnet18", RANDOM),
        make_classifier("resnet18", RANDOM, channels_last=True),
    )
    plain.load()
    channels_last.load()
    batch = [torch.rand(3, 224, 224), torch.rand(3, 224, 224)]
    expected = [[(c.index, c.score) for c in row] for row in plain.classify(batch, top_k=5)]
    assert_same_top_k(channels_last.classify(batch, top_k=5), expected)


def test_settings_of_another_type_are_revalidated() -> None:
    spec = SPECS["resnet18"]
    ctx = LoadContext("r", spec, spec.variant(None), RANDOM, "cpu", NoSettings())
    assert spec.factory(ctx).labels == tuple(tvm.ResNet18_Weights.IMAGENET1K_V1.meta["categories"])


def test_pretrained_features_only_variant_is_refused() -> None:
    with pytest.raises(ModelLoadError, match="checkpoint"):
        make_classifier("vgg16", PRETRAINED, variant="IMAGENET1K_FEATURES")


def test_pretrained_with_another_head_is_refused() -> None:
    with pytest.raises(ModelLoadError, match="checkpoint"):
        make_classifier("resnet18", PRETRAINED, num_classes=10)


@pytest.mark.parametrize("dtype", ["float16", "bfloat16"])
def test_half_precision_on_cpu_is_refused(dtype: str) -> None:
    with pytest.raises(ModelLoadError, match="CUDA"):
        make_classifier("resnet18", RANDOM, dtype=dtype)
