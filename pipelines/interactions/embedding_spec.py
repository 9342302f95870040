"""The interactions model's embedding columns (TF 1.15 API).

The item and the history share one table (``max_sequence_lengths`` [0,
'auto'] on the shared group: the history's length comes from
EmbeddingStatsGen); users and categories have their own.
"""

from components import embedding as emb
from pipelines.interactions import features


def create_embedding_spec() -> emb.EmbeddingSpec:
  """The spec of every embedded feature of the table."""
  return emb.EmbeddingSpec(columns=features.TABLE.embedding_columns(),
                           optimizer=emb.Adagrad(learning_rate=0.5))
