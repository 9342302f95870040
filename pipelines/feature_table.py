"""A feature table: the one place an example names its features.

Each example lists its raw features once, with how each categorical one is
embedded. Preprocessing builds one Transform vocabulary per vocabulary name
from it, the embedding spec declares one column per embedded feature (features
that share a vocabulary share a table, sequence members included), and the
run summary names the vocabularies from it.
"""

import dataclasses
from typing import Any, Callable, Dict, List, Optional, Sequence

from components import embedding as emb

LIST = 'list'  # A list of strings (BytesList), maybe empty.
SCALAR = 'scalar'  # One string, maybe missing.
NUMERIC = 'numeric'  # One number, maybe missing.
KINDS = (LIST, SCALAR, NUMERIC)


def transformed_name(feature: str) -> str:
  """Key of ``feature`` in the transformed examples (TFX's ``_xf`` convention)."""
  return f'{feature}_xf'


@dataclasses.dataclass(frozen=True)
class Feature:
  """One raw feature and, for categorical ones, how it is embedded.

  Attributes:
    name: the raw tf.Example key.
    kind: LIST, SCALAR or NUMERIC.
    dimension: embedding width (categorical features).
    vocabulary: the Transform vocabulary; defaults to ``name``. Features with
      the same vocabulary share one embedding table.
    sequence: embedded as a padded sequence ([batch, length, dim], length
      chosen by EmbeddingStatsGen) instead of a combined bag.
    combiner: how a bag's embeddings are reduced (mean, sum, sqrtn).
  """

  name: str
  kind: str
  dimension: int = 0
  vocabulary: Optional[str] = None
  sequence: bool = False
  combiner: str = 'mean'

  def __post_init__(self):
    if self.kind not in KINDS:
      raise ValueError(f'Feature {self.name!r}: kind must be one of {KINDS}, '
                       f'got {self.kind!r}.')
    if self.kind != NUMERIC and self.dimension <= 0:
      raise ValueError(f'Feature {self.name!r}: a categorical feature needs '
                       'an embedding dimension > 0.')

  @property
  def vocabulary_name(self) -> str:
    return self.vocabulary or self.name

  @property
  def transformed_name(self) -> str:
    return transformed_name(self.name)

  @property
  def categorical(self) -> bool:
    return self.kind != NUMERIC


LearningRateFor = Callable[[Feature], Optional[Any]]


class FeatureTable:
  """An ordered set of ``Feature``s with the views preprocessing and specs need."""

  def __init__(self, features: Sequence[Feature]):
    self.features = list(features)
    self.by_name: Dict[str, Feature] = {f.name: f for f in self.features}
    if len(self.by_name) != len(self.features):
      raise ValueError('Feature names must be unique.')
    for members in self.vocabulary_members().values():
      for field in ('dimension', 'combiner'):
        values = {getattr(self.by_name[n], field) for n in members}
        if len(values) > 1:
          raise ValueError(f'Features {members} share a vocabulary (one '
                           f'table) but have {field}s {sorted(values)}.')

  @property
  def categorical(self) -> List[str]:
    return [f.name for f in self.features if f.categorical]

  @property
  def numeric(self) -> List[str]:
    return [f.name for f in self.features if f.kind == NUMERIC]

  def vocabulary_members(self) -> Dict[str, List[str]]:
    """Each vocabulary and the categorical features it holds, in table order."""
    members: Dict[str, List[str]] = {}
    for name in self.categorical:
      members.setdefault(self.by_name[name].vocabulary_name, []).append(name)
    return members

  def transformed_names(self) -> Dict[str, str]:
    """Categorical feature -> its key in the transformed examples."""
    return {name: transformed_name(name) for name in self.categorical}

  def embedding_columns(self, learning_rate_for: LearningRateFor = lambda f: None
                       ) -> list:
    """One embedding column per categorical feature; shared where they share
    a vocabulary. ``learning_rate_for(feature)`` gives a table's
    ``learning_rate_fn`` (the first member's, for a shared table)."""
    columns = []
    for names in self.vocabulary_members().values():
      columns += _columns([self.by_name[n] for n in names], learning_rate_for)
    return columns


def _categorical(feature: Feature) -> Any:
  make = (emb.sequence_categorical_column_with_transform_vocabulary
          if feature.sequence else
          emb.categorical_column_with_transform_vocabulary)
  return make(feature.transformed_name, feature.vocabulary_name)


def _columns(members: List[Feature], learning_rate_for: LearningRateFor
            ) -> list:
  first = members[0]
  if len(members) == 1:
    return [emb.embedding_column(
        _categorical(first), dimension=first.dimension,
        combiner=first.combiner,
        max_sequence_length=emb.AUTO if first.sequence else 0,
        learning_rate_fn=learning_rate_for(first))]
  return emb.shared_embedding_columns(
      [_categorical(f) for f in members], dimension=first.dimension,
      combiner=first.combiner,
      shared_embedding_collection_name=first.vocabulary_name,
      max_sequence_lengths=[emb.AUTO if f.sequence else 0 for f in members],
      learning_rate_fn=learning_rate_for(first))
