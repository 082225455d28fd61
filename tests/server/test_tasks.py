"""Tasks come from plugins (register_tasks): clashes are refused alone, hooks are called
through pluggy, and the core serves whatever tasks are registered."""

from __future__ import annotations

import logging

import grpc
import pytest

from modelplex import ClassificationMeta, ModelSpec, TaskDefinition, TextGenerationMeta, Variant, hookimpl
from modelplex.errors import ConfigError
from modelplex.server.config import PluginSettings
from modelplex.server.plugins import PluginState, discover
from modelplex.tasks.classification.task import TASK as CLASSIFICATION


def _never(ctx):  # type: ignore[no-untyped-def]
    raise AssertionError("never loaded")


def _found(*plugins):  # type: ignore[no-untyped-def]
    found = discover(PluginSettings(autoload=False), extra=list(plugins))
    return found, {r.name: r for r in found.reports}


def test_the_first_party_tasks_are_registered_through_the_entry_point():
    found, reports = _found()
    assert {"image_classification", "text_generation"} <= set(found.tasks)
    assert {t.id for t in reports["tasks"].tasks} == set(found.tasks)
    assert reports["tasks"].distribution == "modelplex"


def test_a_clashing_task_id_or_service_is_refused_alone():
    from dataclasses import replace

    same_id = replace(CLASSIFICATION, services=("acme.v1.Other",))
    same_service = replace(CLASSIFICATION, id="acme.classify")
    fresh = replace(CLASSIFICATION, id="acme.fresh", services=("acme.v1.Fresh",))

    class Clashing:
        @hookimpl
        def register_tasks(self, register):  # type: ignore[no-untyped-def]
            register(same_id)
            register(same_service)
            register(fresh)

    found, reports = _found(("clashing", Clashing()))
    report = reports["clashing"]
    assert report.state is PluginState.ACTIVE and [t.id for t in report.tasks] == ["acme.fresh"]
    assert "task 'image_classification' ignored: already registered by plugin 'tasks'" in report.error
    assert "service 'modelplex.v1.ImageClassification' is already served by plugin 'tasks'" in report.error
    assert found.tasks["image_classification"][1] == "tasks" and found.tasks["acme.fresh"][1] == "clashing"


def test_registering_something_else_breaks_the_plugin_and_withdraws_its_tasks():
    from dataclasses import replace

    class Wrong:
        @hookimpl
        def register_tasks(self, register):  # type: ignore[no-untyped-def]
            register(replace(CLASSIFICATION, id="acme.first", services=("acme.v1.First",)))
            register("image_classification")

    found, reports = _found(("wrong", Wrong()))
    assert reports["wrong"].state is PluginState.BROKEN
    assert "register_tasks failed: TypeError: register() takes a modelplex.TaskDefinition" in reports["wrong"].error
    assert "acme.first" not in found.tasks


def test_hooks_go_through_pluggy_so_wrappers_and_ordering_apply():
    order: list[str] = []

    class Ordered:
        @hookimpl(wrapper=True)
        def register_models(self, register):  # type: ignore[no-untyped-def]
            order.append("wrapper before")
            yield
            order.append("wrapper after")
            register(ModelSpec("from-wrapper", "image_classification", _never))

    class Early:
        @hookimpl(tryfirst=True)
        def register_models(self, register):  # type: ignore[no-untyped-def]
            order.append("tryfirst")
            register(ModelSpec("early", "image_classification", _never))

    found, _ = _found(("ordered", Ordered()), ("early", Early()))
    assert found.specs["from-wrapper"][1] == "ordered" and found.specs["early"][1] == "early"
    assert order == ["wrapper before", "wrapper after", "tryfirst"]  # each plugin's own call


def test_a_spec_with_another_tasks_meta_is_refused():
    class Mixed:
        @hookimpl
        def register_models(self, register):  # type: ignore[no-untyped-def]
            meta = TextGenerationMeta(context_length=8)
            register(ModelSpec("mixed", "image_classification", _never, (Variant("v", "", meta),)))
            register(ModelSpec("fine", "image_classification", _never, (Variant("v", "", ClassificationMeta()),)))

    found, reports = _found(("mixed", Mixed()))
    assert "mixed" not in found.specs and "fine" in found.specs
    assert "the meta of variant(s) v is not a ClassificationMeta" in reports["mixed"].error


def test_a_spec_of_a_task_nobody_serves_fails_to_plan_saying_so(probe_server):
    from probe_plugin import PLUGINS

    class Orphan:
        @hookimpl
        def register_models(self, register):  # type: ignore[no-untyped-def]
            register(ModelSpec("orphan", "acme.translation", _never))

    from modelplex.testing import running_server

    with pytest.raises(ConfigError, match="task 'acme.translation' is not served by this server"):
        with running_server({"models": [{"spec": "orphan"}]}, extra_plugins=[*PLUGINS, ("orphan", Orphan())]):
            pass


def test_an_import_failure_is_logged_with_its_traceback(example_plugins, caplog):
    with caplog.at_level(logging.ERROR, logger="modelplex.server.plugins"):
        discover(PluginSettings())
    [record] = [r for r in caplog.records if "broken_example" in r.getMessage()]
    assert record.exc_info is not None and "modelplex_dependency_that_is_not_installed" in str(record.exc_info[1])


def test_a_task_definition_checks_itself():
    with pytest.raises(ValueError, match="task id"):
        TaskDefinition(id="Bad Id", interface=CLASSIFICATION.interface, services=(), add_servicers=None, runtime=None)  # type: ignore[arg-type]
    with pytest.raises(TypeError, match="interface"):
        TaskDefinition(id="ok", interface=int, services=(), add_servicers=None, runtime=None)  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="not a task id"):
        ModelSpec("s", "Not A Task", _never)


def test_reflection_v1_and_v1alpha_both_list_the_task_services(probe_server):
    from grpc_reflection.v1alpha import reflection_pb2

    server = probe_server()
    with grpc.insecure_channel(server.address) as channel:
        for version in ("v1alpha", "v1"):
            call = channel.stream_stream(
                f"/grpc.reflection.{version}.ServerReflection/ServerReflectionInfo",
                request_serializer=reflection_pb2.ServerReflectionRequest.SerializeToString,
                response_deserializer=reflection_pb2.ServerReflectionResponse.FromString,
            )
            [answer] = list(call(iter([reflection_pb2.ServerReflectionRequest(list_services="")]), timeout=10))
            names = {s.name for s in answer.list_services_response.service}
            assert {"modelplex.v1.ImageClassification", "modelplex.v1.TextGeneration"} <= names, version
            assert {"grpc.reflection.v1.ServerReflection", "grpc.reflection.v1alpha.ServerReflection"} <= names
