"""The interface a plugin's model implements, one small ABC per task.

Every method here is called by the server on the instance's own worker thread,
never on the event loop, so it may block (run torch ops, read files).
"""

from __future__ import annotations

from modelplex.tasks.base import TaskModel
from modelplex.tasks.classification import ClassScore, EncodedImage, ImageClassifier, RawTensor
from modelplex.tasks.text_generation import NextToken, SamplingParams, TextGenerator, TopLogprob

__all__ = [
    "ClassScore",
    "EncodedImage",
    "ImageClassifier",
    "NextToken",
    "RawTensor",
    "SamplingParams",
    "TaskModel",
    "TextGenerator",
    "TopLogprob",
]
