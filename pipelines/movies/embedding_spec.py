"""The movies model's embedding columns, declared with the TF 1.15 API.

Table sizes and OOV buckets come from the Transform output at training time;
the cast's ``max_sequence_length`` comes from EmbeddingStatsGen ('auto').
Feature and vocabulary names come from ``features``.
"""

from components import embedding as emb
from pipelines.movies import features

# Optimizer steps of the demo (about 7 epochs at batch 128); the cast's table
# warms up and decays over them.
TRAIN_STEPS = 800


def _column(name: str, sequence: bool = False):
  make = (emb.sequence_categorical_column_with_transform_vocabulary
          if sequence else emb.categorical_column_with_transform_vocabulary)
  return make(features.transformed_name(name), features.vocabulary_name(name))


def create_embedding_spec(train_steps: int = TRAIN_STEPS) -> emb.EmbeddingSpec:
  """Cast as a sequence, directors and writers in one shared table, bags else."""
  cast = emb.embedding_column(
      _column(features.CAST, sequence=True),
      dimension=32,
      max_sequence_length=emb.AUTO,
      learning_rate_fn=emb.learning_rate_schedule(
          'linear_warmup_cosine_decay',
          peak_learning_rate=0.2,
          warmup_steps=max(train_steps // 20, 1),
          decay_steps=train_steps,
          alpha=0.1))
  crew = emb.shared_embedding_columns(
      [_column(features.DIRECTOR), _column(features.WRITER)],
      dimension=32,
      combiner='sqrtn',
      shared_embedding_collection_name=features.CREW_VOCABULARY)
  bags = [
      emb.embedding_column(_column(name), dimension=dimension, combiner='mean')
      for name, dimension in ((features.GENRE, 8), (features.LANGUAGE, 8),
                              (features.COUNTRY, 8), (features.PRODUCTION, 16),
                              (features.MPAA_RATING, 4))
  ]
  return emb.EmbeddingSpec(columns=[cast] + crew + bags,
                           optimizer=emb.Adagrad(learning_rate=0.1))
