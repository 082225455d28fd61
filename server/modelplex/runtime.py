"""What a task's runtime and servicer are built from: the public surface for task authors.

A plugin that brings a task (``register_tasks``) builds its runtime from these shared
pieces and its servicer with these gRPC helpers, and imports nothing else of
``modelplex.server``::

    from modelplex.runtime import BatchingRuntime, BatchingSettings, grpc_errors, deadline_of

See docs/plugins.md, "Bringing a task".
"""

from modelplex.oip_mapping import OipMapping, OipMetadata, ParameterSpec, Streamed, TensorSpec
from modelplex.server.batching import BatchQueue, Pending
from modelplex.server.grpc_errors import abort, deadline_of, grpc_errors, grpc_stream_errors, status_of
from modelplex.server.instance import Instance
from modelplex.server.runtimes.base import TaskRuntime, inference_error
from modelplex.server.runtimes.batched import BatchingRuntime, BatchingSettings
from modelplex.server.runtimes.steps import Lane, StepScheduler, StepSession, run_step, step_error
from modelplex.server.runtimes.stream import OutputStream
from modelplex.taskdef import ConformanceProbes, RuntimeLookup, TaskDefinition

__all__ = [
    "BatchQueue",
    "BatchingRuntime",
    "BatchingSettings",
    "ConformanceProbes",
    "Instance",
    "Lane",
    "OipMapping",
    "OipMetadata",
    "OutputStream",
    "ParameterSpec",
    "Pending",
    "RuntimeLookup",
    "StepScheduler",
    "StepSession",
    "Streamed",
    "TaskDefinition",
    "TaskRuntime",
    "TensorSpec",
    "abort",
    "deadline_of",
    "grpc_errors",
    "grpc_stream_errors",
    "inference_error",
    "run_step",
    "status_of",
    "step_error",
]
