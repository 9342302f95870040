"""A resolved embedding spec: every size and length concrete.

`EmbeddingSpec.resolve()` produces a `ResolvedEmbeddingSpec`. It describes,
per input feature, what the trainer needs (`ResolvedFeature`), per table what
TensorFlow needs (`ResolvedTable`), and offers the three consumers of that
description: TPU configs (`compile`), the id mapping shared by the CPU and TPU
paths (`id_mapper` / `map_ids`) and the memory plan (`memory_plan`).
"""

import dataclasses
from typing import Any, Callable, Dict, Mapping, Optional, Tuple

from components.embedding import categorical
from components.embedding import compiler
from components.embedding import ids
from components.embedding import memory
from components.embedding import oov
from components.embedding import optimizers


@dataclasses.dataclass(frozen=True)
class ResolvedFeature:
  """What the trainer needs to know about one embedded input feature.

  Attributes:
    feature_key: key of the input tensor holding the ids (or tokens).
    weight_key: key of the input tensor holding the weights, or None.
    table_name: the table the feature is looked up in.
    vocabulary_size: rows of that table, OOV buckets included.
    num_oov_buckets: rows past the vocabulary, for out-of-vocabulary values
      (0 for identity columns).
    dimension: embedding width.
    combiner: 'mean', 'sum' or 'sqrtn'; None for sequence features, whose
      lookups do not combine.
    is_sequence: whether the lookup keeps one embedding per position.
    max_sequence_length: pad/truncate length for sequences, 0 otherwise.
    kind: 'identity', 'vocabulary_list', 'vocabulary_file' or
      'transform_vocabulary'.
    default_value: the id that unknown values take when there are no OOV
      buckets; -1 means those values are ignored (dropped from the ids, as
      TensorFlow's embedding lookups ignore negative ids); None means that an
      id out of range is an error.
    validate_weights_and_indices: `FeatureConfig.validate_weights_and_indices`.
    column: the categorical column, without weights.
  """

  feature_key: str
  weight_key: Optional[str]
  table_name: str
  vocabulary_size: int
  num_oov_buckets: int
  dimension: int
  combiner: Optional[str]
  is_sequence: bool
  max_sequence_length: int
  kind: str
  default_value: Optional[int]
  validate_weights_and_indices: bool
  column: categorical.CategoricalColumn = dataclasses.field(repr=False)


@dataclasses.dataclass(frozen=True)
class ResolvedTable:
  """One embedding table and the features looked up in it.

  Its OOV rows are the last `num_oov_rows` (`first_oov_row` on); `oov_rows`
  says how they start ('random', 'zero' or 'mean_after_training', see `oov`).
  """

  name: str
  vocabulary_size: int
  dimension: int
  combiner: str
  initializer: Optional[Callable[..., Any]]
  learning_rate_fn: Optional[Callable[[Any], Any]]
  feature_keys: Tuple[str, ...]
  num_oov_rows: int = 0
  oov_rows: str = oov.RANDOM

  @property
  def first_oov_row(self) -> int:
    return self.vocabulary_size - self.num_oov_rows

  def compiled_initializer(self) -> Optional[Callable[..., Any]]:
    """The `TableConfig.initializer`: zero OOV rows wrap the table's own."""
    if self.oov_rows != oov.ZERO or not self.num_oov_rows:
      return self.initializer
    return oov.ZeroOovRows(self.initializer, self.first_oov_row,
                           self.vocabulary_size, self.name)


@dataclasses.dataclass(frozen=True)
class ResolvedEmbeddingSpec:
  """Tables and features with concrete sizes, ready to compile.

  Attributes:
    features: `ResolvedFeature` by feature key, in declaration order.
    tables: `ResolvedTable` by table name, in declaration order.
    optimizer: the spec's optimizer.
  """

  features: Mapping[str, ResolvedFeature]
  tables: Mapping[str, ResolvedTable]
  optimizer: optimizers.EmbeddingOptimizer

  def compile(self, global_step: Any = None) -> Dict[str, Any]:
    """Returns `{feature_key: tf.tpu.experimental.embedding.FeatureConfig}`.

    See `compiler.compile_feature_configs`.
    """
    return compiler.compile_feature_configs(self, global_step)

  def compile_optimizer(self, global_step: Any = None) -> Any:
    """Returns the spec optimizer as a `tf.tpu.experimental.embedding` one."""
    return compiler.compile_optimizer(self.optimizer, global_step)

  def id_mapper(self) -> 'ids.IdMapper':
    """Returns the `tf.Module` mapping input features to table row ids."""
    return ids.IdMapper(list(self.features.values()))

  def map_ids(self, features: Mapping[str, Any]):
    """Maps a features dict to `(ids, weights)`; see `ids.IdMapper`."""
    return self.id_mapper()(features)

  def memory_plan(self) -> memory.MemoryPlan:
    """Returns the bytes of every table and of its optimizer slots."""
    return memory.plan_memory(self.tables.values(), self.optimizer)
