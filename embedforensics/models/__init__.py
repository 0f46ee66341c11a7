"""Embedding models: resolution of model ids, bundled offline models, embedders."""
