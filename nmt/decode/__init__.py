"""Decoding and serving: search, the CTranslate2 engine, export, checkpoint averaging."""
