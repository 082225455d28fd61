"""modelplex-vision: torchvision image classifiers for the modelplex model server.

The server finds this plugin through the ``modelplex`` entry point
``vision = "modelplex_vision.plugin"``; nothing here needs importing by hand.
"""

__version__ = "0.1.0"
