"""modelplex-text: Hugging Face causal and seq2seq language models for modelplex."""
