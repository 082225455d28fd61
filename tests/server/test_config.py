"""Configuration: TOML, typed validation with errors naming the key, env and CLI overrides."""

from __future__ import annotations

import pytest

from modelplex.errors import ConfigError
from modelplex.server.cli import config_from_args, parser
from modelplex.server.config import load_config


def write(tmp_path, text):
    p = tmp_path / "modelplex.toml"
    p.write_text(text)
    return p


def test_demo_profile_is_the_default_and_uses_random_weights():
    config = load_config(None, environ={})
    assert config.server.port == 50051
    assert config.models and all(m.weights == "random" for m in config.models)


def test_full_file(tmp_path):
    config = load_config(
        write(
            tmp_path,
            """
[server]
port = 0
allow_runtime_loading = false
[plugins]
allow = ["vision"]
[[models]]
spec = "resnet50"
name = "r50"
variant = "IMAGENET1K_V2"
devices = ["cuda:0", "cuda:1"]
instances_per_device = 2
max_batch_size = 16
max_batch_delay_ms = 2.5
settings = { channels_last = true }
""",
        ),
        environ={},
    )
    m = config.models[0]
    assert (m.served_name, m.variant, m.devices, m.instances_per_device) == (
        "r50",
        "IMAGENET1K_V2",
        ["cuda:0", "cuda:1"],
        2,
    )
    assert m.settings == {"channels_last": True}
    assert config.server.allow_runtime_loading is False and config.plugins.allow == ["vision"]


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("[server]\nprot = 1\n", "server.prot: unknown key"),
        ("[server]\nport = 'x'\n", "server.port: Input should be a valid integer"),
        ("[server]\nport = 70000\n", "server.port: Input should be less than or equal to 65535"),
        ("[[models]]\nname = 'x'\n", "models.0.spec: Field required"),
        ("[[models]]\nspec = 'a'\n[[models]]\nspec = 'a'\n", "two models are named 'a'"),
        ("[[models]]\nspec = 'a'\ndevices = []\n", "must list at least one device"),
        (
            "[[models]]\nspec = 'a'\ndevices = ['cpu', 'cpu', 'cpu']\ninstances_per_device = 32\n",
            "3 devices x 32 instances_per_device = 96 instances; at most 64 per model",
        ),
        ("[server\n", "is not valid TOML"),
    ],
)
def test_bad_config_names_the_key(tmp_path, text, message):
    with pytest.raises(ConfigError) as info:
        load_config(write(tmp_path, text), environ={})
    assert message in str(info.value)
    assert "modelplex.toml" in str(info.value)


def test_weights_typo_is_not_taken_for_a_file(probe_server):
    with pytest.raises(ConfigError, match="weights 'pretraind' is neither"):
        probe_server({"spec": "probe", "weights": "pretraind", "devices": ["cpu"]})


def test_cli_device_without_model_is_an_error():
    with pytest.raises(ConfigError, match="apply to --model"):
        config_from_args(parser().parse_args(["--device", "cpu"]))


def test_a_section_that_is_not_a_table(tmp_path):
    with pytest.raises(ConfigError, match="plugins: must be a table"):
        load_config(write(tmp_path, 'plugins = ["x"]\n'), environ={"MODELPLEX_PLUGINS__STRICT": "true"})
    args = parser().parse_args(["--config", str(write(tmp_path, 'server = "x"\n')), "--port", "1"])
    with pytest.raises(ConfigError, match="server: must be a table"):
        config_from_args(args)


def test_a_file_that_is_not_utf8(tmp_path):
    path = tmp_path / "binary.toml"
    path.write_bytes(b"[server]\nhost = '\xff'\n")
    with pytest.raises(ConfigError, match="is not UTF-8 text"):
        load_config(path, environ={})


def test_missing_file():
    with pytest.raises(ConfigError, match="cannot read config file /nonexistent.toml"):
        load_config("/nonexistent.toml", environ={})  # type: ignore[arg-type]


def test_environment_overrides(tmp_path):
    env = {"MODELPLEX_SERVER__PORT": "6000", "MODELPLEX_PLUGINS__BLOCK": "a, b", "MODELPLEX_OTHER": "x"}
    config = load_config(write(tmp_path, "[server]\nport = 1\n"), environ=env)
    assert config.server.port == 6000 and config.plugins.block == ["a", "b"]
    with pytest.raises(ConfigError, match="server.bogus: unknown key") as info:
        load_config(None, environ={"MODELPLEX_SERVER__BOGUS": "1"})
    assert "environment overrides" in str(info.value)


def test_cli_flags_override_file_and_replace_models(tmp_path):
    path = write(tmp_path, "[server]\nport = 1\n[[models]]\nspec = 'x'\n")
    args = parser().parse_args(
        [
            "--config",
            str(path),
            "--port",
            "7",
            "--model",
            "resnet18",
            "--weights",
            "random",
            "--device",
            "cpu",
        ]
    )
    config = config_from_args(args)
    assert config.server.port == 7
    assert [(m.spec, m.weights, m.devices) for m in config.models] == [("resnet18", "random", ["cpu"])]
