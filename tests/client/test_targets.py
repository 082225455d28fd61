"""The client's channel targets and service config: one address as it is, a list as one
static round-robin list, and retries of UNAVAILABLE for the idempotent calls only."""

from __future__ import annotations

import json

import pytest

from modelplex_client._requests import channel_options, channel_target, service_config


def test_one_address_or_uri_is_kept_as_it_is():
    assert channel_target("10.1.2.3:50051") == "10.1.2.3:50051"
    assert (
        channel_target("dns:///modelplex-headless.default.svc:50051") == "dns:///modelplex-headless.default.svc:50051"
    )


def test_a_list_becomes_one_static_list_with_names_resolved():
    assert channel_target("127.0.0.1:1, 127.0.0.2:2,127.0.0.3:3") == "ipv4:127.0.0.1:1,127.0.0.2:2,127.0.0.3:3"
    assert channel_target("localhost:7,127.0.0.2:7") == "ipv4:127.0.0.1:7,127.0.0.2:7"
    assert channel_target("[::1]:5,[::1]:6") == "ipv6:[::1]:5,[::1]:6"


@pytest.mark.parametrize(
    ("servers", "words"),
    [
        ("127.0.0.1,127.0.0.2:1", "not host:port"),
        ("127.0.0.1:1,[::1]:2", "mixes IPv4 and IPv6"),
        ("dns:///a:1,127.0.0.1:2", "give a URI on its own"),
        (",", "no server address"),
    ],
)
def test_a_bad_list_is_refused_saying_why(servers, words):
    with pytest.raises(ValueError, match=words):
        channel_target(servers)


def test_the_service_config_balances_and_retries_only_idempotent_calls():
    config = json.loads(service_config())
    assert config["loadBalancingConfig"] == [{"round_robin": {}}]
    [method] = config["methodConfig"]
    assert method["retryPolicy"]["retryableStatusCodes"] == ["UNAVAILABLE", "CANCELLED"]
    names = method["name"]
    assert {"service": "modelplex.v1.ImageClassification"} in names
    assert {"service": "inference.GRPCInferenceService", "method": "ModelInfer"} in names
    repository = {n.get("method") for n in names if n["service"] == "modelplex.v1.ModelRepository"}
    assert repository == {"ListModels", "GetModel", "ListPlugins"}  # never LoadModel or UnloadModel
    assert not any(n["service"] == "modelplex.v1.SpeechRecognition" and "method" not in n for n in names)
    assert ("grpc.service_config", service_config()) in channel_options(64)
