"""The text-generation task: the interface and value types a plugin uses.

The runtime (continuous batching on the shared step scheduler), servicer and settings
are in the submodules, imported by the task's definition
(:mod:`modelplex.tasks.text_generation.task`) when the server discovers it.
"""

from modelplex.tasks.text_generation.interface import (
    ChatMessage,
    NextToken,
    SamplingParams,
    TextGenerationMeta,
    TextGenerator,
    TopLogprob,
)

__all__ = ["ChatMessage", "NextToken", "SamplingParams", "TextGenerationMeta", "TextGenerator", "TopLogprob"]
