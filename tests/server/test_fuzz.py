"""Random requests for every RPC of every task the server serves, and random bytes: every
answer is a proper status with a message (never UNKNOWN), and the server still serves.

The requests are built from each method's input descriptor, so a task added later is fuzzed
with no change here. Bounded: a fixed number of examples per method, no deadline."""

from __future__ import annotations

import grpc
import pytest
from google.protobuf import descriptor_pool, message_factory
from google.protobuf.descriptor import FieldDescriptor, MethodDescriptor
from hypothesis import HealthCheck, example, given, settings
from hypothesis import strategies as st

from modelplex.server.config import load_config
from modelplex.testing import running_server
from modelplex_client import Client

EXAMPLES = 25
ALLOWED = set(grpc.StatusCode) - {grpc.StatusCode.UNKNOWN}


@pytest.fixture(scope="module")
def server():
    config = load_config(None, environ={}, overrides={"server": {"port": 0, "allow_runtime_loading": False}})
    with running_server(config) as s:
        yield s


def _methods(server) -> list[MethodDescriptor]:  # type: ignore[no-untyped-def]
    pool = descriptor_pool.Default()
    names = ["modelplex.v1.ModelRepository"]
    for task, _plugin in server.server.plugins.tasks.values():
        names.extend(task.services)
    return [m for name in names for m in pool.FindServiceByName(name).methods]


_INTS = st.one_of(st.integers(-3, 24), st.sampled_from([0, -(2**31), 2**31 - 1]))
_FLOATS = st.one_of(st.floats(-2, 2), st.sampled_from([0.0, float("nan"), float("inf"), -1e30, 1e30]))


def _message(descriptor, models: list[str], depth: int = 0):  # type: ignore[no-untyped-def]
    """A strategy of messages of ``descriptor`` with random values in every field."""
    cls = message_factory.GetMessageClass(descriptor)
    fields = {}
    for field in descriptor.fields:
        value = _value(field, models, depth)
        if value is None:
            continue
        if field.is_repeated:
            value = st.lists(value, max_size=3)
        # Mostly unset, so that some requests are valid and reach the model; a model name mostly set.
        fields[field.name] = value if field.name == "model" else st.one_of(st.none(), st.none(), st.none(), value)

    def build(values: dict) -> object:
        msg = cls()
        for name, value in values.items():
            if value is None:
                continue
            field = descriptor.fields_by_name[name]
            try:
                if field.is_repeated:
                    target = getattr(msg, name)
                    for item in value:
                        target.add().CopyFrom(item) if field.message_type else target.append(item)
                elif field.message_type:
                    getattr(msg, name).CopyFrom(value)
                else:
                    setattr(msg, name, value)
            except (ValueError, TypeError):  # e.g. a map field, or a value the type refuses
                continue
        return msg

    return st.fixed_dictionaries(fields).map(build)


def _value(field, models: list[str], depth: int):  # type: ignore[no-untyped-def]
    t = field.type
    if t == FieldDescriptor.TYPE_MESSAGE:
        if (
            depth >= 2
            or field.message_type.GetOptions().map_entry
            or field.message_type.full_name.startswith("google.")
        ):
            return None
        return _message(field.message_type, models, depth + 1)
    if t in (FieldDescriptor.TYPE_STRING,):
        if field.name == "model":
            return st.one_of(st.sampled_from(models), st.sampled_from(models), st.text(max_size=20))
        return st.text(max_size=40)
    if t == FieldDescriptor.TYPE_BYTES:
        return st.binary(max_size=300)
    if t == FieldDescriptor.TYPE_BOOL:
        return st.booleans()
    if t in (FieldDescriptor.TYPE_FLOAT, FieldDescriptor.TYPE_DOUBLE):
        return _FLOATS
    if t == FieldDescriptor.TYPE_ENUM:
        return st.integers(-1, len(field.enum_type.values) + 1)
    if t in (
        FieldDescriptor.TYPE_UINT32,
        FieldDescriptor.TYPE_UINT64,
        FieldDescriptor.TYPE_FIXED32,
        FieldDescriptor.TYPE_FIXED64,
    ):
        return st.integers(0, 24) | st.just(2**32 - 1)
    return _INTS


def _call(channel: grpc.Channel, method: MethodDescriptor, payloads: list[bytes]) -> grpc.StatusCode:
    path = f"/{method.containing_service.full_name}/{method.name}"
    kwargs = {"request_serializer": None, "response_deserializer": None}
    try:
        if method.client_streaming and method.server_streaming:
            for _ in channel.stream_stream(path, **kwargs)(iter(payloads), timeout=30):
                pass
        elif method.client_streaming:
            channel.stream_unary(path, **kwargs)(iter(payloads), timeout=30)
        elif method.server_streaming:
            for _ in channel.unary_stream(path, **kwargs)(payloads[0], timeout=30):
                pass
        else:
            channel.unary_unary(path, **kwargs)(payloads[0], timeout=30)
    except grpc.RpcError as e:
        assert e.details(), f"{path}: {e.code().name} without a message"
        return e.code()
    return grpc.StatusCode.OK


def _plausible(method: MethodDescriptor, models: list[str]) -> object:
    """A request with a served model and ordinary text: one example the fuzzer always tries, so
    that the test can check random requests reach the models and not only the validation."""
    msg = message_factory.GetMessageClass(method.input_type)()
    for field in method.input_type.fields:
        if field.name == "model" and models:
            msg.model = models[-1]
        elif field.name in ("prompt", "text") and field.type == FieldDescriptor.TYPE_STRING:
            setattr(msg, field.name, "hello there.")
        elif field.name == "max_new_tokens":
            msg.max_new_tokens = 2
        elif field.name == "num_images":
            msg.num_images = 1
    return msg


def _fuzz_method(channel, method, request, seen, models):  # type: ignore[no-untyped-def]
    @settings(max_examples=EXAMPLES, deadline=None, suppress_health_check=list(HealthCheck), database=None)
    @example([_plausible(method, models)])
    @given(st.lists(request, min_size=1, max_size=3))
    def fuzz(messages):  # type: ignore[no-untyped-def]
        code = _call(channel, method, [m.SerializeToString() for m in messages])
        seen.setdefault(method.full_name, set()).add(code)
        assert code in ALLOWED, f"{method.full_name}: {code}"

    fuzz()


def test_random_requests_get_proper_statuses(server):
    with Client(server.address) as client:
        infos = client.list_models()
    models = [m.name for m in infos]
    task_of_service = {s: task.id for task, _ in server.server.plugins.tasks.values() for s in task.services}
    methods = _methods(server)
    assert len(methods) >= 8
    seen: dict[str, set[grpc.StatusCode]] = {}
    with grpc.insecure_channel(server.address) as channel:
        for method in methods:
            task = task_of_service.get(method.containing_service.full_name)
            own = [m.name for m in infos if m.task == task] or models  # its task's models, for the example
            _fuzz_method(channel, method, _message(method.input_type, models), seen, own)
    assert all(seen.values()) and len(seen) == len(methods)
    # The random requests reached the models, not only the validation in front of them.
    text = seen["modelplex.v1.TextGeneration.Complete"] | seen["modelplex.v1.TextGeneration.Generate"]
    assert grpc.StatusCode.OK in text
    assert grpc.StatusCode.OK in seen["modelplex.v1.ImageGeneration.Generate"]
    with Client(server.address, timeout=30) as client:
        assert client.health() == "SERVING" and [m.name for m in client.list_models()] == models


def test_random_bytes_get_invalid_argument_or_a_proper_status(server):
    methods = _methods(server)
    with grpc.insecure_channel(server.address) as channel:

        @settings(max_examples=EXAMPLES * 2, deadline=None, suppress_health_check=list(HealthCheck), database=None)
        @given(st.sampled_from(methods), st.lists(st.binary(max_size=200), min_size=1, max_size=3))
        def fuzz(method, payloads):  # type: ignore[no-untyped-def]
            code = _call(channel, method, payloads)
            assert code in ALLOWED, f"{method.full_name}: {code}"

        fuzz()
    with Client(server.address, timeout=30) as client:
        assert client.health() == "SERVING"
