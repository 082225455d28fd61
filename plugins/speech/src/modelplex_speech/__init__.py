"""modelplex-speech: speech recognition models for modelplex (Wav2Vec 2.0, DeepSpeech)."""

__all__: list[str] = []
