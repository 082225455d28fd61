"""The shared runtime pieces that tasks are built from (no task lives here).

- :mod:`.base`: :class:`TaskRuntime`, the base of every task's runtime.
- :mod:`.batched`: a dynamic-batching runtime generic over job and result.
- :mod:`.stream`: an output stream with backpressure, cancellation and a final message.
- :mod:`.steps`: a step scheduler for sessions that advance step by step on an instance.

Task authors import them through :mod:`modelplex.runtime`.
"""
