"""Ready-made bases for the common case, one per task: a plugin writes only what is its own.

- :func:`torch_classifier` / :class:`TorchClassifier`: an image classifier over a
  ``torch.nn.Module`` (device, eval mode, checkpoint, preprocessing, batching, top-k, unload).
- :class:`TorchModule`: ``unload`` and ``memory_bytes`` for any task model whose weights are one
  ``torch.nn.Module`` in ``self.module`` (``class M(TorchModule, ImageGenerator)``).
- :func:`module_bytes`: the bytes of a module's parameters and buffers (a model's ``memory_bytes``).
- :func:`prepack_linears`: a float32 module's linear layers on a CPU, run through oneDNN with
  their weights reordered once (``modelplex.prepack``); :func:`unpack_linears` undoes it.

Importing this module imports no torch: the kits import it when a model loads.
"""

from modelplex.prepack import prepack_linears, unpack_linears
from modelplex.tasks.base import TorchModule, module_bytes
from modelplex.tasks.classification.kit import TorchClassifier, torch_classifier

__all__ = ["TorchClassifier", "TorchModule", "module_bytes", "prepack_linears", "torch_classifier", "unpack_linears"]
