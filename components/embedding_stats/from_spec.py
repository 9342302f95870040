"""The features to measure, read off an embedding spec.

One source of truth: the Trainer's embedding spec says which features are
embedded, from which vocabulary, and which are sequences; EmbeddingStatsGen
measures exactly those. Vocabulary list/file columns look their strings up at
training time, so their ids are not in the transformed examples: they are
skipped (their lengths can still be measured by declaring them by hand).
Each feature carries its column's table name, so that features sharing a table
are counted together for the SparseCore limits.
"""

from typing import Any, List

from components.embedding import categorical
from components.embedding_stats import config


def features_from_embedding_spec(spec: Any) -> List[config.FeatureToMeasure]:
  """``FeatureToMeasure``s for the transform-vocabulary and identity columns."""
  measured = []
  for column in spec.columns:
    ids = column.categorical_column
    if isinstance(ids, categorical.WeightedColumn):
      ids = ids.categorical_column
    if isinstance(ids, categorical.TransformVocabularyColumn):
      measured.append(config.FeatureToMeasure(
          name=ids.key, kind=config.KIND_VOCABULARY,
          vocabulary_name=ids.vocabulary_name, is_sequence=ids.is_sequence,
          table=column.resolved_table_name))
    elif isinstance(ids, categorical.IdentityColumn):
      measured.append(config.FeatureToMeasure(
          name=ids.key, kind=config.KIND_IDENTITY,
          num_buckets=ids.number_buckets, is_sequence=ids.is_sequence,
          table=column.resolved_table_name))
  return measured
