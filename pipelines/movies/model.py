"""The movies model, named by dotted path in the Trainer config.

``build_model(resolved_spec, dense_feature_keys)`` returns the library's
``EmbeddingMlp`` (pooled cast, crew and metadata embeddings plus the numeric
features; two ReLU layers) with one logit: "fresh" or not.
"""

from typing import Any, List

from components.trainer import models


def build_model(resolved_spec: Any, dense_feature_keys: List[str]):
  """The Trainer's ``model_fn``."""
  return models.EmbeddingMlp(models.sequence_keys(resolved_spec),
                             dense_feature_keys, hidden_units=(128, 64),
                             outputs=1, dropout=0.2, name='movies_ranker')
