"""Data: which files make each split, encoding them, token-bucket batches, the tokenizer."""
