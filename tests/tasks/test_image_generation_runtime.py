"""The image-generation runtime with a recording generator over real gRPC: pieces of at most
max_batch_size images, one truncation per forward pass, a cancelled stream's queued pieces
dropped unrun (typed and OIP), a plugin's failure as INTERNAL while the server keeps serving."""

from __future__ import annotations

import io
import threading
import time
from collections.abc import Sequence

import grpc
import pytest
import torch
from PIL import Image

from modelplex import LoadContext, ModelSpec, NoSettings, Variant, hookimpl
from modelplex.tasks.image_generation import ImageGenerationMeta, ImageGenerator, ImageInput
from modelplex.testing import running_server
from modelplex_client.pb import image_generation_pb2 as pb
from modelplex_client.pb import image_generation_pb2_grpc as pb_grpc

CALLS: list[tuple[int, tuple[float, ...]]] = []
GATE = threading.Event()
ONE_AT_A_TIME = threading.Event()
"""Set: every call closes GATE again once through, so that the test lets calls through one by one."""


class Recorder(ImageGenerator):
    """Images whose pixels are the latent's first value; records every call."""

    latent_size = 4
    image_shape = (1, 2, 2)

    def __init__(self, ctx: LoadContext) -> None:
        self.broken = ctx.model_name == "broken"
        self.wild = ctx.model_name == "wild"

    def load(self) -> None:
        pass

    def unload(self) -> None:
        pass

    def generate(self, inputs: Sequence[ImageInput]) -> torch.Tensor:
        GATE.wait(30)
        if ONE_AT_A_TIME.is_set():
            GATE.clear()
        CALLS.append((len(inputs), tuple(i.truncation for i in inputs)))
        if self.broken:
            return torch.zeros(len(inputs) + 1, 1, 2, 2)
        if self.wild:  # 10 x the latent's first value, NaN where it is negative
            values = [float("nan") if i.latent[0] < 0 else 10 * float(i.latent[0]) for i in inputs]
            return torch.tensor(values).reshape(-1, 1, 1, 1).expand(-1, 1, 2, 2).contiguous()
        return torch.stack([i.latent[:1].expand(4).reshape(1, 2, 2) for i in inputs]).clamp(0, 1)


class RecorderPlugin:
    @hookimpl
    def register_models(self, register):  # type: ignore[no-untyped-def]
        meta = ImageGenerationMeta(family="recorder")
        register(ModelSpec("recorder", "image_generation", Recorder, (Variant("v", "", meta),), settings=NoSettings))


@pytest.fixture(scope="module")
def server():
    entry = {"spec": "recorder", "weights": "random", "devices": ["cpu"], "max_batch_size": 4}
    models = [{**entry, "name": "recorder"}, {**entry, "name": "broken"}, {**entry, "name": "wild"}]
    GATE.set()
    with running_server({"models": models}, extra_plugins=[("recorder", RecorderPlugin())]) as s:
        yield s
    GATE.set()


@pytest.fixture
def stub(server):
    CALLS.clear()
    ONE_AT_A_TIME.clear()
    GATE.set()
    with grpc.insecure_channel(server.address) as channel:
        yield pb_grpc.ImageGenerationStub(channel)


def test_a_request_is_cut_into_pieces_of_one_truncation(stub):
    latents = [0.5, 0, 0, 0] * 10
    responses = list(stub.Generate(pb.ImageGenerationGenerateRequest(model="recorder", num_images=10, latent=latents)))
    assert [r.index for r in responses] == list(range(10))
    assert [n for n, _ in CALLS] == [4, 4, 2]
    # PNG of a 1-channel image is grayscale, round(255 * 0.5) = 128
    image = Image.open(io.BytesIO(responses[0].image.encoded))
    assert image.mode == "L" and image.getpixel((1, 1)) == 128


def test_concurrent_truncations_never_share_a_forward_pass(stub, server):
    GATE.clear()
    results = []
    instance = server.server.registry.describe("recorder").instances[0]
    batches_before = instance.completed

    def call(truncation: float) -> None:
        request = pb.ImageGenerationGenerateRequest(model="recorder", num_images=2, truncation=truncation)
        results.append(list(stub.Generate(request, timeout=30)))

    # Counted before the calls start: the instance may take the first batch at once.
    runtime = server.server.registry.describe("recorder").runtime
    slots_before = runtime.stats.batch_sizes.total
    threads = [threading.Thread(target=call, args=(t,)) for t in (0.5, 1.0, 0.5, 1.0)]
    for t in threads:
        t.start()
    # Every request (2 images each) is queued, or in the batch the instance took (which waits
    # for the gate in its first forward pass, whatever truncations it holds).
    _wait(lambda: runtime.queued + (runtime.stats.batch_sizes.total - slots_before) // 2 == 4)
    GATE.set()
    for t in threads:
        t.join()
    assert len(results) == 4 and all(len(r) == 2 for r in results)
    assert all(len(set(truncations)) == 1 for _, truncations in CALLS)
    assert sum(n for n, _ in CALLS) == 8
    assert instance.completed - batches_before < 4  # queued requests were batched, and split by truncation


def test_a_cancelled_stream_drops_its_queued_pieces(stub, server):
    ONE_AT_A_TIME.set()
    GATE.clear()
    call = stub.Generate(pb.ImageGenerationGenerateRequest(model="recorder", num_images=40), timeout=30)
    runtime = server.server.registry.describe("recorder").runtime
    _leave_after_the_first_piece(runtime, call)
    assert [n for n, _ in CALLS] == [4, 4]  # the first piece, and the one taken before the cancel


def test_an_oip_stream_whose_client_leaves_drops_its_queued_pieces(stub, server):
    from modelplex_client.pb import grpc_predict_v2_pb2 as oip
    from modelplex_client.pb import grpc_predict_v2_pb2_grpc as oip_grpc

    ONE_AT_A_TIME.set()
    GATE.clear()
    request = oip.ModelInferRequest(model_name="recorder")
    request.inputs.add(name="num_images", datatype="INT64", shape=[1]).contents.int64_contents.append(40)
    with grpc.insecure_channel(server.address) as channel:
        call = oip_grpc.GRPCInferenceServiceStub(channel).ModelStreamInfer(iter([request]), timeout=30)
        runtime = server.server.registry.describe("recorder").runtime
        first = _leave_after_the_first_piece(runtime, call)
    assert first.error_message == "" and first.infer_response.outputs[0].name == "images"
    assert [n for n, _ in CALLS] == [4, 4]


def _leave_after_the_first_piece(runtime, call):
    """A call of 40 images in pieces of 4: let one piece through, read its first message, cancel
    the call while the second piece waits in the model and 8 in the queue; then let the model go."""
    _wait(lambda: runtime.queued == 9)  # 10 pieces: one taken by the instance, 9 queued
    GATE.set()  # the first piece runs; the generator closes the gate on the second
    first = next(call)
    _wait(lambda: runtime.queued == 8)  # the second piece is in the model
    call.cancel()
    # The queue drops a cancelled piece when it next takes a batch; wait for the cancel to land.
    _wait(lambda: all(p.future.cancelled() for p in runtime._queue._items))
    ONE_AT_A_TIME.clear()
    GATE.set()
    _wait(lambda: runtime.active() == 0)
    return first


def test_a_generator_that_breaks_its_contract_is_internal_and_the_server_serves_on(stub):
    with pytest.raises(grpc.RpcError) as info:
        list(stub.Generate(pb.ImageGenerationGenerateRequest(model="broken", num_images=2)))
    assert info.value.code() == grpc.StatusCode.INTERNAL
    assert "generate() returned shape (3, 1, 2, 2) for 2 images of (1, 2, 2)" in info.value.details()
    assert len(list(stub.Generate(pb.ImageGenerationGenerateRequest(model="recorder", num_images=1)))) == 1


def _wait(condition, timeout: float = 30.0) -> None:
    """Poll until true (a bound against hanging, not a measure of speed)."""
    end = time.monotonic() + timeout
    while not condition():
        assert time.monotonic() < end, "the condition did not come true"
        time.sleep(0.01)


def test_values_past_the_unit_range_are_clipped_and_nan_fails_the_batch(stub):
    float32 = pb.ImageOutput(format=pb.IMAGE_FORMAT_FLOAT32)
    request = pb.ImageGenerationGenerateRequest(
        model="wild", num_images=2, latent=[0.5, 0, 0, 0, 0.0625, 0, 0, 0], output=float32
    )
    got = list(stub.Generate(request, timeout=30))
    assert [r.image.tensor.data for r in got] == [
        torch.full((4,), value).numpy().astype("<f4").tobytes() for value in (1.0, 0.625)
    ]
    with pytest.raises(grpc.RpcError) as e:
        list(
            stub.Generate(
                pb.ImageGenerationGenerateRequest(model="wild", num_images=1, latent=[-0.5, 0, 0, 0]), timeout=30
            )
        )
    assert e.value.code() == grpc.StatusCode.INTERNAL and "NaN" in e.value.details()
    again = pb.ImageGenerationGenerateRequest(model="wild", num_images=1, latent=[0.05, 0, 0, 0])
    assert len(list(stub.Generate(again, timeout=30))) == 1  # it serves on
