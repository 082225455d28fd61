"""An MLServer runtime serving :class:`peer_models.Classifier`: one FP32 input tensor
(N, C, H, W) in; ``scores`` (FP32), ``indices`` (INT64) and ``labels`` (BYTES) out, each
(N, k), the tensors modelplex's OIP mapping answers for a classifier.

model-settings.json: ``"implementation": "mlserver_runtime.TorchClassifier"``, the model's name
in ``parameters.extra.model``.
"""

from __future__ import annotations

from mlserver import MLModel
from mlserver.codecs import NumpyCodec
from mlserver.types import InferenceRequest, InferenceResponse, ResponseOutput
from peer_models import Classifier


class TorchClassifier(MLModel):
    async def load(self) -> bool:
        extra = self.settings.parameters.extra if self.settings.parameters else None
        self.classifier = Classifier((extra or {}).get("model", self.name))
        return True

    async def predict(self, payload: InferenceRequest) -> InferenceResponse:
        batch = NumpyCodec.decode_input(payload.inputs[0]).astype("float32", copy=False)
        scores, indices, labels = self.classifier.classify(batch)
        labels_out = ResponseOutput(
            name="labels", shape=list(labels.shape), datatype="BYTES", data=labels.ravel().tolist()
        )
        return InferenceResponse(
            model_name=self.name,
            outputs=[NumpyCodec.encode_output("scores", scores), NumpyCodec.encode_output("indices", indices),
                     labels_out],
        )  # fmt: skip
