"""Resolves feature configs against a Transform output.

Everything the statistics need beyond the config comes from the Transform
output, never from hand-typed numbers: the serialized column that holds the
ids (from `transformed_feature_spec()`), the vocabulary size (from
`vocabulary_size_by_name`) and the number of OOV buckets (from the transformed
feature's integer domain, which `tft.compute_and_apply_vocabulary` sets to
`[0, vocabulary_size + num_oov_buckets - 1]`).
"""

import dataclasses
from typing import Any, List, Mapping, Optional, Sequence

import tensorflow as tf

from components.embedding import categorical
from components.embedding import resolution
from components.embedding_stats import config

ENCODING_RAGGED = 'ragged'
ENCODING_VARLEN = 'varlen'
ENCODING_FIXED = 'fixed'
# Identity features with more ids than this get no per-id counts (8 MiB of
# int64 per accumulator at this size).
MAX_COUNTED_IDENTITY_BUCKETS = 1 << 20


@dataclasses.dataclass(frozen=True)
class MeasuredFeature:
  """A feature config completed with facts read from the Transform output.

  Attributes:
    name: Transformed feature name.
    column: The `tf.train.Example` feature key holding the flat ids.
    encoding: How Transform serialized the feature ('ragged', 'varlen' or
      'fixed'); in all three the ids of a row are one int64 list.
    kind: 'vocabulary' or 'identity'.
    is_sequence: Whether a max sequence length is recommended.
    num_ids: Size of the valid id space `[0, num_ids)`.
    vocabulary_size: In-vocabulary ids are `[0, vocabulary_size)`
      (vocabulary features only).
    num_oov_buckets: OOV ids are `[vocabulary_size, num_ids)` (vocabulary
      features only).
    table: The embedding table the ids look up (None: its own, named after
      the feature); see `table_name`.
  """
  name: str
  column: str
  encoding: str
  kind: str
  is_sequence: bool
  num_ids: int
  vocabulary_size: Optional[int] = None
  num_oov_buckets: Optional[int] = None
  table: Optional[str] = None

  @property
  def table_name(self) -> str:
    """The table whose SparseCore limits these ids count towards."""
    return self.table or self.name

  @property
  def keeps_id_counts(self) -> bool:
    """Whether exact per-id counts are kept.

    Always for vocabularies (OOV rate, coverage, split checks); for identity
    features only up to `MAX_COUNTED_IDENTITY_BUCKETS` ids, so that the split
    checks see them without a huge id space costing memory.
    """
    return (self.kind == config.KIND_VOCABULARY
            or self.num_ids <= MAX_COUNTED_IDENTITY_BUCKETS)

  def to_dict(self) -> dict:
    return dataclasses.asdict(self)


def column_for_spec(name: str, spec: Any) -> tuple:
  """Returns (column, encoding) of a transformed feature's parsing spec."""
  if isinstance(spec, tf.io.RaggedFeature):
    if spec.partitions:
      raise ValueError(
          f'Feature {name!r}: nested ragged features (partitions '
          f'{spec.partitions}) are not supported; emit a 2-D ragged tensor.')
    return spec.value_key or name, ENCODING_RAGGED
  if isinstance(spec, tf.io.VarLenFeature):
    return name, ENCODING_VARLEN
  if isinstance(spec, tf.io.FixedLenFeature):
    return name, ENCODING_FIXED
  raise ValueError(
      f'Feature {name!r}: unsupported transformed feature spec {spec!r}.')


def _check_int_spec(name: str, spec: Any) -> None:
  if spec.dtype != tf.int64:
    raise ValueError(
        f'Feature {name!r} must hold int64 ids, found dtype {spec.dtype!r}.')


def resolve_feature(feature: config.FeatureToMeasure, tf_transform_output: Any
                    ) -> MeasuredFeature:
  """Completes one config from a `tft.TFTransformOutput`."""
  feature_spec = tf_transform_output.transformed_feature_spec()
  if feature.name not in feature_spec:
    raise ValueError(
        f'Feature {feature.name!r} is not a transformed feature; known: '
        f'{sorted(feature_spec)}.')
  spec = feature_spec[feature.name]
  _check_int_spec(feature.name, spec)
  column, encoding = column_for_spec(feature.name, spec)
  common = dict(name=feature.name, column=column, encoding=encoding,
                kind=feature.kind, is_sequence=feature.is_sequence,
                table=feature.table)
  if feature.kind == config.KIND_IDENTITY:
    return MeasuredFeature(num_ids=feature.num_buckets, **common)
  # The embedding library's reading of the Transform output, so that the
  # statistics and the tables agree on sizes and OOV buckets.
  num_ids, num_oov_buckets, _ = resolution.transform_vocabulary_size(
      categorical.TransformVocabularyColumn(
          feature.name, feature.vocabulary_name,
          is_sequence=feature.is_sequence), tf_transform_output)
  vocabulary_size = num_ids - num_oov_buckets
  return MeasuredFeature(num_ids=num_ids, vocabulary_size=vocabulary_size,
                         num_oov_buckets=num_oov_buckets, **common)


def resolve_features(features: Sequence[config.FeatureToMeasure],
                     tf_transform_output: Any) -> List[MeasuredFeature]:
  """Completes all configs; see `resolve_feature`."""
  return [resolve_feature(f, tf_transform_output) for f in features]
