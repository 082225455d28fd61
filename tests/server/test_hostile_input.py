"""What a hostile or careless caller sends: each defect found by trying it (issue 7) has a
test here, and the server keeps serving after each."""

from __future__ import annotations

import io
import os
import signal
import subprocess
import sys
import urllib.request

import grpc
import numpy as np
import pytest

from modelplex.testing import running_server
from modelplex_client import Client, ServerError
from modelplex_client.pb import common_pb2, image_classification_pb2
from probe_plugin import PLUGINS, probe_model


def _code(fn) -> tuple[grpc.StatusCode, str]:  # type: ignore[no-untyped-def]
    try:
        fn()
    except ServerError as e:
        return e.code, e.details
    except grpc.RpcError as e:
        return e.code(), e.details() or ""
    return grpc.StatusCode.OK, ""


@pytest.fixture(scope="module")
def server():
    with running_server({"models": [probe_model()]}, extra_plugins=PLUGINS) as s:
        yield s


def _still_serves(address: str) -> None:
    with Client(address, timeout=20) as client:
        assert client.classify([b"\x02"], model="probe", top_k=1)[0][0].label == "two"


def test_malformed_request_bytes_are_invalid_argument_with_one_log_line(server, caplog):
    with grpc.insecure_channel(server.address) as channel:
        raw = channel.unary_unary("/modelplex.v1.ImageClassification/Classify")
        with pytest.raises(grpc.RpcError) as info:
            raw(b"\xff\xff\xff\xff garbage", timeout=10)
    assert info.value.code() == grpc.StatusCode.INVALID_ARGUMENT
    assert "not a valid modelplex.v1.ClassifyRequest" in info.value.details()
    _still_serves(server.address)


def test_non_finite_tensors_are_refused(server):
    for bad in (np.nan, np.inf):
        values = np.zeros((1, 2, 2), dtype="<f4")
        values[0, 1, 1] = bad
        tensor = common_pb2.Tensor(shape=[1, 2, 2], dtype=common_pb2.DATA_TYPE_FLOAT32, data=values.tobytes())
        with Client(server.address) as client:
            code, details = _code(lambda t=tensor: client.classify([t], model="probe"))
        assert code == grpc.StatusCode.INVALID_ARGUMENT and "NaN or infinite" in details
    _still_serves(server.address)


def test_an_image_over_the_pixel_limit_is_refused_from_its_header(server):
    from PIL import Image

    buf = io.BytesIO()
    Image.new("1", (9000, 9000)).save(buf, format="PNG")  # 81 MP in a few KB
    assert len(buf.getvalue()) < 100_000
    with Client(server.address) as client:
        code, details = _code(lambda: client.classify([buf.getvalue()], model="probe"))
    assert code == grpc.StatusCode.INVALID_ARGUMENT
    assert "9000 x 9000 = 81,000,000 pixels" in details and "max_image_pixels" in details


def test_model_names_are_restricted_to_a_safe_set(server):
    with Client(server.address) as client:
        for name in ("a/b", "line\nbreak", "\u202eevil", "-dash", "x" * 200):
            code, details = _code(lambda n=name: client.load_model("probe", name=n, devices=["cpu"]))
            assert code == grpc.StatusCode.INVALID_ARGUMENT, name
            assert "must be 1-128 characters" in details or "at most 128 characters" in details
        assert [m.name for m in client.list_models()] == ["probe"]


def test_a_sizing_setting_is_bounded(server):
    with Client(server.address) as client:
        code, details = _code(
            lambda: client.load_model("resnet18", name="huge", weights="random", settings={"num_classes": 1e9})
        )
    assert code == grpc.StatusCode.INVALID_ARGUMENT and "settings.num_classes" in details


def test_health_names_of_failed_and_unloaded_models_do_not_stay(server):
    with Client(server.address, timeout=30) as client:
        code, _ = _code(
            lambda: client.load_model(
                "probe", name="dies", devices=["cpu"], instances_per_device=2, settings={"fail_second_load": True}
            )
        )
        assert code != grpc.StatusCode.OK
        assert client.health("modelplex.model/dies") == "SERVICE_UNKNOWN"
        client.load_model("probe", name="brief", devices=["cpu"])
        assert client.health("modelplex.model/brief") == "SERVING"
        client.unload_model("brief")
        assert client.health("modelplex.model/brief") == "SERVICE_UNKNOWN"


def test_checkpoint_paths_are_confined_and_not_shown(tmp_path):
    from probe_plugin import PROBES

    inside = tmp_path / "weights" / "model.pt"
    inside.parent.mkdir()
    inside.write_bytes(b"\x00")
    config = {"models": [], "server": {"weights_roots": [str(inside.parent)]}}
    with running_server(config, extra_plugins=PLUGINS) as s, Client(s.address, timeout=30) as client:
        answers = {
            path: _code(lambda p=path: client.load_model("probe", name="c", weights=p, devices=["cpu"]))
            for path in ("/etc/passwd", "/etc", "/no/such/file.pt", str(inside.parent / ".." / "escape.pt"))
        }
        assert {code for code, _ in answers.values()} == {grpc.StatusCode.PERMISSION_DENIED}
        assert len({details for _, details in answers.values()}) == 1  # the same words for all: no oracle
        info = client.load_model("probe", name="c", weights=str(inside), devices=["cpu"])
        assert info.weights.uri == "model.pt"  # the file's name, not the server's folders
    PROBES.clear()


def test_a_huge_prompt_is_refused_before_it_is_tokenized():
    from text_models import text_model

    with running_server({"models": [text_model("gpt2", "gpt2", "gpt2")]}) as s, Client(s.address) as client:
        code, details = _code(lambda: client.complete("x" * 5_000_000, model="gpt2", max_new_tokens=1))
        assert code == grpc.StatusCode.INVALID_ARGUMENT
        assert "5,000,000 characters" in details and "max_prompt_chars" in details
        assert client.complete("hello", model="gpt2", max_new_tokens=1).usage.completion_tokens == 1


def test_streams_per_model_are_limited():
    from text_models import text_model

    config = {"models": [text_model("gpt2", "gpt2", "gpt2")], "server": {"max_streams_per_model": 1}}
    with running_server(config) as s, Client(s.address, timeout=60) as client:
        first = client.generate("hello", model="gpt2", max_new_tokens=100)
        next(first)
        code, details = _code(lambda: list(client.generate("hello", model="gpt2", max_new_tokens=2)))
        assert code == grpc.StatusCode.RESOURCE_EXHAUSTED and "max_streams_per_model" in details
        first.close()


def test_a_stream_past_its_maximum_duration_is_ended():
    import time

    from text_models import text_model

    config = {"models": [text_model("gpt2", "gpt2", "gpt2")], "server": {"max_stream_duration_s": 0.5}}
    with running_server(config) as s, Client(s.address, timeout=60) as client:
        generator = s.server.registry.describe("gpt2").instances[0].model
        step = generator.step

        def slow_step(sequences):  # type: ignore[no-untyped-def]
            time.sleep(0.05)  # 100 tokens take at least 5 s: ten times the maximum
            return step(sequences)

        generator.step = slow_step
        try:
            code, details = _code(lambda: list(client.generate("hello", model="gpt2", max_new_tokens=100)))
        finally:
            del generator.step
        assert code == grpc.StatusCode.DEADLINE_EXCEEDED and "maximum duration of 0.5 s" in details
        assert client.complete("hello", model="gpt2", max_new_tokens=2).usage.completion_tokens == 2


def test_metrics_are_scraped_after_calls():
    from text_models import text_model

    config = {
        "models": [probe_model(), text_model("gpt2", "gpt2", "gpt2")],
        "server": {"metrics_port": 0},
    }
    with running_server(config, extra_plugins=PLUGINS) as s, Client(s.address, timeout=30) as client:
        client.classify([b"\x01", b"\x02"], model="probe")
        list(client.generate("hello", model="gpt2", max_new_tokens=3))
        _code(lambda: client.classify([], model="probe"))
        port = s.server.metrics.port
        text = urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=10).read().decode()
    expected = [
        'modelplex_requests_total{code="OK",method="/modelplex.v1.ImageClassification/Classify",model="probe"} 1.0',
        'modelplex_requests_total{code="INVALID_ARGUMENT",method="/modelplex.v1.ImageClassification/Classify",'
        'model="probe"} 1.0',
        'modelplex_request_seconds_count{method="/modelplex.v1.TextGeneration/Generate",model="gpt2"} 1.0',
        'modelplex_stream_first_message_seconds_count{method="/modelplex.v1.TextGeneration/Generate",model="gpt2"} 1.0',
        'modelplex_stream_inter_message_seconds_count{method="/modelplex.v1.TextGeneration/Generate",model="gpt2"} 2.0',
        'modelplex_model_outputs_total{model="gpt2",unit="tokens"} 3.0',
        'modelplex_model_outputs_total{model="probe",unit="images"} 2.0',
        'modelplex_batch_size_count{model="probe"} 1.0',
        'modelplex_model_active{model="gpt2"} 0.0',
        'modelplex_instance_memory_bytes{device="cpu",model="probe"} 1234.0',
    ]
    missing = [line for line in expected if line not in text]
    assert not missing, missing


def test_sigterm_exits_within_grace_plus_the_bound_though_a_plugin_is_stuck(tmp_path):
    """The plugin's classify never returns until released; the process exits anyway (and only
    then is the work released, so the exit cannot be the work ending)."""
    import time

    import slow_plugin

    site = slow_plugin.install(tmp_path / "site")
    config = tmp_path / "stuck.toml"
    config.write_text(
        "[server]\nport = 0\ngrace_period_s = 0.2\nshutdown_bound_s = 0.5\n"
        '[[models]]\nspec = "slow-classify"\nweights = "random"\ndevices = ["cpu"]\n'
        f'settings = {{ dir = "{tmp_path}" }}\n'
    )
    env = {**os.environ, "PYTHONPATH": str(site)}
    proc = subprocess.Popen(
        [sys.executable, "-m", "modelplex.server.cli", "--config", str(config)],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        env=env,
    )
    try:
        line = proc.stdout.readline() if proc.stdout else ""
        assert "serving on" in line, proc.stderr.read() if proc.stderr else ""
        address = line.split(" on ")[1].split()[0]
        with grpc.insecure_channel(address) as channel:
            request = image_classification_pb2.ClassifyRequest(model="slow-classify")
            request.images.add().encoded = b"x"
            call = channel.unary_unary(
                "/modelplex.v1.ImageClassification/Classify",
                request_serializer=image_classification_pb2.ClassifyRequest.SerializeToString,
            ).future(request, timeout=120)
            deadline = time.monotonic() + 60  # a bound against hanging, not a measure
            while not (tmp_path / "classifying").exists():
                assert time.monotonic() < deadline
                time.sleep(0.01)
            proc.send_signal(signal.SIGTERM)
            out, err = proc.communicate(timeout=60)
            assert call.exception() is not None  # the in-flight call was ended, not answered
    finally:
        (tmp_path / "release").touch()
        proc.kill()
    assert proc.returncode == 0, err
    assert "exiting without it" in err


def test_a_load_that_cannot_fit_is_refused_before_anything_is_built(server):
    # 90,000 classes fit the setting's bound, but a head of that size on every one of 64
    # instances does not fit this machine: refused from the estimate, nothing allocated.
    with Client(server.address, timeout=30) as client:
        code, details = _code(
            lambda: client.load_model(
                "vgg19",
                name="big",
                weights="random",
                devices=["cpu"],
                instances_per_device=64,
                settings={"num_classes": 90_000},
            )
        )
        assert code == grpc.StatusCode.RESOURCE_EXHAUSTED and "GiB on cpu" in details
        assert [m.name for m in client.list_models()] == ["probe"]


def test_file_paths_in_settings_are_confined_like_checkpoints(tmp_path):
    """Settings fields marked ServerPath (a lexicon, an LM, a vocoder checkpoint, a chat
    template file) name server files: LoadModel may name them only under the weights roots."""
    from modelplex_client.pb import speech_recognition_pb2
    from speech_models import speech_dirs
    from text_models import model_dirs

    roots = tmp_path / "weights"
    roots.mkdir()
    w2v, gpt = speech_dirs()["w2v"], model_dirs()["gpt2"]
    config = {"models": [], "server": {"weights_roots": [str(w2v.parent), str(gpt.parent), str(roots)]}}
    with running_server(config) as s, Client(s.address, timeout=60) as client:
        asks = {
            "lexicon": lambda p: client.load_model(
                "hf-wav2vec2",
                name="asr",
                weights=str(w2v),
                task_settings=speech_recognition_pb2.SpeechRecognitionSettings(decoder="beam", lexicon=p),
            ),
            "chat template": lambda p: client.load_model(
                "causal-lm", name="lm", weights=str(gpt), settings={"chat_template_file": p}
            ),
            "vocoder": lambda p: client.load_model(
                "tacotron2-waveglow", name="tts", weights=str(roots / "t.pt"), settings={"vocoder_weights": p}
            ),
        }
        answers = {
            (what, path): _code(lambda a=ask, p=path: a(p))
            for what, ask in asks.items()
            for path in ("/etc/passwd", "/no/such/file", "etc/passwd", str(roots / ".." / "escape.txt"))
        }
        assert {code for code, _ in answers.values()} == {grpc.StatusCode.PERMISSION_DENIED}, answers
        assert {d for (what, _), (_, d) in answers.items() if what == "lexicon"} == {
            "LoadModel may name file paths (lexicon) only under the server's weights roots (server.weights_roots)"
        }
        # Under a root, the path reaches the plugin (which says the file is missing).
        code, details = _code(lambda: asks["lexicon"](str(roots / "lexicon.txt")))
        assert code == grpc.StatusCode.FAILED_PRECONDITION and "lexicon.txt does not exist" in details
        assert client.list_models() == []
