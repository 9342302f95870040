"""The movies model's embedding columns, declared with the TF 1.15 API.

One column per embedded row of the feature table (``features.FEATURES``):
features that share a vocabulary share one table, the cast is a sequence whose
``max_sequence_length`` EmbeddingStatsGen picks ('auto') and whose table warms
up and decays over the training steps. Table sizes and OOV buckets come from
the Transform output at training time.
"""

from typing import List

from components import embedding as emb
from pipelines.movies import features


def _categorical(feature: features.Feature):
  make = (emb.sequence_categorical_column_with_transform_vocabulary
          if feature.sequence else
          emb.categorical_column_with_transform_vocabulary)
  return make(feature.transformed_name, feature.vocabulary_name)


def _learning_rate(feature: features.Feature, train_steps: int):
  """Sequence tables warm up and decay; the others use the optimizer's rate."""
  if not feature.sequence:
    return None
  return emb.learning_rate_schedule(
      'linear_warmup_cosine_decay', peak_learning_rate=0.2,
      warmup_steps=max(train_steps // 20, 1), decay_steps=train_steps,
      alpha=0.1)


def _columns(members: List[features.Feature], train_steps: int) -> list:
  first = members[0]
  if len(members) == 1:
    return [emb.embedding_column(
        _categorical(first), dimension=first.dimension,
        combiner=first.combiner,
        max_sequence_length=emb.AUTO if first.sequence else 0,
        learning_rate_fn=_learning_rate(first, train_steps))]
  return emb.shared_embedding_columns(
      [_categorical(f) for f in members], dimension=first.dimension,
      combiner=first.combiner,
      shared_embedding_collection_name=first.vocabulary_name,
      max_sequence_lengths=[emb.AUTO if f.sequence else 0 for f in members],
      learning_rate_fn=_learning_rate(first, train_steps))


def create_embedding_spec(train_steps: int) -> emb.EmbeddingSpec:
  """The spec of every embedded feature; ``train_steps`` shapes schedules."""
  columns = []
  for names in features.vocabulary_members().values():
    members = [features.FEATURES_BY_NAME[n] for n in names]
    columns += _columns(members, train_steps)
  return emb.EmbeddingSpec(columns=columns,
                           optimizer=emb.Adagrad(learning_rate=0.1))
