"""The interactions model: ``EmbeddingMlp`` with one logit per rating."""

from typing import Any, List

from components.trainer import models
from pipelines.interactions import features


def build_model(resolved_spec: Any, dense_feature_keys: List[str]):
  """The Trainer's ``model_fn``: [batch, 5] logits over the ratings."""
  return models.EmbeddingMlp(models.sequence_keys(resolved_spec),
                             dense_feature_keys, hidden_units=(64,),
                             outputs=features.NUM_RATINGS, dropout=0.0,
                             name='rating_classifier')
