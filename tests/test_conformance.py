"""The conformance kit (modelplex.conformance) run on the first-party plugins and the example,
as a third-party plugin's own suite would run it."""

from __future__ import annotations

import pytest

from modelplex.conformance import check_model
from modelplex.taskdef import ConformanceProbes


@pytest.mark.parametrize("entry_point", ["tasks", "vision", "text", "speech", "tts", "imagegen"])
def test_first_party_registration_is_cheap(modelplex_conformance, entry_point):
    registered = modelplex_conformance.check_registration(entry_point)
    assert registered["tasks"] or registered["specs"]


def test_example_plugin_registration_is_cheap(modelplex_conformance, example_plugins):
    registered = modelplex_conformance.check_registration("example_colors", sys_path=[str(example_plugins)])
    assert registered["specs"] == ["dominant-color"]


def test_example_classifier_conforms(modelplex_conformance, example_plugins):
    modelplex_conformance.check_model({"spec": "dominant-color", "weights": "random", "devices": ["cpu"]})


def test_torchvision_classifier_conforms():
    check_model({"spec": "resnet18", "weights": "random", "devices": ["cpu"], "max_batch_size": 2})


def test_text_generator_conforms():
    from text_models import text_model

    check_model(text_model("tiny", "causal-lm", "gpt2"))


def test_the_kit_fails_a_model_that_is_not_freed_on_unload():
    from probe_plugin import probe_model

    held = []

    class Holding:
        from modelplex import hookimpl

        @hookimpl
        def register_models(self, register):  # type: ignore[no-untyped-def]
            from probe_plugin import ProbePlugin

            def keep(spec):  # the probe's factory, wrapped to keep every model it builds
                import dataclasses

                def factory(ctx):  # type: ignore[no-untyped-def]
                    model = spec.factory(ctx)
                    held.append(model)
                    return model

                register(dataclasses.replace(spec, name="holding", factory=factory))

            ProbePlugin().register_models(keep)

    def invalid(channel, model):  # type: ignore[no-untyped-def]
        from modelplex_client.pb import image_classification_pb2, image_classification_pb2_grpc

        stub = image_classification_pb2_grpc.ImageClassificationStub(channel)
        stub.Classify(image_classification_pb2.ClassifyRequest(model=model, top_k=-1), timeout=30)

    probes = ConformanceProbes(sample=lambda channel, model: None, invalid=invalid)
    with pytest.raises(AssertionError, match="still referenced after unloading"):
        check_model(probe_model("holding", spec="holding"), probes=probes, extra_plugins=[("holding", Holding())])
    assert held, "the probe model was built"


def test_the_kit_reports_a_load_failure_and_a_failing_sample_as_assertions(tmp_path):
    import torch

    from modelplex import ImageGenerationMeta, ImageGenerator, ModelSpec, NoSettings, Variant, hookimpl

    junk = tmp_path / "netG.pth"
    junk.write_bytes(b"not a checkpoint")
    with pytest.raises(AssertionError, match="model 'dcgan' failed to load: "):
        check_model({"spec": "dcgan", "weights": str(junk), "devices": ["cpu"]})

    class WrongShape(ImageGenerator):
        latent_size, image_shape = 4, (3, 8, 8)

        def __init__(self, ctx):  # type: ignore[no-untyped-def]
            pass

        def load(self) -> None:
            pass

        def unload(self) -> None:
            pass

        def generate(self, inputs):  # type: ignore[no-untyped-def]
            return torch.zeros(len(inputs), 3, 5, 5)

    class Plugin:
        @hookimpl
        def register_models(self, register):  # type: ignore[no-untyped-def]
            meta = ImageGenerationMeta(family="wrong")
            register(ModelSpec("wrong", "image_generation", WrongShape, (Variant("v", "", meta),), settings=NoSettings))

    with pytest.raises(AssertionError, match=r"the sample request failed: INTERNAL: .*generate\(\) returned shape"):
        check_model({"spec": "wrong", "weights": "random", "devices": ["cpu"]}, extra_plugins=[("wrong", Plugin())])
