"""The example distribution examples/modelplex-detection brings a whole task, object
detection, through ``register_tasks``: pip-installed as its own distribution, it is
discovered by its entry point, and a real server serves its own gRPC service over
loopback (reflection, health, ListModels, ListPlugins, Detect), with the core naming
nothing of it."""

from __future__ import annotations

import importlib
import io
import os
import random
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import grpc
import pytest
import torch
from grpc_health.v1 import health_pb2, health_pb2_grpc
from grpc_reflection.v1alpha import reflection_pb2, reflection_pb2_grpc
from PIL import Image
from torch import nn
from torchvision.models.detection import SSDLite320_MobileNet_V3_Large_Weights, ssdlite320_mobilenet_v3_large
from torchvision.transforms.functional import pil_to_tensor

from modelplex.testing import RunningServer, running_server
from modelplex_client import Client, ServerError
from modelplex_client.pb import models_pb2

ROOT = Path(__file__).resolve().parents[2]
EXAMPLE = ROOT / "examples" / "modelplex-detection"
ARCH = "ssdlite320_mobilenet_v3_large"  # the smallest of the example's architectures
SERVICE = "modelplex.contrib.detection.v1.ObjectDetection"
TASK_ID = "modelplex_contrib.object_detection"
COCO = SSDLite320_MobileNet_V3_Large_Weights.COCO_V1.meta["categories"]


# -- fixtures ---------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def detection_dist(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Path]:
    """examples/modelplex-detection, pip-installed as its own distribution into a folder
    that is then put on sys.path (as tests/conftest.py does for the other examples)."""
    target = tmp_path_factory.mktemp("detection-site")
    subprocess.run(
        [
            sys.executable,
            "-m",
            "pip",
            "install",
            "--quiet",
            "--no-deps",
            "--no-build-isolation",
            "--target",
            str(target),
            str(EXAMPLE),
        ],
        check=True,
        env={**os.environ, "PIP_DISABLE_PIP_VERSION_CHECK": "1"},
    )
    sys.path.insert(0, str(target))
    importlib.invalidate_caches()
    yield target
    sys.path.remove(str(target))
    for name in [m for m in sys.modules if m.startswith("modelplex_detection")]:
        del sys.modules[name]
    importlib.invalidate_caches()


@pytest.fixture(scope="module")
def reference() -> nn.Module:
    """A randomly initialised SSDlite, built as the plugin builds it, whose BatchNorm statistics
    are calibrated on random images. Without that, the random backbone's activations vanish
    (~1e-20 deep down) and every anchor scores exactly 1/91: no box would tell anything."""
    torch.manual_seed(0)
    model = ssdlite320_mobilenet_v3_large(weights=None, weights_backbone=None, num_classes=len(COCO))
    for module in model.modules():
        if isinstance(module, nn.BatchNorm2d):
            module.momentum = None  # a plain average: one pass sets the statistics
            module.reset_running_stats()
    model.train()
    with torch.no_grad():
        features = model.backbone(torch.rand(4, 3, 320, 320))
        model.head(list(features.values()))
    return model.eval()


@pytest.fixture(scope="module")
def checkpoint(reference: nn.Module, tmp_path_factory: pytest.TempPathFactory) -> Path:
    path = tmp_path_factory.mktemp("weights") / "ssdlite.pt"
    torch.save(reference.state_dict(), path)
    return path


@pytest.fixture(scope="module")
def server(detection_dist: Path, checkpoint: Path) -> Iterator[RunningServer]:
    config = {
        "models": [
            # As many threads as this process uses, so that both compute alike.
            {"spec": ARCH, "weights": str(checkpoint), "devices": ["cpu"], "cpu_threads": torch.get_num_threads()}
        ],
        # LoadModel may name a checkpoint only under these (test_load_model_with_the_task_settings_message).
        "server": {"weights_roots": [str(checkpoint.parent)]},
    }
    with running_server(config) as running:
        yield running


@pytest.fixture(scope="module")
def channel(server: RunningServer) -> Iterator[grpc.Channel]:
    with grpc.insecure_channel(server.address) as ch:
        yield ch


@pytest.fixture(scope="module")
def stubs(channel: grpc.Channel) -> tuple[Any, Any]:
    """The distribution's own generated modules, and a stub of its service."""
    from modelplex_detection.pb import detection_pb2, detection_pb2_grpc

    return detection_pb2, detection_pb2_grpc.ObjectDetectionStub(channel)


def noise_png(width: int, height: int, seed: int) -> bytes:
    """A PNG of random pixels: something for a random detector to find boxes in."""
    pixels = random.Random(seed).randbytes(width * height * 3)
    buf = io.BytesIO()
    Image.frombytes("RGB", (width, height), pixels).save(buf, format="PNG")
    return buf.getvalue()


def expected(model: nn.Module, png: bytes, threshold: float, most: int) -> list[tuple[list[float], int, float]]:
    """The in-process model's (box, label, score) for ``png``, best first: the same float RGB
    tensor in [0, 1] that the plugin gives it (its weights' own preset)."""
    x = pil_to_tensor(Image.open(io.BytesIO(png)).convert("RGB")).float() / 255
    with torch.inference_mode():
        out = model([x])[0]
    scores = out["scores"].tolist()
    # The comparison needs an order that float noise between two runs cannot change.
    assert all(a - b > 1e-4 for a, b in zip(scores[: most + 1], scores[1 : most + 1], strict=False)), scores[:most]
    keep = [i for i, s in enumerate(scores) if s >= threshold][:most]
    assert keep, "the reference model found nothing: the comparison would prove nothing"
    return [(out["boxes"][i].tolist(), int(out["labels"][i]), scores[i]) for i in keep]


def assert_same(got: Any, want: list[tuple[list[float], int, float]]) -> None:
    assert len(got.detections) == len(want)
    for d, (box, label, score) in zip(got.detections, want, strict=True):
        assert d.label_index == label
        assert d.label == COCO[label]
        assert d.score == pytest.approx(score, abs=1e-4)
        # Boxes are pixels (up to 64 here): a relative bound, as the float noise scales with them.
        assert [d.box.x_min, d.box.y_min, d.box.x_max, d.box.y_max] == pytest.approx(box, rel=1e-4, abs=1e-4)


def assert_invalid(stub: Any, request: Any, match: str) -> None:
    with pytest.raises(grpc.RpcError) as info:
        stub.Detect(request, timeout=30)
    assert info.value.code() == grpc.StatusCode.INVALID_ARGUMENT
    assert match in info.value.details()


# -- the served task ----------------------------------------------------------------------------


def test_reflection_lists_the_service_and_serves_its_file(channel: grpc.Channel) -> None:
    stub = reflection_pb2_grpc.ServerReflectionStub(channel)
    requests = [
        reflection_pb2.ServerReflectionRequest(list_services=""),
        reflection_pb2.ServerReflectionRequest(file_containing_symbol=SERVICE),
    ]
    listed, file = list(stub.ServerReflectionInfo(iter(requests), timeout=30))
    assert SERVICE in {s.name for s in listed.list_services_response.service}
    from google.protobuf import descriptor_pb2

    proto = descriptor_pb2.FileDescriptorProto.FromString(file.file_descriptor_response.file_descriptor_proto[0])
    assert proto.name == "modelplex/contrib/detection/v1/detection.proto"
    assert [s.name for s in proto.service] == ["ObjectDetection"]


def test_health_of_the_service_and_the_model(channel: grpc.Channel) -> None:
    health = health_pb2_grpc.HealthStub(channel)
    for name in (SERVICE, f"modelplex.model/{ARCH}"):
        status = health.Check(health_pb2.HealthCheckRequest(service=name), timeout=30).status
        assert status == health_pb2.HealthCheckResponse.SERVING, name


def test_list_models_and_plugins(server: RunningServer, stubs: tuple[Any, Any]) -> None:
    pb, _ = stubs
    with Client(server.address, timeout=30) as client:
        models = {m.name: m for m in client.list_models()}
        assert [m.name for m in client.list_models(task=TASK_ID)] == [ARCH]
        plugins = {p.name: p for p in client.list_plugins()}
    model = models[ARCH]
    assert model.task == TASK_ID
    assert model.state == models_pb2.MODEL_STATE_READY
    assert model.max_batch_size == 8
    info = pb.ObjectDetectionInfo()
    assert model.task_info.Unpack(info)
    assert (info.num_classes, info.max_images_per_request, info.max_detections) == (91, 16, 300)
    assert info.min_score == pytest.approx(0.001)

    plugin = plugins["detection"]
    assert plugin.state == models_pb2.PLUGIN_STATE_ACTIVE, plugin.error
    assert plugin.distribution == "modelplex-detection"
    assert [(t.id, list(t.services)) for t in plugin.tasks] == [(TASK_ID, [SERVICE])]
    assert {s.name: s.task for s in plugin.specs} == {
        "fasterrcnn_mobilenet_v3_large_320_fpn": TASK_ID,
        "fasterrcnn_resnet50_fpn": TASK_ID,
        "retinanet_resnet50_fpn": TASK_ID,
        "ssdlite320_mobilenet_v3_large": TASK_ID,
    }


def test_detect_matches_the_torchvision_model(stubs: tuple[Any, Any], reference: nn.Module) -> None:
    pb, stub = stubs
    wide, tall = noise_png(64, 48, seed=1), noise_png(40, 56, seed=2)
    response = stub.Detect(
        pb.DetectRequest(model=ARCH, request_id="r-1", images=[wide, tall], score_threshold=0.5, max_detections=10),
        timeout=60,
    )
    assert (response.request_id, response.model, len(response.results)) == ("r-1", ARCH, 2)
    assert_same(response.results[0], expected(reference, wide, 0.5, 10))
    assert_same(response.results[1], expected(reference, tall, 0.5, 10))
    for d in response.results[0].detections:  # boxes are in the input image's pixels
        assert 0 <= d.box.x_min <= d.box.x_max <= 64 and 0 <= d.box.y_min <= d.box.y_max <= 48


def test_detect_defaults_and_limits(stubs: tuple[Any, Any], reference: nn.Module) -> None:
    pb, stub = stubs
    image = noise_png(64, 48, seed=1)
    # Unset threshold is 0.5; max_detections 0 is 100.
    default = stub.Detect(pb.DetectRequest(model=ARCH, images=[image]), timeout=60).results[0]
    assert 0 < len(default.detections) <= 100
    assert min(d.score for d in default.detections) >= 0.5
    # A threshold no detection reaches: an empty result, not an error.
    none = stub.Detect(pb.DetectRequest(model=ARCH, images=[image], score_threshold=1.0), timeout=60)
    assert len(none.results) == 1 and not none.results[0].detections
    one = stub.Detect(pb.DetectRequest(model=ARCH, images=[image], score_threshold=0.0, max_detections=1), timeout=60)
    assert len(one.results[0].detections) == 1
    assert one.results[0].detections[0].score == pytest.approx(expected(reference, image, 0.0, 1)[0][2], abs=1e-4)


def test_bad_input_is_invalid_argument_and_the_server_keeps_serving(stubs: tuple[Any, Any]) -> None:
    pb, stub = stubs
    good = noise_png(64, 48, seed=1)
    assert_invalid(stub, pb.DetectRequest(model=ARCH), "images is empty")
    assert_invalid(stub, pb.DetectRequest(model=ARCH, images=[b""]), "image 0 is empty")
    assert_invalid(stub, pb.DetectRequest(model=ARCH, images=[good, b"not an image"]), "image 1: cannot decode image")
    assert_invalid(stub, pb.DetectRequest(model=ARCH, images=[good], score_threshold=2.0), "score_threshold must be")
    assert_invalid(stub, pb.DetectRequest(model=ARCH, images=[good], max_detections=-1), "max_detections must be")
    assert_invalid(stub, pb.DetectRequest(model=ARCH, images=[good], max_detections=301), "between 1 and 300")
    assert_invalid(stub, pb.DetectRequest(model=ARCH, images=[good] * 17), "at most 16")
    with pytest.raises(grpc.RpcError) as info:
        stub.Detect(pb.DetectRequest(model="no-such-model", images=[good]), timeout=30)
    assert info.value.code() == grpc.StatusCode.NOT_FOUND

    after = stub.Detect(pb.DetectRequest(model=ARCH, images=[good], score_threshold=0.5), timeout=60)
    assert after.results[0].detections


def test_load_model_with_the_task_settings_message(
    server: RunningServer, stubs: tuple[Any, Any], checkpoint: Path
) -> None:
    pb, stub = stubs
    settings = pb.ObjectDetectionSettings(max_batch_size=2, max_images_per_request=2)
    with Client(server.address, timeout=120) as client:
        with pytest.raises(ServerError) as refused:  # another task's settings message
            wrong = models_pb2.ListModelsRequest()
            client.load_model(ARCH, name="wrong", weights=str(checkpoint), devices=["cpu"], task_settings=wrong)
        assert refused.value.code == grpc.StatusCode.INVALID_ARGUMENT
        assert pb.ObjectDetectionSettings.DESCRIPTOR.full_name in refused.value.details

        model = client.load_model(ARCH, name="small", weights=str(checkpoint), devices=["cpu"], task_settings=settings)
        try:
            info = pb.ObjectDetectionInfo()
            assert model.task_info.Unpack(info)
            assert (model.max_batch_size, info.max_images_per_request) == (2, 2)
            assert_invalid(stub, pb.DetectRequest(model="small", images=[noise_png(8, 8, 0)] * 3), "at most 2")
            two = stub.Detect(pb.DetectRequest(model="small", images=[noise_png(8, 8, 0)] * 2), timeout=60)
            assert len(two.results) == 2
        finally:
            client.unload_model("small")


# -- modelplex's conformance kit ---------------------------------------------------------------


def test_conformance_registration(detection_dist: Path, modelplex_conformance: Any) -> None:
    """The plugin registers its task and specs in a fresh interpreter, with no torch and no network."""
    registered = modelplex_conformance.check_registration("detection", sys_path=[str(detection_dist)])
    assert registered["tasks"] == [TASK_ID]
    assert ARCH in registered["specs"]


def test_conformance_model(detection_dist: Path, checkpoint: Path, modelplex_conformance: Any) -> None:
    """A served detector passes the kit's checks, with the probes the task registers."""
    modelplex_conformance.check_model({"spec": ARCH, "weights": str(checkpoint), "devices": ["cpu"]})


# -- the distribution itself --------------------------------------------------------------------


def test_the_plugin_module_imports_no_torch(detection_dist: Path) -> None:
    code = (
        "import sys, modelplex_detection.plugin, modelplex_detection.task; "
        "print(sorted({'torch', 'torchvision'} & set(sys.modules)))"
    )
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(detection_dist), os.environ.get("PYTHONPATH", "")])}
    out = subprocess.run([sys.executable, "-c", code], check=True, capture_output=True, text=True, env=env)
    assert out.stdout.strip() == "[]"


def test_the_catalog_matches_torchvision(detection_dist: Path) -> None:
    """The variant meta written out in the plugin (so as not to import torchvision there)."""
    from modelplex_detection.plugin import ARCHITECTURES
    from torchvision.models import get_model_builder, get_weight

    for arch in ARCHITECTURES:
        get_model_builder(arch.builder)  # a real builder
        meta = get_weight(arch.weights).meta
        assert arch.meta.num_params == meta["num_params"], arch.builder
        assert arch.meta.box_map == meta["_metrics"]["COCO-val2017"]["box_map"], arch.builder
        assert arch.meta.recipe == meta["recipe"], arch.builder
        assert arch.meta.num_classes == len(meta["categories"]), arch.builder


def make_detector(spec_name: str, weights: Any, settings: Any = None) -> Any:
    """The plugin's TorchvisionDetector for one of its specs, built as its factory builds it."""
    from modelplex_detection import plugin
    from modelplex_detection.plugin import DetectorSettings

    from modelplex import LoadContext

    specs: list[Any] = []
    plugin.register_models(specs.append)
    spec = next(s for s in specs if s.name == spec_name)
    ctx = LoadContext(spec_name, spec, spec.variant(None), weights, "cpu", settings or DetectorSettings())
    return spec.factory(ctx)


def test_pretrained_weights_are_only_read_from_the_local_cache(
    detection_dist: Path, tmp_path: Path, checkpoint: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from modelplex_detection.plugin import DetectorSettings

    from modelplex import ModelLoadError, WeightsChoice, WeightsNotFoundError, WeightsSource

    monkeypatch.setenv("TORCH_HOME", str(tmp_path))  # an empty torch.hub cache; read on every call
    with pytest.raises(WeightsNotFoundError) as missing:
        make_detector(ARCH, WeightsChoice(WeightsSource.PRETRAINED)).load()
    message = str(missing.value)
    assert str(tmp_path / "hub" / "checkpoints" / "ssdlite320_mobilenet_v3_large_coco-a79551df.pth") in message
    assert SSDLite320_MobileNet_V3_Large_Weights.COCO_V1.url in message

    # A checkpoint whose head has other classes than the labels say is refused, saying why.
    three = DetectorSettings(labels=("__background__", "cat", "dog"))
    with pytest.raises(ModelLoadError, match="does not fit .*num_classes=3"):
        make_detector(ARCH, WeightsChoice(WeightsSource.CHECKPOINT, checkpoint), three).load()


def test_faster_rcnn_random_weights_load_with_its_roi_heads_limits(detection_dist: Path) -> None:
    from modelplex import WeightsChoice, WeightsSource

    detector = make_detector("fasterrcnn_mobilenet_v3_large_320_fpn", WeightsChoice(WeightsSource.RANDOM))
    detector.load()
    assert (detector.max_detections, detector.min_score, len(detector.labels)) == (100, 0.05, 91)
    assert detector.memory_bytes() > 0
    images = [detector.preprocess(noise_png(64, 48, 1)), detector.preprocess(noise_png(30, 50, 2))]
    found = detector.detect(images, score_threshold=0.0, max_detections=5)
    assert len(found) == 2 and all(len(f) <= 5 for f in found)
    detector.unload()
    assert detector.memory_bytes() == 0


def test_one_batch_serves_requests_with_different_limits(detection_dist: Path) -> None:
    """Requests batched together get what each would get alone: the runtime runs the batch
    with the loosest limits and cuts each request's own best-first prefix."""
    from types import SimpleNamespace

    from modelplex_detection import BoundingBox, Detection, ObjectDetector
    from modelplex_detection.runtime import DetectionRuntime, DetectJob
    from modelplex_detection.settings import DetectionSettings

    class Ladder(ObjectDetector):
        """Image ``n`` (its bytes' length) has detections scoring 0.9, 0.8, ... 0.1."""

        labels = ("__background__", "thing")
        max_detections = 9

        def load(self) -> None: ...
        def unload(self) -> None: ...

        def preprocess(self, image: bytes) -> int:
            return len(image)

        def detect(self, inputs: Any, score_threshold: float, max_detections: int) -> list[list[Detection]]:
            ladders = [
                [Detection(BoundingBox(0, 0, n, n), 1, "thing", s / 10) for s in range(9, 0, -1)] for n in inputs
            ]
            return [[d for d in ladder if d.score >= score_threshold][:max_detections] for ladder in ladders]

    model = Ladder()
    runtime = DetectionRuntime("ladder", [SimpleNamespace(model=model)], DetectionSettings(max_batch_size=2))  # type: ignore[list-item]
    jobs = [DetectJob([b"a"], 0.75, 9), DetectJob([b"bb", b"ccc"], 0.15, 3), DetectJob([b"d"], 0.5, 1)]
    together = runtime.run_batch(model, jobs)
    alone = [runtime.run_batch(model, [job])[0] for job in jobs]
    assert together == alone
    assert [[d.score for d in r] for r in together[1]] == [[0.9, 0.8, 0.7]] * 2  # type: ignore[union-attr]
    assert runtime.info().max_detections == 9


def test_generated_code_is_up_to_date(tmp_path: Path) -> None:
    subprocess.run([sys.executable, str(EXAMPLE / "gen_protos.py"), "--out", str(tmp_path)], check=True)
    committed = EXAMPLE / "src" / "modelplex_detection" / "pb"
    names = sorted(p.name for p in committed.iterdir() if p.is_file())
    assert names == sorted(p.name for p in tmp_path.iterdir())
    for name in names:
        assert (committed / name).read_text() == (tmp_path / name).read_text(), f"regenerate {name}: gen_protos.py"


def test_the_core_names_no_detection() -> None:
    """Everything about detection lives in the distribution: the server serves it unnamed.
    (The core's docs use ``acme.object_detection`` as an example of a task id.)"""
    hits = []
    for path in sorted((ROOT / "server").rglob("*")):
        if not path.is_file() or "__pycache__" in path.parts or ".egg-info" in str(path):
            continue
        text = path.read_text(errors="replace").lower().replace("acme.object_detection", "")
        text = text.replace("activity detection", "")  # speech recognition's voice activity detection
        if "detection" in text or "modelplex_contrib" in text:
            hits.append(str(path.relative_to(ROOT)))
    assert hits == []
