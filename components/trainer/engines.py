"""Which TPU embedding engine trains, and what each one accepts.

TensorFlow ships one mid-level class per kind of TPU embedding hardware, read
from ``strategy.extended.tpu_hardware_feature.embedding_feature``:

* ``V1`` -> ``tf.tpu.experimental.embedding.TPUEmbedding`` (engine 'v1'):
  TPU v2, v3 and v4; rows sharded over the TPU devices.
* ``V2`` -> ``TPUEmbeddingV2`` (engine 'v2', ``tpu_embedding_v3.py``): the
  SparseCores of TPU v5p and v6e; rows sharded over the SparseCores, padded.
* ``UNSUPPORTED`` -> ``TPUEmbeddingV0`` (engine 'v0', ``tpu_embedding_v1.py``):
  no embedding hardware (TPU v5e); tables replicated on every device.

Everything here is plain Python over the resolved spec and the compiled
configs, so it runs (and is tested) without a TPU: the engine choice, the
per-engine validation, the arguments each class is built with, the V2 input
layout of sequence features, and the SparseCore limits.
"""

import dataclasses
import inspect
import re
from typing import Any, Dict, List, Mapping, Optional, Tuple

import tensorflow as tf
from absl import logging

from components.embedding import memory
from components.trainer import sparsecore_layouts

AUTO = 'auto'
V0, V1, V2 = memory.ENGINE_V0, memory.ENGINE_V1, memory.ENGINE_V2
ENGINES = (V0, V1, V2)
FEATURE_ENGINE = {'V1': V1, 'V2': V2, 'UNSUPPORTED': V0}
ENGINE_CLASS = {V0: 'TPUEmbeddingV0', V1: 'TPUEmbedding', V2: 'TPUEmbeddingV2'}
# Table names become variable and checkpoint names on every engine.
TABLE_NAME = re.compile(r'^[A-Za-z0-9][A-Za-z0-9_.\-]*$')
# TF 2.16 TPUEmbeddingV2.apply_gradients handles these optimizers and passes
# none of the options below to its SparseCore kernels (it would ignore them).
V2_OPTIMIZERS = ('SGD', 'Adagrad', 'AdagradMomentum', 'Adam', 'FTRL')
V2_IGNORED_OPTIONS = ('clipvalue', 'clip_weight_min', 'clip_weight_max',
                      'weight_decay_factor')
# TPUEmbeddingV2's fixed SparseCore buffer sizes on TF 2.16 (its __init__).
TF216_MAX_IDS_PER_CHIP_PER_SAMPLE = 64


def describe(engine: str) -> str:
  """'v2 (TPUEmbeddingV2, SparseCore)' and the like, for logs and results."""
  where = {V0: 'tables replicated on every TPU device',
           V1: 'TPU embedding engine, tables sharded',
           V2: 'SparseCore, tables sharded'}[engine]
  return f'{engine} ({ENGINE_CLASS[engine]}: {where})'


def feature_value(embedding_feature: Any) -> str:
  """'V1', 'V2' or 'UNSUPPORTED' from the enum TF reports (or its string)."""
  value = getattr(embedding_feature, 'value', embedding_feature)
  value = str(value).upper()
  if value not in FEATURE_ENGINE:
    raise ValueError(f'Unknown TPU embedding feature {embedding_feature!r}; '
                     f'known: {sorted(FEATURE_ENGINE)}.')
  return value


def select_engine(embedding_feature: Any, requested: str = AUTO) -> str:
  """The engine for the hardware's embedding feature, or the forced one.

  'v0' runs on any TPU (it uses only the TensorCores); 'v1' and 'v2' need
  the hardware they drive.

  Raises:
    ValueError: an unknown engine, or one the hardware cannot run.
  """
  feature = feature_value(embedding_feature)
  if requested == AUTO:
    return FEATURE_ENGINE[feature]
  if requested not in ENGINES:
    raise ValueError(f'TrainingConfig.embedding_engine must be one of '
                     f'{[AUTO, *ENGINES]}, got {requested!r}.')
  if requested != V0 and FEATURE_ENGINE[feature] != requested:
    raise ValueError(
        f'TrainingConfig.embedding_engine={requested!r} needs a TPU whose '
        f'embedding feature is {ENGINE_FEATURE[requested]}, but this TPU '
        f'reports {feature} (engine {FEATURE_ENGINE[feature]!r}); set '
        f'embedding_engine to {AUTO!r}, {FEATURE_ENGINE[feature]!r} or '
        f'{V0!r}.')
  return requested


ENGINE_FEATURE = {engine: feature for feature, engine in FEATURE_ENGINE.items()}


def engine_for_tpu_type(tpu_type: str, requested: str = AUTO) -> str:
  """The engine a TPU generation selects, from the documented feature."""
  return select_engine(memory.tpu_generation(tpu_type).embedding_feature,
                       requested)


def check_batch_size(batch_size: int, num_replicas: int) -> None:
  """TPUs split every global batch evenly over the replicas."""
  if batch_size % num_replicas:
    raise ValueError(
        f'batch_size={batch_size} is not divisible by the {num_replicas} TPU '
        f'replicas; use a multiple of {num_replicas}.')


def _v2_weights_supported() -> bool:
  """TF 2.16's V2 tests a RaggedTensor weight for truth, which raises."""
  from tensorflow.python.tpu import tpu_embedding_v3  # pylint: disable=g-import-not-at-top
  return 'if not weight:' not in inspect.getsource(tpu_embedding_v3)


def validation_errors(engine: str, resolved: Any, batch_size: int,
                      num_replicas: int,
                      sparse_cores_per_chip: int = 0) -> List[str]:
  """Everything ``engine`` would refuse in this spec, before any TPU time.

  Args:
    engine: 'v0', 'v1' or 'v2'.
    resolved: the ``ResolvedEmbeddingSpec``.
    batch_size: the global batch size.
    num_replicas: TPU devices of the slice.
    sparse_cores_per_chip: for V2, SparseCores per chip (the SparseCore
      preprocessing splits each feature's samples evenly over them).
  """
  errors = []
  if batch_size % num_replicas:
    errors.append(f'batch_size={batch_size} is not divisible by the '
                  f'{num_replicas} TPU replicas; use a multiple of '
                  f'{num_replicas}.')
  for table in resolved.tables.values():
    if not TABLE_NAME.match(table.name or ''):
      errors.append(f'Table {table.name!r}: TPU table names must start with '
                    'a letter or digit and hold only letters, digits, "_", '
                    '"." and "-"; rename its column(s).')
  optimizer = resolved.optimizer
  name = type(optimizer).__name__
  if engine == V2:
    errors += _v2_errors(resolved, optimizer, name,
                         max(batch_size // num_replicas, 1),
                         sparse_cores_per_chip)
  elif engine == V0:
    from components.embedding import tpu_update_rules  # pylint: disable=g-import-not-at-top
    try:
      tpu_update_rules.check_supported(optimizer.to_tf(learning_rate=0.1),
                                       'every table')
    except NotImplementedError as error:
      errors.append(f'Engine v0 applies the embedding optimizer with the '
                    f'TPU update rules of this package: {error}')
  return errors


def _v2_errors(resolved: Any, optimizer: Any, name: str,
               per_replica_batch: int, sparse_cores_per_chip: int
              ) -> List[str]:
  errors = []
  if name not in V2_OPTIMIZERS:
    errors.append(f'Engine v2 (SparseCore) does not train {name}; use one of '
                  f'{list(V2_OPTIMIZERS)}.')
  for option in V2_IGNORED_OPTIONS:
    if getattr(optimizer, option, None) is not None:
      errors.append(
          f'{name}.{option}={getattr(optimizer, option)!r}: TF '
          f'{tf.__version__} applies no {option} on SparseCore (v2); remove '
          'it or force embedding_engine="v0" on a slice where it fits.')
  if name == 'Adam' and not optimizer.lazy_adam:
    errors.append('Adam(lazy_adam=False): SparseCore (v2) updates only the '
                  'rows a batch touched; set lazy_adam=True.')
  for table in resolved.tables.values():
    if table.vocabulary_size > memory.INT32_MAX_ROWS:
      errors.append(
          f'Table {table.name!r} has {table.vocabulary_size:,} rows; '
          f'SparseCore ids are int32 (at most {memory.INT32_MAX_ROWS:,} '
          'rows): hash or split the vocabulary.')
  weights_ok = _v2_weights_supported()
  for key, feature in resolved.features.items():
    if feature.weight_key and not weights_ok:
      errors.append(
          f'Feature {key!r} is weighted ({feature.weight_key!r}): '
          f'TPUEmbeddingV2 of TF {tf.__version__} fails on ragged weights; '
          'drop the weights or use a TF whose V2 accepts them.')
    samples = per_replica_batch * max(feature.max_sequence_length, 1)
    if sparse_cores_per_chip and samples % sparse_cores_per_chip:
      errors.append(
          f'Feature {key!r}: {samples} samples per replica (per-replica '
          f'batch {per_replica_batch} x sequence length '
          f'{max(feature.max_sequence_length, 1)}) do not divide over the '
          f'{sparse_cores_per_chip} SparseCores of a chip; use a per-replica '
          f'batch that is a multiple of {sparse_cores_per_chip}.')
  return errors


def validate(engine: str, resolved: Any, batch_size: int, num_replicas: int,
             sparse_cores_per_chip: int = 0) -> None:
  """Raises one ValueError listing every refusal of ``validation_errors``."""
  errors = validation_errors(engine, resolved, batch_size, num_replicas,
                             sparse_cores_per_chip)
  if errors:
    raise ValueError(f'The embedding spec cannot train on engine '
                     f'{describe(engine)}:\n- ' + '\n- '.join(errors))


def v2_feature_configs(feature_config: Mapping[str, Any],
                       per_replica_batch: int) -> Dict[str, Any]:
  """Copies of the configs with the ``output_shape`` TPUEmbeddingV2 needs.

  ``[per_replica_batch]`` for a bag, ``[per_replica_batch,
  max_sequence_length]`` for a sequence (fed one position per sample, see
  ``v2_sequence_input``). Tables are shared, as in the original.
  """
  embedding = tf.tpu.experimental.embedding
  result = {}
  for key, config in feature_config.items():
    shape = [per_replica_batch]
    if config.max_sequence_length:
      shape.append(config.max_sequence_length)
    result[key] = embedding.FeatureConfig(
        table=config.table, max_sequence_length=config.max_sequence_length,
        validate_weights_and_indices=config.validate_weights_and_indices,
        output_shape=shape, name=config.name or key)
  return result


def v2_sequence_input(ids: tf.RaggedTensor,
                      max_sequence_length: int) -> tf.RaggedTensor:
  """A ``[batch, None]`` sequence as ``[batch * L, <=1]``: one id per position.

  TPUEmbeddingV2 combines every ragged row into one sample; with one row per
  position (empty past the sequence's end, ids past L truncated) the
  lookup gives ``[batch, L, dim]`` with zero padding, as V1 and the CPU do.
  """
  ids = ids[:, :max_sequence_length]
  positions = tf.range(tf.size(ids.values, out_type=tf.int64),
                       dtype=tf.int64) - tf.gather(
                           ids.row_splits, ids.value_rowids())
  rows = ids.value_rowids() * max_sequence_length + positions
  return tf.RaggedTensor.from_value_rowids(
      ids.values, rows, nrows=ids.nrows() * max_sequence_length)


def v2_inputs(ids: Mapping[str, Any],
              feature_config: Mapping[str, Any]) -> Dict[str, Any]:
  """The ids of a batch laid out for TPUEmbeddingV2 (sequences per position)."""
  result = dict(ids)
  for key, config in feature_config.items():
    if config.max_sequence_length and isinstance(ids[key], tf.RaggedTensor):
      result[key] = v2_sequence_input(ids[key], config.max_sequence_length)
  return result


@dataclasses.dataclass(frozen=True)
class SparseCoreLimits:
  """SparseCore buffer limits, as the embedding statistics recommend them.

  Attributes:
    tables: ``{table_name: {'max_ids_per_partition': int,
      'max_unique_ids_per_partition': int}}``, optionally with
      ``'share_dropped_by_defaults'`` (the share of ids TF's fixed defaults
      would drop).
    max_ids_per_chip_per_sample: ids of one sample on one chip.
  """

  tables: Mapping[str, Mapping[str, Any]]
  max_ids_per_chip_per_sample: Optional[int] = None

  @classmethod
  def from_dict(cls, values: Mapping[str, Any]) -> 'SparseCoreLimits':
    """From ``{'tables': {...}, 'max_ids_per_chip_per_sample': n}``."""
    return cls(dict(values.get('tables', {})),
               values.get('max_ids_per_chip_per_sample'))

  def check(self, table_names: List[str]) -> None:
    """Refuses unknown tables and limits that are not ints > 0."""
    for table, limits in self.tables.items():
      if table not in table_names:
        raise ValueError(f'SparseCore limits name table {table!r}, which the '
                         f'spec does not have; its tables: {table_names}. '
                         'Recompute the statistics for this spec.')
      for key in ('max_ids_per_partition', 'max_unique_ids_per_partition'):
        value = limits.get(key)
        if not isinstance(value, int) or value <= 0:
          raise ValueError(f'SparseCore limits of table {table!r}: {key} must '
                           f'be an int > 0, got {value!r}.')
    value = self.max_ids_per_chip_per_sample
    if value is not None and (not isinstance(value, int) or value <= 0):
      raise ValueError('SparseCore limits: max_ids_per_chip_per_sample must '
                       f'be an int > 0, got {value!r}.')

  def config_arguments(self) -> Dict[str, Any]:
    """Keyword arguments of ``SparseCoreEmbeddingConfig`` (TF >= 2.18).

    TF's per-table ``max_ids_per_table`` / ``max_unique_ids_per_table`` set
    the per-partition buffers; ids are never dropped silently.
    """
    arguments = {
        'max_ids_per_table': {t: v['max_ids_per_partition']
                              for t, v in self.tables.items()},
        'max_unique_ids_per_table': {t: v['max_unique_ids_per_partition']
                                     for t, v in self.tables.items()},
        'allow_id_dropping': False,
    }
    if self.max_ids_per_chip_per_sample is not None:
      arguments['max_ids_per_chip_per_sample'] = (
          self.max_ids_per_chip_per_sample)
    return arguments

  def tables_dropping_ids(self) -> List[str]:
    """Tables whose ids TF's fixed defaults would drop (per the statistics)."""
    return sorted(t for t, v in self.tables.items()
                  if v.get('share_dropped_by_defaults'))


def sparse_core_config(limits: Optional[SparseCoreLimits],
                       module: Any = None) -> Optional[Any]:
  """A ``SparseCoreEmbeddingConfig`` where TF has one; else warns, None.

  Args:
    limits: the statistics' limits, or None (TF's defaults apply).
    module: ``tf.tpu.experimental.embedding`` (tests pass a stand-in).
  """
  module = module or tf.tpu.experimental.embedding
  if limits is None:
    return None
  config_class = getattr(module, 'SparseCoreEmbeddingConfig', None)
  if config_class is None:
    logging.warning('%s', tf216_limits_warning(limits))
    return None
  accepted = inspect.signature(config_class).parameters
  arguments = {k: v for k, v in limits.config_arguments().items()
               if k in accepted}
  return config_class(**arguments)


def tf216_limits_warning(limits: SparseCoreLimits) -> str:
  """What applies when TF has no SparseCoreEmbeddingConfig (TF 2.16/2.17)."""
  parts = [
      f'TF {tf.__version__} has no SparseCoreEmbeddingConfig: TPUEmbeddingV2 '
      f'uses its fixed SparseCore buffers (max_ids_per_chip_per_sample='
      f'{TF216_MAX_IDS_PER_CHIP_PER_SAMPLE}, per-partition limits from '
      'libtpu), not the limits the statistics recommend.']
  need = limits.max_ids_per_chip_per_sample
  if need and need > TF216_MAX_IDS_PER_CHIP_PER_SAMPLE:
    parts.append(f'The data needs max_ids_per_chip_per_sample={need}.')
  dropping = limits.tables_dropping_ids()
  if dropping:
    parts.append(f'The statistics show ids dropped by the defaults in '
                 f'tables {dropping}.')
  parts.append('Use TF >= 2.18 (tensorflow-tpu) to apply them.')
  return ' '.join(parts)


def embedding_arguments(engine: str, feature_config: Mapping[str, Any],
                        optimizer: Any, per_replica_batch: int,
                        pipeline_execution_with_tensor_core: bool = False,
                        sparse_core_embedding_config: Any = None
                       ) -> Tuple[str, Dict[str, Any]]:
  """The TF class name and keyword arguments that build ``engine``."""
  if engine == V1:
    return ENGINE_CLASS[V1], dict(
        feature_config=feature_config, optimizer=optimizer,
        pipeline_execution_with_tensor_core=(
            pipeline_execution_with_tensor_core))
  if engine == V0:
    return ENGINE_CLASS[V0], dict(feature_config=feature_config,
                                  optimizer=optimizer)
  if engine == V2:
    arguments = dict(
        feature_config=v2_feature_configs(feature_config, per_replica_batch),
        optimizer=optimizer,
        pipeline_execution_with_tensor_core=(
            pipeline_execution_with_tensor_core))
    if sparse_core_embedding_config is not None:
      arguments['sparse_core_embedding_config'] = sparse_core_embedding_config
    return ENGINE_CLASS[V2], arguments
  raise ValueError(f'Unknown engine {engine!r}; known: {list(ENGINES)}.')


def build_embedding(engine: str, *args: Any, **kwargs: Any) -> Any:
  """Builds the engine's TF object (under a ``TPUStrategy`` scope)."""
  class_name, arguments = embedding_arguments(engine, *args, **kwargs)
  embedding = getattr(tf.tpu.experimental.embedding, class_name)(**arguments)
  if engine == V2:
    # Its checkpoints then carry what serving needs to unstack its tables.
    sparsecore_layouts.record_for_serving(embedding)
  return embedding
