"""The text plugin: cheap registration, its specs and settings, loading from a folder or
the Hugging Face cache, and failing fast with a useful message when the weights are not there."""

from __future__ import annotations

import shutil
import subprocess
import sys
import time

import pytest

from modelplex import ModelLoadError, Task, WeightsNotFoundError
from modelplex.server.config import ModelConfig
from modelplex.testing import running_server
from modelplex_client import Client
from text_models import model_dirs, reference, text_model

SPECS = [
    "gpt2",
    "gpt2-medium",
    "gpt2-large",
    "gpt2-xl",
    "distilgpt2",
    "causal-lm",
    "t5-small",
    "t5-base",
    "t5-large",
    "flan-t5-small",
    "flan-t5-base",
    "flan-t5-large",
    "flan-t5-xl",
    "seq2seq-lm",
    "tiny-gpt2",
]


def test_registers_every_spec_without_importing_torch():
    code = (
        "import sys, modelplex_text.plugin as p; specs = []; p.register_models(specs.append);"
        "print(' '.join(s.name for s in specs));"
        "assert 'torch' not in sys.modules and 'transformers' not in sys.modules, 'heavy import at registration'"
    )
    out = subprocess.run([sys.executable, "-c", code], check=True, capture_output=True, text=True)
    assert out.stdout.split() == SPECS


def test_the_entry_point_is_discovered():
    from importlib.metadata import entry_points

    (ep,) = [e for e in entry_points(group="modelplex") if e.name == "text"]
    assert ep.value == "modelplex_text.plugin" and ep.dist.name == "modelplex-text"


def test_specs_and_variants():
    from modelplex_text.plugin import build_specs

    specs = {s.name: s for s in build_specs()}
    assert all(s.task == Task.TEXT_GENERATION for s in specs.values())
    assert specs["gpt2"].variant(None).weights == "openai-community/gpt2"
    assert specs["flan-t5-xl"].variant(None).weights == "google/flan-t5-xl"
    assert specs["t5-small"].variant(None).meta.context_length == 512
    assert not specs["causal-lm"].variants and not specs["seq2seq-lm"].variants
    assert not specs["tiny-gpt2"].accepts_weight_ids


def test_settings_are_validated():
    from modelplex_text.settings import TextSettings

    assert TextSettings().model_dump() == {
        "dtype": "float32",
        "cpu_prepack": True,
        "hub_id": None,
        "context_length": None,
        "chat_template": None,
        "chat_template_file": None,
        "prefill_chunk_tokens": 256,
        "prefix_cache_tokens": 0,
        "prefix_block_tokens": 32,
    }
    bad_values = (
        {"dtype": "int8"},
        {"context_length": 1},
        {"max_new_tokens": 100},
        {"unknown": 1},
        {"prefill_chunk_tokens": 8},
        {"prefix_cache_tokens": -1},
        {"chat_template": ""},
    )
    for bad in bad_values:
        with pytest.raises(ValueError):
            TextSettings.model_validate(bad)


def load(server, **fields):
    return server.call(server.server.registry.load(ModelConfig.model_validate({"devices": ["cpu"], **fields})))


@pytest.fixture(scope="module")
def server():
    with running_server({}) as s:
        yield s


@pytest.fixture
def empty_hf_cache(tmp_path, monkeypatch):
    from huggingface_hub import constants

    monkeypatch.setattr(constants, "HF_HUB_CACHE", str(tmp_path / "hub"))
    return tmp_path / "hub"


def test_uncached_hub_model_fails_fast_saying_what_to_do(server, empty_hf_cache, monkeypatch):
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    started = time.monotonic()
    with pytest.raises(WeightsNotFoundError) as info:
        load(server, spec="gpt2")
    assert time.monotonic() - started < 5
    message = str(info.value)
    assert "openai-community/gpt2 is not in the local Hugging Face cache" in message
    assert "HF_HUB_OFFLINE is set" in message and "hf download openai-community/gpt2" in message
    assert "save_pretrained" in message


def test_missing_folder_fails_fast(server, tmp_path):
    with pytest.raises(WeightsNotFoundError, match="does not exist"):
        load(server, spec="causal-lm", weights=str(tmp_path / "nothing"))
    (tmp_path / "empty").mkdir()
    with pytest.raises(WeightsNotFoundError, match="has no config.json: save the model there"):
        load(server, spec="causal-lm", name="x", weights=str(tmp_path / "empty"))


def test_generic_spec_needs_a_model(server):
    with pytest.raises(WeightsNotFoundError, match="settings.hub_id"):
        load(server, spec="seq2seq-lm")


def test_half_precision_is_for_gpus(server):
    with pytest.raises(ModelLoadError, match="dtype float16 is for CUDA devices"):
        load(server, spec="gpt2", weights=str(model_dirs()["gpt2"]), settings={"dtype": "float16"})


def fake_hub_cache(root, hub_id, folder):
    """Lay ``folder`` out as the Hugging Face cache does after a download of ``hub_id``."""
    revision = "0" * 40
    repo = root / f"models--{hub_id.replace('/', '--')}"
    (repo / "refs").mkdir(parents=True)
    (repo / "refs" / "main").write_text(revision)
    shutil.copytree(folder, repo / "snapshots" / revision)


def test_pretrained_and_random_from_the_cache(server, empty_hf_cache, monkeypatch):
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    fake_hub_cache(empty_hf_cache, "modelplex-test/tiny-gpt2", model_dirs()["gpt2"])
    settings = {"hub_id": "modelplex-test/tiny-gpt2"}
    load(server, spec="gpt2", name="cached", settings=settings)
    load(server, spec="gpt2", name="random", weights="random", settings=settings)
    with Client(server.address, timeout=30) as client:
        pretrained = client.complete("hello world", model="cached", max_new_tokens=8)
        random = client.complete("hello world", model="random", max_new_tokens=8)
        assert list(pretrained.token_ids) == reference("gpt2", "hello world", 8)
        assert random.token_ids != pretrained.token_ids
        assert client.get_model("random").weights.source == 3  # RANDOM, reported as such
        for name in ("cached", "random"):
            client.unload_model(name)


def test_a_hub_id_as_weights_loads_from_the_cache(server, empty_hf_cache, monkeypatch):
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    fake_hub_cache(empty_hf_cache, "modelplex-test/tiny-gpt2", model_dirs()["gpt2"])
    load(server, spec="causal-lm", name="by-id", weights="modelplex-test/tiny-gpt2")
    with Client(server.address, timeout=30) as client:
        info = client.get_model("by-id")
        assert info.weights.source == 1 and info.weights.uri == "modelplex-test/tiny-gpt2"  # PRETRAINED
        out = client.complete("hello world", model="by-id", max_new_tokens=8)
        assert list(out.token_ids) == reference("gpt2", "hello world", 8)
        client.unload_model("by-id")
    with pytest.raises(WeightsNotFoundError, match="modelplex-test/not-here is not in the local Hugging Face cache"):
        load(server, spec="causal-lm", name="missing", weights="modelplex-test/not-here")
    # a spec of one model takes no id: the value stays a (missing) path
    with pytest.raises(WeightsNotFoundError, match="checkpoint modelplex-test/tiny-gpt2 does not exist"):
        load(server, spec="gpt2", name="gpt2-by-id", weights="modelplex-test/tiny-gpt2")


def test_t5_loads_through_the_generic_seq2seq_spec(server):
    load(server, **text_model("any-t5", "seq2seq-lm", "t5"))
    with Client(server.address, timeout=30) as client:
        out = client.complete("translate English to German: hello", model="any-t5", max_new_tokens=6)
        assert list(out.token_ids) == reference("t5", "translate English to German: hello", 6)
        client.unload_model("any-t5")


def test_tiny_gpt2_needs_random_weights_and_generates():
    from modelplex.testing import running_server
    from modelplex_client import Client

    with running_server({"models": [{"spec": "tiny-gpt2", "weights": "random", "devices": ["cpu"]}]}) as server:
        with Client(server.address, timeout=60) as client:
            done = client.complete("hello", model="tiny-gpt2", max_new_tokens=3)
            assert done.usage.completion_tokens >= 1 and done.usage.prompt_tokens == 5  # one token a byte
            error = None
            try:
                client.load_model("tiny-gpt2", name="again", weights="pretrained", devices=["cpu"])
            except Exception as e:  # noqa: BLE001 - the ServerError is checked below
                error = e
            assert error is not None and 'use weights = "random"' in str(error)
