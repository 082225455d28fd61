"""The vision plugin's static catalog against torchvision's real Weights enums, and its registration."""

from __future__ import annotations

import subprocess
import sys
from importlib.metadata import entry_points

import pytest
import torchvision.models as tvm
from pydantic import ValidationError

from modelplex import ModelSpec, Task
from modelplex_vision import plugin
from modelplex_vision.catalog import ARCHITECTURES, Architecture
from modelplex_vision.settings import VisionSettings

EXPECTED_ARCHS = {
    *(f"resnet{n}" for n in (18, 34, 50, 101, 152)),
    "inception_v3",
    "googlenet",
    *(f"vgg{n}{bn}" for n in (11, 13, 16, 19) for bn in ("", "_bn")),
    *(f"densenet{n}" for n in (121, 161, 169, 201)),
}


def test_catalog_covers_the_expected_architectures() -> None:
    assert {a.name for a in ARCHITECTURES} == EXPECTED_ARCHS
    assert len(ARCHITECTURES) == len(EXPECTED_ARCHS)


@pytest.mark.parametrize("arch", ARCHITECTURES, ids=lambda a: a.name)
def test_catalog_matches_torchvision(arch: Architecture) -> None:
    assert tvm.get_model_builder(arch.name) is getattr(tvm, arch.builder)
    enum = tvm.get_model_weights(arch.name)
    assert enum.__name__ == arch.weights_enum
    assert arch.default == enum.DEFAULT.name
    assert [v.name for v in arch.variants] == [w.name for w in enum]
    for variant in arch.variants:
        weights = enum[variant.name]
        preset = weights.transforms()
        categories = weights.meta["categories"]
        assert tvm.get_weight(arch.weights_id(variant.name)) is weights
        assert [variant.crop_size] == preset.crop_size
        assert [variant.resize_size] == preset.resize_size
        assert variant.interpolation == preset.interpolation.value
        assert list(variant.mean) == pytest.approx(preset.mean)
        assert list(variant.std) == pytest.approx(preset.std)
        assert variant.num_params == weights.meta["num_params"]
        assert variant.num_classes == (len(categories) if categories is not None else None)
        assert variant.recipe == weights.meta["recipe"]


def test_plugin_module_does_not_import_torch() -> None:
    code = "import modelplex_vision.plugin, sys; assert 'torch' not in sys.modules, 'torch was imported'"
    subprocess.run([sys.executable, "-c", code], check=True)


def test_entry_point_names_the_plugin_module() -> None:
    (ep,) = [ep for ep in entry_points(group="modelplex") if ep.name == "vision"]
    assert ep.value == "modelplex_vision.plugin"


def test_register_models_registers_one_spec_per_architecture() -> None:
    specs: list[ModelSpec] = []
    plugin.register_models(specs.append)
    assert [s.name for s in specs] == [a.name for a in ARCHITECTURES]
    assert all(s.task == Task.IMAGE_CLASSIFICATION and s.settings is VisionSettings for s in specs)
    resnet50 = next(s for s in specs if s.name == "resnet50")
    default = resnet50.variant(None)
    assert default.name == "IMAGENET1K_V2"
    assert default.weights == "ResNet50_Weights.IMAGENET1K_V2"
    assert default.meta.num_classes == 1000
    assert default.meta.input_shape == (3, 224, 224)
    assert default.meta.preprocessing is not None
    assert default.meta.preprocessing.resize_size == 232
    assert [v.name for v in resnet50.variants] == ["IMAGENET1K_V1", "IMAGENET1K_V2"]
    inception = next(s for s in specs if s.name == "inception_v3").variant(None)
    assert inception.meta.input_shape == (3, 299, 299)
    features = next(s for s in specs if s.name == "vgg16").variant("IMAGENET1K_FEATURES")
    assert features.meta.num_classes is None and features.description


def test_settings_are_strict() -> None:
    assert VisionSettings().dtype == "float32"
    with pytest.raises(ValidationError):
        VisionSettings.model_validate({"num_clases": 3})
    with pytest.raises(ValidationError):
        VisionSettings(num_classes=3, labels=["a", "b"])
    with pytest.raises(ValidationError):
        VisionSettings.model_validate({"dtype": "float64"})
    with pytest.raises(ValidationError):
        VisionSettings(labels=[])
    assert all(f.description for f in VisionSettings.model_fields.values())
