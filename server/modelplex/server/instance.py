"""One instance of a model: one device, one worker thread, one task object."""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from typing import Any, TypeVar

from modelplex.errors import ModelLoadError, ModelplexError
from modelplex.specs import LoadContext
from modelplex.tasks.base import TaskModel

log = logging.getLogger(__name__)

T = TypeVar("T")

__all__ = ["Instance"]


class Instance:
    """Runs everything of one model copy on its own thread, so that the event
    loop never runs model code and instances on different devices run in
    parallel (torch releases the GIL inside its ops)."""

    def __init__(self, model_name: str, device: str, index: int) -> None:
        self.device = device
        self.index = index
        self.model: TaskModel | None = None
        self.busy = 0
        self.completed = 0
        self._memory_bytes = 0
        self._executor = ThreadPoolExecutor(1, thread_name_prefix=f"modelplex-{model_name}-{device}-{index}")

    async def run(self, fn: Callable[..., T], *args: Any) -> T:
        """Run ``fn(*args)`` on this instance's thread."""
        self.busy += 1
        try:
            return await asyncio.get_running_loop().run_in_executor(self._executor, fn, *args)
        finally:
            self.busy -= 1
            self.completed += 1

    def start_loop(self, fn: Callable[..., None], *args: Any) -> asyncio.Future[None]:
        """Run a long-lived loop (a runtime's batch loop) on this instance's thread until it
        returns. Unlike :meth:`run` it is not counted as work: the loop counts its own."""
        return asyncio.get_running_loop().run_in_executor(self._executor, fn, *args)

    async def load(
        self, factory: Callable[[LoadContext], TaskModel], ctx: LoadContext, cpu_threads: int | None = None
    ) -> None:
        """Build the task object with the spec's factory, load and warm it up, on this thread.
        ``cpu_threads`` sets torch's intra-op threads for this (CPU) instance's thread."""

        def build() -> TaskModel:
            if cpu_threads is not None:
                import torch

                torch.set_num_threads(cpu_threads)  # per calling thread: this instance's OpenMP team
            model = factory(ctx)
            # Set before load(), on this thread: close() queued behind a build that its caller
            # abandoned (a cancelled LoadModel, a failed sibling) must still unload it.
            self.model = model
            model.load()
            model.warmup()
            self._memory_bytes = model.memory_bytes()
            return model

        try:
            await self.run(build)
        except ModelplexError:
            raise
        except Exception as e:  # a factory may fail in any way; say where (the details go to the log:
            # an exception's text may quote a file the caller named)
            log.exception("loading %s on %s failed", ctx.model_name, self.device)
            raise ModelLoadError(
                f"loading {ctx.model_name!r} on {self.device} failed: {type(e).__name__} (details in the server log)"
            ) from e
        finally:
            self.completed = 0

    def memory_bytes(self) -> int:
        """Bytes the model holds on its device, measured on its thread after loading."""
        return self._memory_bytes

    async def close(self) -> None:
        """Unload the task object (on its thread, after anything queued there) and stop the thread."""

        def unload() -> None:
            model, self.model = self.model, None
            self._memory_bytes = 0
            if model is not None:
                model.unload()

        try:
            await self.run(unload)
        except Exception:
            log.exception("unloading the instance on %s failed", self.device)
        finally:
            self._executor.shutdown(wait=False)
