"""modelplex-tts: Tacotron 2 with Griffin-Lim, WaveRNN or WaveGlow, served by modelplex.

The entry point (``tts = "modelplex_tts.plugin"`` in the group ``modelplex``) registers the
pairings; the models load in :mod:`modelplex_tts.model`.
"""
