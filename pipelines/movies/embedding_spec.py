"""The movies model's embedding columns, declared with the TF 1.15 API.

One column per embedded feature of the feature table; directors and writers
share the crew table; the cast is a sequence whose ``max_sequence_length``
EmbeddingStatsGen picks ('auto') and whose table warms up and decays over the
training steps. Table sizes and OOV buckets come from the Transform output.
"""

from components import embedding as emb
from pipelines import feature_table
from pipelines.movies import features


def create_embedding_spec(train_steps: int) -> emb.EmbeddingSpec:
  """The spec of every embedded feature; ``train_steps`` shapes schedules."""

  def learning_rate(feature: feature_table.Feature):
    if not feature.sequence:
      return None  # The optimizer's rate.
    return emb.learning_rate_schedule(
        'linear_warmup_cosine_decay', peak_learning_rate=0.2,
        warmup_steps=max(train_steps // 20, 1), decay_steps=train_steps,
        alpha=0.1)

  return emb.EmbeddingSpec(
      columns=features.TABLE.embedding_columns(learning_rate),
      optimizer=emb.Adagrad(learning_rate=0.1))
