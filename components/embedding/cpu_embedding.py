"""TPU embedding tables on the CPU or GPU, with the TPU's semantics.

`CpuEmbedding` stands in for `tf.tpu.experimental.embedding.TPUEmbedding` when
no TPU is at hand, so that a pipeline tested locally trains as it would on a
TPU:

* Variables: it is a `tf.tpu.experimental.embedding.TPUEmbeddingForServing`,
  which creates each table and its optimizer slots exactly as `TPUEmbedding`
  does (same shapes, initializers and checkpoint keys, such as `<table>` and
  `<table>/<slot>`), so checkpoints move between the two classes. Random
  tables are initialized in place, row block by row block, with the same
  values (see `initializers.RowRecipe`): building costs about the memory of
  the tables and slots themselves, not three full-size temporaries per table.
* Lookups: `tf.tpu.experimental.embedding.serving_embedding_lookup`,
  TensorFlow's CPU version of the TPU lookup (combiners, weights, zero padding
  and truncation of sequence features to `max_sequence_length`). Under a
  `tf.GradientTape` the tables get `tf.IndexedSlices` gradients. Rank-2
  `tf.SparseTensor` inputs of non-sequence features are looked up as
  `tf.RaggedTensor`s: on a SparseTensor that function looks up id 0 for each
  empty row, which would hand row 0 a zero gradient (lazy Adam and FTRL would
  then move it, unlike a TPU), and it drops ids whose weight is not positive.
  Unweighted bags (rank-2 sparse or ragged ids) skip both: `bag_lookup` reduces
  their rows in one fused op each, with the same combiners (the speed path).
* Training: `apply_gradients` applies each table's embedding optimizer with the
  TPU's update rules, as sparse updates of the rows a batch touched (see
  `tpu_update_rules`); Keras optimizers follow other rules. With
  `defer_updates`, the updates of large tables are applied during the next
  step instead (`deferred_updates`; the trainer's CPU backend does this).

Ids must be validated upstream to lie in `[0, vocabulary_size)`: out of range,
the CPU lookup raises, a GPU gather returns zeros and a TPU clamps. With
`validate_ids=True` (the default) each lookup first asserts the range and fails
with an error naming the feature and the table's size.

Typical use::

  embedding = CpuEmbedding(
      feature_config, tf.tpu.experimental.embedding.Adagrad(0.1))
  with tf.GradientTape() as tape:
    activations = embedding(features)
    loss = ...
  gradients = tape.gradient(loss, embedding.trainable_variables)
  embedding.apply_gradients(gradients)

Only the default (or a one-device) distribution strategy is supported. The
tables are not Keras weights: attach the object to a Keras model as an
attribute for checkpointing, and train the tables with `apply_gradients`, not
with the model's Keras optimizer.
"""

import dataclasses
import functools
from typing import (Any, Callable, Dict, List, Mapping, Optional, Sequence,
                    Tuple, Union)

import tensorflow as tf

from components.embedding import bag_lookup
from components.embedding import deferred_updates
from components.embedding import initializers
from components.embedding import native_kernels as native_kernels_lib
from components.embedding import tpu_update_rules

_embedding = tf.tpu.experimental.embedding

TableKey = Union[str, Any]  # A table name or its `TableConfig`.
Gradient = Optional[tf.IndexedSlices]


@dataclasses.dataclass(frozen=True)
class _Settings:
  """Plain (untracked) settings, kept out of the checkpointed object graph."""
  feature_config: Any
  tables: Tuple[Any, ...]
  feature_names: Tuple[str, ...]
  validate_ids: bool
  fused_bags: bool
  native_kernels: bool
  defer_updates: bool


def _ordered_tables(feature_config: Any) -> Tuple[Any, ...]:
  """The distinct tables, in order of first use (as `TPUEmbedding` orders)."""
  tables = []
  for feature in tf.nest.flatten(feature_config):
    if feature.table not in tables:
      tables.append(feature.table)
  return tuple(tables)


def _leaf_paths(structure: Any, prefix: str = '') -> List[str]:
  """Names the leaves of a nest of dicts, lists and tuples in flatten order."""
  if isinstance(structure, Mapping):
    paths = []
    for key in sorted(structure):
      paths += _leaf_paths(structure[key], f'{prefix}{key}/')
    return paths
  if isinstance(structure, (list, tuple)):
    paths = []
    for index, item in enumerate(structure):
      paths += _leaf_paths(item, f'{prefix}{index}/')
    return paths
  return [prefix.rstrip('/') or '0']


def _feature_names(feature_config: Any) -> Tuple[str, ...]:
  """Names each feature for error messages: its path, else its position."""
  flat = tf.nest.flatten(feature_config)
  paths = _leaf_paths(feature_config)
  if len(paths) != len(flat):
    paths = [str(index) for index in range(len(flat))]
  return tuple(
      feature.name or path for feature, path in zip(flat, paths))


def _check_table(table: Any) -> None:
  """Raises for table options the CPU cannot reproduce."""
  if table.quantization_config is not None:
    raise NotImplementedError(
        f'Table {table.name!r}: quantization_config (simulated quantization of '
        'the lookups) is not supported by CpuEmbedding.')
  if table.optimizer is not None:
    tpu_update_rules.check_supported(table.optimizer, table.name)


def _check_strategy() -> None:
  """Raises under a distribution strategy with more than one replica."""
  if not tf.distribute.has_strategy():
    return
  strategy = tf.distribute.get_strategy()
  if strategy.num_replicas_in_sync != 1:
    raise NotImplementedError(
        'CpuEmbedding supports the default or a one-device strategy only; '
        f'got {type(strategy).__name__} with '
        f'{strategy.num_replicas_in_sync} replicas.')


def _assert_ids_in_range(ids: tf.Tensor, vocabulary_size: int,
                         feature_name: str, table_name: str) -> tf.Tensor:
  """Returns `ids`, after asserting that each lies in [0, vocabulary_size)."""
  message = (f'Feature {feature_name!r}: ids must lie in [0, '
             f'{vocabulary_size}), the vocabulary_size of table '
             f'{table_name!r}.')
  checks = [
      tf.debugging.assert_non_negative(ids, message=message),
      tf.debugging.assert_less(
          ids, tf.cast(vocabulary_size, ids.dtype), message=message),
  ]
  with tf.control_dependencies(checks):
    return tf.identity(ids)


def _validated_input(inputs: Any, feature: Any, feature_name: str) -> Any:
  """Returns `inputs` with an id range check attached to its values."""
  table = feature.table
  if isinstance(inputs, tf.SparseTensor):
    values = _assert_ids_in_range(inputs.values, table.vocabulary_size,
                                  feature_name, table.name)
    return tf.SparseTensor(inputs.indices, values, inputs.dense_shape)
  if isinstance(inputs, tf.RaggedTensor):
    values = _assert_ids_in_range(inputs.flat_values, table.vocabulary_size,
                                  feature_name, table.name)
    return inputs.with_flat_values(values)
  return _assert_ids_in_range(
      tf.convert_to_tensor(inputs), table.vocabulary_size, feature_name,
      table.name)


def _sparse_bag_as_ragged(inputs: Any, weights: Any,
                          feature: Any) -> Tuple[Any, Any]:
  """Returns a rank-2 sparse bag (non-sequence) input as a RaggedTensor.

  For a `tf.SparseTensor`, `serving_embedding_lookup` calls
  `safe_embedding_lookup_sparse`, which looks up id 0 with weight 0 for each
  empty row (row 0 would then get a zero gradient, and lazy Adam or FTRL would
  move it although the TPU leaves it alone) and drops ids whose weight is not
  positive (the TPU keeps them). Its RaggedTensor path has neither effect and
  otherwise combines identically.
  """
  if (not isinstance(inputs, tf.SparseTensor) or feature.max_sequence_length or
      feature.output_shape or inputs.shape.rank != 2):
    return inputs, weights
  if weights is not None and isinstance(weights, tf.SparseTensor):
    weights = _sparse_rows_as_ragged(weights)
  return _sparse_rows_as_ragged(inputs), weights


def _sparse_rows_as_ragged(sparse: tf.SparseTensor) -> tf.RaggedTensor:
  """The values of each row, in order, whatever their column positions.

  `tf.RaggedTensor.from_sparse` refuses a row whose positions have gaps
  ("SparseTensor is not right-ragged"), as left by ids dropped inside a row;
  a bag's combiner does not depend on positions, so only the row ids count.
  """
  return tf.RaggedTensor.from_value_rowids(
      sparse.values, sparse.indices[:, 0], nrows=sparse.dense_shape[0])


def _initialized_in_place(next_creator: Callable[..., tf.Variable],
                          **kwargs: Any) -> tf.Variable:
  """A variable creator that finishes random tables in place, block by block.

  `TPUEmbeddingForServing` creates each table from
  `functools.partial(initializer, shape, dtype=dtype)`; built whole, a
  truncated normal holds three full-size tensors at once (the unit draw, the
  product and the sum), and TensorFlow's CPU allocator keeps what it reached.
  When the initializer has a `RowRecipe`, the variable is created from the
  unit draw and finished in place (same values). Any other initial value,
  such as a checkpoint's restored on creation, is left to `next_creator`.
  """
  initial_value = kwargs.get('initial_value')
  recipe = None
  if (tf.executing_eagerly() and isinstance(initial_value, functools.partial)
      and len(initial_value.args) == 1 and
      set(initial_value.keywords) <= {'dtype'}):
    recipe = initializers.row_recipe(
        initial_value.func, initial_value.args[0],
        initial_value.keywords.get('dtype', tf.float32))
  if recipe is None:
    return next_creator(**kwargs)
  variable = next_creator(**dict(kwargs, initial_value=recipe.draw))
  initializers.initialize_in_place(variable, recipe)
  return variable


class CpuEmbedding(_embedding.TPUEmbeddingForServing):
  """TPU embedding tables, lookups and embedding optimizers on a CPU or GPU.

  The tables and slots have `TPUEmbedding`'s layout (checkpoints restore across
  the two classes); lookups are `serving_embedding_lookup`; `apply_gradients`
  applies the TPU's update rules sparsely.
  """

  def __init__(self,
               feature_config: Any,
               optimizer: Optional[Any] = None,
               validate_ids: bool = True,
               fused_bags: bool = True,
               native_kernels: bool = False,
               defer_updates: bool = False):
    """Creates the embedding; its variables are built on first use.

    Args:
      feature_config: a nested structure of
        `tf.tpu.experimental.embedding.FeatureConfig`.
      optimizer: the global `tf.tpu.experimental.embedding` optimizer (SGD,
        Adagrad, AdagradMomentum, Adam or FTRL) for the tables whose
        `TableConfig.optimizer` is None. None creates no slots for those
        tables, which then cannot be trained.
      validate_ids: whether each lookup asserts that the ids lie in
        `[0, vocabulary_size)`, failing with an error that names the feature.
        Leave it on unless the ids were checked before (as `IdMapper` does).
      fused_bags: whether unweighted bags are looked up with one fused op
        each (`bag_lookup`); False keeps `serving_embedding_lookup` for every
        feature (the reference the fused path is tested against).
      native_kernels: whether fused bag lookups and sparse updates use the
        prefetching kernels of `native_kernels` where they are built (same
        results, faster on large tables). For training only: a SavedModel
        that holds them needs their library to load, so serving keeps
        TensorFlow's ops.
      defer_updates: with `native_kernels`, whether the sparse updates of
        large tables are deferred (`deferred_updates`): `apply_gradients`
        keeps them pending, and the caller must apply them, each step with
        `apply_deferred_read_by(next features)` before the lookup and
        `apply_deferred(rest)` after it, and `apply_deferred()` before the
        tables are read otherwise (same values as without).

    Raises:
      NotImplementedError: an option these rules cannot reproduce (see
        `tpu_update_rules`), a table's `quantization_config`, or a
        distribution strategy with several replicas.
    """
    _check_strategy()
    super().__init__(feature_config, optimizer)
    tables = _ordered_tables(feature_config)
    for table in tables:
      _check_table(table)
    self._settings = _Settings(
        feature_config=feature_config,
        tables=tables,
        feature_names=_feature_names(feature_config),
        validate_ids=validate_ids,
        fused_bags=fused_bags,
        native_kernels=native_kernels,
        defer_updates=defer_updates and native_kernels)
    self._deferred: Optional[deferred_updates.DeferredUpdates] = None

  def build(self) -> None:
    """Creates the tables and slots; random tables are initialized in place.

    Same variables, names and values as `TPUEmbeddingForServing.build`, with
    a peak memory of the variables themselves (plus 4 MiB blocks) instead of
    up to three full-size temporaries per table (see `_initialized_in_place`).
    """
    if self._built:
      return
    with tf.variable_creator_scope(_initialized_in_place):
      super().build()

  def __call__(self, features: Any, weights: Optional[Any] = None) -> Any:
    """Looks up `features`; see `embedding_lookup`."""
    return self.embedding_lookup(features, weights)

  # The lookup and the update are plain TensorFlow code without tensor-
  # dependent Python control flow: AutoGraph has nothing to convert in them,
  # and converting them (and the TensorFlow code they call) took seconds of
  # every trace of a training, evaluation or serving function.
  @tf.autograph.experimental.do_not_convert
  def embedding_lookup(self,
                       features: Any,
                       weights: Optional[Any] = None) -> Any:
    """Returns the embedding activations of `features`.

    Args:
      features: a nested structure, like the `feature_config`, of int ids:
        `tf.Tensor`, `tf.SparseTensor` or `tf.RaggedTensor`, each id in
        `[0, vocabulary_size)`.
      weights: None, or the same structure of float weights for the sparse or
        ragged inputs of non-sequence features (entries may be None).

    Returns:
      The activations, in the structure of `features`: `[batch, dim]` for a
      combined feature, `[batch, max_sequence_length, dim]` for a sequence
      feature (zero padded, truncated), `[..., dim]` for a dense input.
    """
    features, weights = self._prepared(features, weights)
    if not self._settings.fused_bags:
      return _embedding.serving_embedding_lookup(
          features, weights, self.embedding_tables,
          self._settings.feature_config)
    return self._lookup_each(features, weights)

  def _lookup_each(self, features: Any, weights: Optional[Any]) -> Any:
    """Unweighted bags with `bag_lookup`, the rest as serving lookups."""
    flat_features = tf.nest.flatten(features)
    flat_weights = (tf.nest.flatten(weights) if weights is not None else
                    [None] * len(flat_features))
    tables = self.embedding_tables
    activations = []
    for inputs, weight, feature in zip(flat_features, flat_weights,
                                       tf.nest.flatten(
                                           self._settings.feature_config)):
      if bag_lookup.is_fused_bag(inputs, weight, feature):
        activations.append(bag_lookup.lookup_bag(
            tables[feature.table], inputs, feature.table.combiner,
            native=self._settings.native_kernels))
      else:
        activations.append(_embedding.serving_embedding_lookup(
            inputs, weight, tables, feature))
    return tf.nest.pack_sequence_as(features, activations)

  def _prepared(self, features: Any, weights: Optional[Any]) -> Tuple[Any, Any]:
    """Checks the ids' range; sparse bags off the fused path become ragged."""
    config = self._settings.feature_config
    tf.nest.assert_same_structure(features, config)
    flat_features = tf.nest.flatten(features)
    flat_weights = [None] * len(flat_features)
    if weights is not None:
      tf.nest.assert_same_structure(features, weights)
      flat_weights = tf.nest.flatten(weights)
    prepared = []
    for inputs, weight, feature, name in zip(flat_features, flat_weights,
                                             tf.nest.flatten(config),
                                             self._settings.feature_names):
      if self._settings.validate_ids:
        inputs = _validated_input(inputs, feature, name)
      if self._settings.fused_bags and bag_lookup.is_fused_bag(
          inputs, weight, feature):
        prepared.append((inputs, weight))  # Looked up as it is: no ragged.
      else:
        prepared.append(_sparse_bag_as_ragged(inputs, weight, feature))
    features = tf.nest.pack_sequence_as(features, [p[0] for p in prepared])
    if weights is not None:
      weights = tf.nest.pack_sequence_as(weights, [p[1] for p in prepared])
    return features, weights

  @property
  def tables(self) -> Tuple[Any, ...]:
    """The `TableConfig`s, in the order of `trainable_variables`."""
    return self._settings.tables

  @property
  def trainable_variables(self) -> List[tf.Variable]:
    """The embedding tables, one per `TableConfig` in `tables` order."""
    tables = self.embedding_tables
    return [tables[table] for table in self._settings.tables]

  def slot_variables(self, table: TableKey) -> Dict[str, tf.Variable]:
    """The optimizer slot variables of `table` (a name or `TableConfig`)."""
    variables = self._table_variables(self._find_table(table))
    return {
        name: var for name, var in variables.items() if name != 'parameters'
    }

  def _find_table(self, key: TableKey) -> Any:
    """Returns the `TableConfig` named by `key` (a name or the config)."""
    for table in self._settings.tables:
      if key is table or key == table.name:
        return table
    raise ValueError(f'Unknown embedding table {key!r}; the tables are '
                     f'{[table.name for table in self._settings.tables]}.')

  def _table_variables(self, table: Any) -> Dict[str, tf.Variable]:
    """The table's variable and its slots, keyed 'parameters' and slot names."""
    with tf.init_scope():  # Built eagerly, even when first used in a trace.
      self.build()
    # `TPUEmbeddingForServing` exposes the tables only; the slots it creates
    # are kept in the private `_variables` dict of its base class.
    return dict(self._variables[table.name])

  @tf.autograph.experimental.do_not_convert
  def apply_gradients(
      self, gradients: Union[Sequence[Gradient], Mapping[TableKey, Gradient]]
  ) -> None:
    """Applies each table's embedding optimizer with the TPU's update rules.

    Works eagerly and inside `tf.function`. A learning rate given as a callable
    is called once per call of this method.

    Args:
      gradients: the tables' gradients, as `tf.IndexedSlices` (what
        `tf.GradientTape.gradient` returns for lookups) or None for a table
        that was not looked up: either a sequence in the order of
        `trainable_variables`, or a mapping keyed by table name or
        `TableConfig`.

    Raises:
      ValueError: a gradient for a table without optimizer, an unknown table,
        or a sequence of the wrong length.
      TypeError: a gradient that is not `tf.IndexedSlices`.
    """
    by_name = self._gradients_by_table_name(gradients)
    learning_rates = {}
    for table in self._settings.tables:
      gradient = by_name.get(table.name)
      optimizer = table.optimizer
      if optimizer is None:
        if gradient is not None:
          raise ValueError(f'Table {table.name!r} has a gradient but no '
                           'optimizer (neither its own nor a global one).')
        continue
      if gradient is None and not tpu_update_rules.is_dense(optimizer):
        continue
      self._apply_table(table, gradient,
                        self._learning_rate(optimizer, learning_rates))

  def _gradients_by_table_name(
      self, gradients: Union[Sequence[Gradient], Mapping[TableKey, Gradient]]
  ) -> Dict[str, Gradient]:
    """Keys the gradients by table name, checking their types."""
    if isinstance(gradients, Mapping):
      pairs = [(self._find_table(key), grad) for key, grad in gradients.items()]
    else:
      gradients = list(gradients)
      if len(gradients) != len(self._settings.tables):
        raise ValueError(
            f'Expected {len(self._settings.tables)} gradients, one per table '
            f'in the order of trainable_variables; got {len(gradients)}.')
      pairs = list(zip(self._settings.tables, gradients))
    for table, grad in pairs:
      if grad is not None and not isinstance(grad, tf.IndexedSlices):
        raise TypeError(
            f'The gradient of table {table.name!r} must be tf.IndexedSlices '
            f'(rows looked up) or None; got {type(grad).__name__}.')
    return {table.name: grad for table, grad in pairs}

  @staticmethod
  def _learning_rate(optimizer: Any, cache: Dict[int, tf.Tensor]) -> tf.Tensor:
    """The optimizer's learning rate; each callable is called once per apply."""
    rate = optimizer.learning_rate
    if not callable(rate):
      return tpu_update_rules.evaluate_learning_rate(rate)
    if id(rate) not in cache:
      cache[id(rate)] = tpu_update_rules.evaluate_learning_rate(rate)
    return cache[id(rate)]

  def _apply_table(self, table: Any, gradient: Gradient,
                   learning_rate: tf.Tensor) -> None:
    """Applies one step of the table's optimizer to the table and slots."""
    optimizer = table.optimizer
    variables = self._table_variables(table)
    missing = [
        name for name in tpu_update_rules.slot_names(optimizer)
        if name not in variables
    ]
    if missing:
      raise ValueError(f'Table {table.name!r} lacks the slot variables '
                       f'{missing} of {type(optimizer).__name__}.')
    slots = {
        name: variables[name]
        for name in tpu_update_rules.slot_names(optimizer)
    }
    deferred = self._deferred_updates()
    if tpu_update_rules.is_dense(optimizer):
      tpu_update_rules.apply_dense(optimizer, variables['parameters'], slots,
                                   gradient, learning_rate)
    elif table.name in deferred.table_names:
      deferred.store(table.name, deferred_updates.PendingRows(
          *tpu_update_rules.kernel_gradient(optimizer, gradient),
          learning_rate))
    else:
      tpu_update_rules.apply_sparse(
          optimizer, variables['parameters'], slots, gradient, learning_rate,
          use_native_kernels=self._settings.native_kernels)

  # --- Deferred updates of large tables (`defer_updates`). ---

  def apply_deferred_read_by(
      self, features: Any) -> Dict[str, deferred_updates.PendingRows]:
    """Applies the pending rows that a lookup of `features` reads; returns
    the rest, for `apply_deferred` after that lookup. Nothing without
    `defer_updates`."""
    tf.nest.assert_same_structure(features, self._settings.feature_config)
    deferred = self._deferred_updates()
    ids_by_table: Dict[str, List[tf.Tensor]] = {}
    for inputs, feature in zip(tf.nest.flatten(features),
                               tf.nest.flatten(self._settings.feature_config)):
      if feature.table.name in deferred.table_names:
        ids_by_table.setdefault(feature.table.name, []).append(
            deferred_updates.lookup_ids(inputs))
    return deferred.apply_read_by(ids_by_table)

  def apply_deferred(
      self,
      rest: Optional[Mapping[str, deferred_updates.PendingRows]] = None
  ) -> None:
    """Applies `rest` (from `apply_deferred_read_by`), or every pending row."""
    deferred = self._deferred_updates()
    if rest is None:
      deferred.flush()
    else:
      deferred.apply_rest(rest)

  def _deferred_updates(self) -> deferred_updates.DeferredUpdates:
    """The deferred tables: large, on a CPU, with a native sparse update."""
    if self._deferred is None:
      tables = []
      if self._settings.defer_updates:
        tables = [
            table for table in self._settings.tables
            if table.optimizer is not None and
            not tpu_update_rules.is_dense(table.optimizer) and
            tpu_update_rules.fused_kernel(table.optimizer, native=True) and
            deferred_updates.is_large(table) and
            native_kernels_lib.usable_for(
                self._table_variables(table)['parameters'])
        ]
      self._deferred = deferred_updates.DeferredUpdates(tables,
                                                        self._apply_rows)
    return self._deferred

  def _apply_rows(self, table: Any, ids: tf.Tensor, grads: tf.Tensor,
                  learning_rate: tf.Tensor,
                  positions: Optional[tf.Tensor]) -> None:
    """The table's native update of the distinct rows `ids` (at
    `positions`, or all)."""
    variables = self._table_variables(table)
    slots = {name: variables[name]
             for name in tpu_update_rules.slot_names(table.optimizer)}
    tpu_update_rules.fused_kernel(table.optimizer, native=True)(
        table.optimizer, variables['parameters'], slots, ids, grads,
        learning_rate, positions)
