"""A model's task settings: keys of its config entry, or LoadModel's typed task_settings,
validated by its task's settings model; the plugin's settings arrive as a Struct or JSON,
and an unknown or mistyped key is refused, never dropped."""

from __future__ import annotations

import grpc
import pytest

from modelplex.errors import ConfigError
from modelplex_client import Client, ServerError
from modelplex_client.pb import image_classification_pb2, models_pb2, text_generation_pb2
from probe_plugin import probe_model


@pytest.mark.parametrize(
    ("fields", "message"),
    [
        ({"max_batch_size": 0}, "max_batch_size: Input should be greater than or equal to 1"),
        ({"max_batch_sise": 4}, "max_batch_sise: unknown key (task image_classification takes: max_batch_size"),
        ({"max_new_tokens": 4}, "max_new_tokens: unknown key"),
    ],
)
def test_bad_task_settings_in_the_config_fail_startup_naming_the_key(probe_server, fields, message):
    with pytest.raises(ConfigError, match="model 'probe'") as info:
        probe_server(probe_model(**fields))
    assert message in str(info.value)


def test_task_settings_reach_the_runtime_and_model_info(probe_server):
    server = probe_server(probe_model(max_batch_size=3, max_images_per_request=2))
    with Client(server.address) as client:
        info = client.get_model("probe")
        extra = image_classification_pb2.ImageClassificationInfo()
        assert info.task_info.Unpack(extra)
        assert info.max_batch_size == 3 and extra.max_images_per_request == 2


def _load_error(client: Client, **request: object) -> ServerError:
    with pytest.raises(ServerError) as info:
        client.load_model("probe", name="p2", devices=["cpu"], **request)
    return info.value


def test_load_model_refuses_unknown_mistyped_and_foreign_settings(probe_server):
    server = probe_server()
    with Client(server.address, timeout=30) as client:
        cases = {
            "unknown": _load_error(client, settings={"no_such_setting": 1}),
            "mistyped": _load_error(client, settings={"fail": "sometimes"}),
            "foreign task": _load_error(
                client, task_settings=text_generation_pb2.TextGenerationSettings(max_new_tokens=3)
            ),
            "bad value": _load_error(
                client, task_settings=image_classification_pb2.ImageClassificationSettings(max_batch_size=0)
            ),
        }
        for name, error in cases.items():
            assert error.code == grpc.StatusCode.INVALID_ARGUMENT, name
        assert "no_such_setting: unknown key" in cases["unknown"].details
        assert "settings.fail" in cases["mistyped"].details
        assert "modelplex.v1.ImageClassificationSettings" in cases["foreign task"].details
        assert "max_batch_size" in cases["bad value"].details
        # A Struct and JSON both reach the plugin's settings model; both at once are refused.
        request = models_pb2.LoadModelRequest(spec="probe", model="p3", devices=["cpu"], settings_json='{"a": 1}')
        request.settings.update({"fail": False})
        with pytest.raises(grpc.RpcError) as raw:
            client._models.LoadModel(request)
        assert raw.value.code() == grpc.StatusCode.INVALID_ARGUMENT
        assert client.list_models() == []
        ok = client.load_model(
            "probe",
            name="p4",
            devices=["cpu"],
            settings={"fail": False},
            task_settings=image_classification_pb2.ImageClassificationSettings(max_batch_size=2),
        )
        assert ok.max_batch_size == 2
