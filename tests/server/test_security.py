"""Who may call what: TLS, mutual TLS, bearer tokens with scopes, and the start-up refusal
of a management API open to the network."""

from __future__ import annotations

import grpc
import pytest
import trustme

from modelplex.errors import ConfigError
from modelplex.testing import running_server
from modelplex_client import Client, ServerError
from modelplex_client.pb import image_classification_pb2, image_classification_pb2_grpc, models_pb2, models_pb2_grpc
from probe_plugin import PLUGINS, probe_model

INFERENCE_TOKEN = "inference-token-0123456789"
MANAGEMENT_TOKEN = "management-token-0123456789"


@pytest.fixture(scope="module")
def pki(tmp_path_factory):
    """A CA, a server certificate for 127.0.0.1/localhost, and a client certificate, as files."""
    folder = tmp_path_factory.mktemp("pki")
    ca = trustme.CA()
    server_cert = ca.issue_cert("127.0.0.1", "localhost")
    client_cert = ca.issue_cert("client@example.test")
    files = {
        "ca": folder / "ca.pem",
        "cert": folder / "server.pem",
        "key": folder / "server.key",
        "client_cert": folder / "client.pem",
        "client_key": folder / "client.key",
    }
    ca.cert_pem.write_to_path(str(files["ca"]))
    server_cert.private_key_pem.write_to_path(str(files["key"]))
    with open(files["cert"], "wb") as f:
        for blob in server_cert.cert_chain_pems:
            f.write(blob.bytes())
    client_cert.private_key_pem.write_to_path(str(files["client_key"]))
    with open(files["client_cert"], "wb") as f:
        for blob in client_cert.cert_chain_pems:
            f.write(blob.bytes())
    return files


def _classify(channel: grpc.Channel, metadata=()) -> image_classification_pb2.ClassifyResponse:  # type: ignore[no-untyped-def]
    request = image_classification_pb2.ClassifyRequest(model="probe", top_k=1)
    request.images.add().encoded = b"\x01"
    return image_classification_pb2_grpc.ImageClassificationStub(channel).Classify(
        request, timeout=20, metadata=metadata
    )


def test_tls_serves_a_client_that_trusts_the_ca_and_refuses_plaintext(pki):
    tls = {"cert_file": str(pki["cert"]), "key_file": str(pki["key"])}
    with running_server({"models": [probe_model()], "server": {"tls": tls}}, extra_plugins=PLUGINS) as server:
        credentials = grpc.ssl_channel_credentials(root_certificates=pki["ca"].read_bytes())
        with grpc.secure_channel(server.address, credentials) as channel:
            assert _classify(channel).results[0].classes[0].label == "one"
        with grpc.insecure_channel(server.address) as plain, pytest.raises(grpc.RpcError) as info:
            _classify(plain)
        assert info.value.code() == grpc.StatusCode.UNAVAILABLE


def test_mutual_tls_refuses_a_client_without_a_certificate(pki):
    tls = {"cert_file": str(pki["cert"]), "key_file": str(pki["key"]), "client_ca_file": str(pki["ca"])}
    with running_server({"models": [probe_model()], "server": {"tls": tls}}, extra_plugins=PLUGINS) as server:
        ca = pki["ca"].read_bytes()
        anonymous = grpc.ssl_channel_credentials(root_certificates=ca)
        with grpc.secure_channel(server.address, anonymous) as channel, pytest.raises(grpc.RpcError) as info:
            _classify(channel)
        assert info.value.code() == grpc.StatusCode.UNAVAILABLE
        known = grpc.ssl_channel_credentials(
            root_certificates=ca,
            private_key=pki["client_key"].read_bytes(),
            certificate_chain=pki["client_cert"].read_bytes(),
        )
        with grpc.secure_channel(server.address, known) as channel:
            assert len(_classify(channel).results) == 1


@pytest.fixture
def token_server(tmp_path):
    tokens = tmp_path / "tokens"
    tokens.write_text(f"# scopes\n{INFERENCE_TOKEN} inference\n{MANAGEMENT_TOKEN} management\n")
    config = {"models": [probe_model()], "server": {"auth": {"tokens_file": str(tokens)}}}
    with running_server(config, extra_plugins=PLUGINS) as server:
        yield server


def _code(fn) -> grpc.StatusCode:  # type: ignore[no-untyped-def]
    try:
        fn()
    except grpc.RpcError as e:
        return e.code()
    except ServerError as e:
        return e.code
    return grpc.StatusCode.OK


def test_tokens_and_scopes(token_server):
    bearer = lambda token: (("authorization", f"Bearer {token}"),)  # noqa: E731
    with grpc.insecure_channel(token_server.address) as channel:
        assert _code(lambda: _classify(channel)) == grpc.StatusCode.UNAUTHENTICATED
        assert _code(lambda: _classify(channel, bearer("not-a-token-at-all-xxxx"))) == grpc.StatusCode.UNAUTHENTICATED
        assert _code(lambda: _classify(channel, (("authorization", INFERENCE_TOKEN),))) == (
            grpc.StatusCode.UNAUTHENTICATED
        )
        assert _code(lambda: _classify(channel, bearer(INFERENCE_TOKEN))) == grpc.StatusCode.OK
        assert _code(lambda: _classify(channel, bearer(MANAGEMENT_TOKEN))) == grpc.StatusCode.OK
        stub = models_pb2_grpc.ModelRepositoryStub(channel)
        load = models_pb2.LoadModelRequest(spec="probe", model="p2", devices=["cpu"])
        assert _code(lambda: stub.LoadModel(load, timeout=20)) == grpc.StatusCode.UNAUTHENTICATED
        assert _code(lambda: stub.LoadModel(load, timeout=20, metadata=bearer(INFERENCE_TOKEN))) == (
            grpc.StatusCode.PERMISSION_DENIED
        )
        assert _code(lambda: stub.LoadModel(load, timeout=20, metadata=bearer(MANAGEMENT_TOKEN))) == grpc.StatusCode.OK
        listed = stub.ListModels(models_pb2.ListModelsRequest(), timeout=20, metadata=bearer(INFERENCE_TOKEN))
        assert {m.name for m in listed.models} == {"probe", "p2"}
    # Health checks (orchestrators' probes) need no token.
    with Client(token_server.address) as client:
        assert client.health() == "SERVING" and client.health("modelplex.model/probe") == "SERVING"


def test_a_bad_token_file_is_a_clear_startup_error(tmp_path):
    tokens = tmp_path / "tokens"
    tokens.write_text("short inference\n")
    with pytest.raises(ConfigError, match="line 1: a token must have at least 16 characters"):
        with running_server({"server": {"auth": {"tokens_file": str(tokens)}}}):
            pass
    tokens.write_text(f"{INFERENCE_TOKEN} admin\n")
    with pytest.raises(ConfigError, match="unknown scope 'admin'"):
        with running_server({"server": {"auth": {"tokens_file": str(tokens)}}}):
            pass


def test_a_network_bind_with_open_management_is_refused_at_start(tmp_path):
    with pytest.raises(ConfigError, match="no token has the management scope"):
        with running_server({"server": {"host": "0.0.0.0"}}):
            pass
    # Either of these makes it a deliberate choice.
    with running_server({"server": {"host": "0.0.0.0", "allow_runtime_loading": False}}):
        pass
    with running_server({"server": {"host": "0.0.0.0", "auth": {"allow_unauthenticated_management": True}}}):
        pass
    tokens = tmp_path / "tokens"
    tokens.write_text(f"{MANAGEMENT_TOKEN} management\n")
    with running_server({"server": {"host": "0.0.0.0", "auth": {"tokens_file": str(tokens)}}}):
        pass


def test_reload_reads_new_certificates_and_tokens(pki, tmp_path):
    """What SIGHUP does (ModelServer.reload): a new certificate for new connections, new tokens."""
    other_ca = trustme.CA()
    other = other_ca.issue_cert("127.0.0.1")
    cert, key = tmp_path / "server.pem", tmp_path / "server.key"
    cert.write_bytes(pki["cert"].read_bytes())
    key.write_bytes(pki["key"].read_bytes())
    tokens = tmp_path / "tokens"
    tokens.write_text(f"{INFERENCE_TOKEN} inference\n")
    config = {
        "models": [probe_model()],
        "server": {"tls": {"cert_file": str(cert), "key_file": str(key)}, "auth": {"tokens_file": str(tokens)}},
    }
    new_token = "a-new-token-after-reload"
    with running_server(config, extra_plugins=PLUGINS) as server:
        trusts_new = grpc.ssl_channel_credentials(root_certificates=other_ca.cert_pem.bytes())
        with grpc.secure_channel(server.address, trusts_new) as channel:
            assert _code(lambda: _classify(channel, (("authorization", f"Bearer {new_token}"),))) == (
                grpc.StatusCode.UNAVAILABLE  # the old certificate: not trusted by this client
            )
        other.private_key_pem.write_to_path(str(key))
        cert.write_bytes(b"".join(blob.bytes() for blob in other.cert_chain_pems))
        tokens.write_text(f"{new_token} inference\n")
        server.server.reload()
        with grpc.secure_channel(server.address, trusts_new) as channel:
            assert _classify(channel, (("authorization", f"Bearer {new_token}"),)).results
            assert _code(lambda: _classify(channel, (("authorization", f"Bearer {INFERENCE_TOKEN}"),))) == (
                grpc.StatusCode.UNAUTHENTICATED
            )
