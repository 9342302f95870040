"""The project's custom artifact types under their Kubeflow Pipelines v2 names.

A pipeline compiled for Kubeflow Pipelines v2 / Vertex AI records a custom
artifact type by its ``TYPE_NAME`` (``tpu_embedding_tfx.EmbeddingStatistics``),
and the TFX container entry point imports that name as a class path to rebuild
the artifact. This module makes the name importable; the container image puts
the repository root on ``PYTHONPATH``.
"""

from components.embedding_stats.artifact import EmbeddingStatistics

__all__ = ['EmbeddingStatistics']
