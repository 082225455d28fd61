"""A static table of the torchvision classifiers this plugin serves.

Registration must not import torchvision (it takes seconds and pulls in torch), so
the facts a spec advertises are copied here from torchvision 0.29's ``Weights``
enums. ``tests/plugins/test_vision_catalog.py`` checks this table against the real
enums, so it cannot drift silently when torchvision changes.
"""

from __future__ import annotations

from dataclasses import dataclass

__all__ = ["ARCHITECTURES", "Architecture", "WeightsVariant"]

IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)

_REFERENCES = "https://github.com/pytorch/vision/tree/main/references/classification"
_RESNET_RECIPE = f"{_REFERENCES}#resnet"
_VGG_RECIPE = f"{_REFERENCES}#alexnet-and-vgg"
_DENSENET_RECIPE = "https://github.com/pytorch/vision/pull/116"


@dataclass(frozen=True)
class WeightsVariant:
    """One member of a torchvision ``Weights`` enum, e.g. ``ResNet50_Weights.IMAGENET1K_V2``."""

    name: str
    """The enum member's name, e.g. ``"IMAGENET1K_V2"``."""
    crop_size: int
    resize_size: int
    num_params: int
    recipe: str
    num_classes: int | None = 1000
    """Classes of the pretrained head; None where torchvision ships no usable head."""
    interpolation: str = "bilinear"
    mean: tuple[float, float, float] = IMAGENET_MEAN
    std: tuple[float, float, float] = IMAGENET_STD
    note: str = ""
    """Anything an operator must know before choosing this variant."""


@dataclass(frozen=True)
class Architecture:
    """One torchvision classifier architecture and all of its pretrained weights."""

    name: str
    """The spec's name, e.g. ``"resnet50"``."""
    title: str
    builder: str
    """The builder's name in ``torchvision.models``."""
    weights_enum: str
    """The ``Weights`` enum's name in ``torchvision.models``."""
    default: str
    """The member torchvision's ``DEFAULT`` alias points at."""
    variants: tuple[WeightsVariant, ...]

    def weights_id(self, variant: str) -> str:
        """The string ``torchvision.models.get_weight`` takes, e.g. ``"ResNet50_Weights.IMAGENET1K_V2"``."""
        return f"{self.weights_enum}.{variant}"


def _v1(num_params: int, recipe: str, *, crop: int = 224, resize: int = 256) -> WeightsVariant:
    return WeightsVariant("IMAGENET1K_V1", crop, resize, num_params, recipe)


def _resnet_v2(num_params: int, recipe: str) -> WeightsVariant:
    return WeightsVariant("IMAGENET1K_V2", 224, 232, num_params, recipe)


def _arch(name: str, title: str, enum: str, *variants: WeightsVariant, default: str = "IMAGENET1K_V1") -> Architecture:
    return Architecture(name, title, name, enum, default, variants)


_NEW_RESNET_RECIPE = "https://github.com/pytorch/vision/issues/3995#new-recipe"

_VGG16_FEATURES = WeightsVariant(
    "IMAGENET1K_FEATURES",
    224,
    256,
    138357544,
    "https://github.com/amdegroot/ssd.pytorch#training-ssd",
    num_classes=None,
    mean=(0.48235, 0.45882, 0.40784),
    std=(1.0 / 255.0, 1.0 / 255.0, 1.0 / 255.0),
    note="Feature-extractor weights only: the classifier head is not trained, so serve it "
    "from a checkpoint fine-tuned from these weights.",
)

ARCHITECTURES: tuple[Architecture, ...] = (
    _arch("resnet18", "ResNet-18", "ResNet18_Weights", _v1(11689512, _RESNET_RECIPE)),
    _arch("resnet34", "ResNet-34", "ResNet34_Weights", _v1(21797672, _RESNET_RECIPE)),
    _arch(
        "resnet50",
        "ResNet-50",
        "ResNet50_Weights",
        _v1(25557032, _RESNET_RECIPE),
        _resnet_v2(25557032, "https://github.com/pytorch/vision/issues/3995#issuecomment-1013906621"),
        default="IMAGENET1K_V2",
    ),
    _arch(
        "resnet101",
        "ResNet-101",
        "ResNet101_Weights",
        _v1(44549160, _RESNET_RECIPE),
        _resnet_v2(44549160, _NEW_RESNET_RECIPE),
        default="IMAGENET1K_V2",
    ),
    _arch(
        "resnet152",
        "ResNet-152",
        "ResNet152_Weights",
        _v1(60192808, _RESNET_RECIPE),
        _resnet_v2(60192808, _NEW_RESNET_RECIPE),
        default="IMAGENET1K_V2",
    ),
    _arch(
        "inception_v3",
        "Inception v3",
        "Inception_V3_Weights",
        _v1(27161264, f"{_REFERENCES}#inception-v3", crop=299, resize=342),
    ),
    _arch("googlenet", "GoogLeNet (Inception v1)", "GoogLeNet_Weights", _v1(6624904, f"{_REFERENCES}#googlenet")),
    _arch("vgg11", "VGG-11", "VGG11_Weights", _v1(132863336, _VGG_RECIPE)),
    _arch("vgg13", "VGG-13", "VGG13_Weights", _v1(133047848, _VGG_RECIPE)),
    _arch("vgg16", "VGG-16", "VGG16_Weights", _v1(138357544, _VGG_RECIPE), _VGG16_FEATURES),
    _arch("vgg19", "VGG-19", "VGG19_Weights", _v1(143667240, _VGG_RECIPE)),
    _arch("vgg11_bn", "VGG-11 with batch norm", "VGG11_BN_Weights", _v1(132868840, _VGG_RECIPE)),
    _arch("vgg13_bn", "VGG-13 with batch norm", "VGG13_BN_Weights", _v1(133053736, _VGG_RECIPE)),
    _arch("vgg16_bn", "VGG-16 with batch norm", "VGG16_BN_Weights", _v1(138365992, _VGG_RECIPE)),
    _arch("vgg19_bn", "VGG-19 with batch norm", "VGG19_BN_Weights", _v1(143678248, _VGG_RECIPE)),
    _arch("densenet121", "DenseNet-121", "DenseNet121_Weights", _v1(7978856, _DENSENET_RECIPE)),
    _arch("densenet161", "DenseNet-161", "DenseNet161_Weights", _v1(28681000, _DENSENET_RECIPE)),
    _arch("densenet169", "DenseNet-169", "DenseNet169_Weights", _v1(14149480, _DENSENET_RECIPE)),
    _arch("densenet201", "DenseNet-201", "DenseNet201_Weights", _v1(20013928, _DENSENET_RECIPE)),
)
