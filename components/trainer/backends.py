"""Where the embedding lives: the TPU, or the CPU/GPU with the TPU's semantics.

Both backends take the same compiled ``feature_config`` and embedding
optimizer, the same batches (ids already mapped on the host), the same dense
model and loss. They differ only in the device calls:

* ``CpuBackend``: ``CpuEmbedding`` looks ids up with TensorFlow's CPU version
  of the TPU lookup inside the gradient tape, and applies the embedding
  optimizer with the TPU's sparse update rules.
* ``TpuBackend``: under a ``TPUStrategy``, the engine the TPU's embedding
  hardware supports (``engines``): ``TPUEmbedding`` (V1), ``TPUEmbeddingV2``
  (SparseCore) or ``TPUEmbeddingV0`` (replicated tables).
"""

from typing import Any, Callable, Dict, List, Optional, Tuple

import tensorflow as tf
from absl import logging

from components.embedding import cpu_embedding
from components.embedding import native_kernels
from components.embedding import tpu_update_rules
from components.trainer import engines

Batch = Tuple[Dict[str, Any], Dict[str, Any], Dict[str, tf.Tensor], tf.Tensor]
_embedding = tf.tpu.experimental.embedding


def model_inputs(activations: Dict[str, tf.Tensor],
                 dense: Dict[str, tf.Tensor]) -> Dict[str, Any]:
  """The dict every model_fn's model is called with."""
  return {'embeddings': activations, 'features': dense}


def full_weights(ids: Dict[str, Any],
                 weights: Dict[str, Any]) -> Optional[Dict[str, Any]]:
  """Weights shaped like ``ids`` (None where a feature has none)."""
  if not weights:
    return None
  return {key: weights.get(key) for key in ids}


class _Backend:
  """What both backends share: the one-step training function."""

  def step_body(self, model: Any, dense_optimizer: Any, task: Any
               ) -> Callable[[Any], tf.Tensor]:
    raise NotImplementedError

  def finish_steps(self) -> None:
    """Completes what the steps left pending; traced after the last step of
    every training function, before anything else reads the tables."""

  def train_step(self, model: Any, dense_optimizer: Any, task: Any
                ) -> Callable[[Any], tf.Tensor]:
    """A tf.function taking an iterator: one optimizer step, returns loss."""
    step = self.step_body(model, dense_optimizer, task)

    @tf.function
    def train_step(iterator):
      loss = step(iterator)
      self.finish_steps()
      return loss

    return train_step


class CpuBackend(_Backend):
  """Trains on the CPU or a GPU with ``CpuEmbedding``."""

  name = 'cpu'
  engine = 'cpu'

  def __init__(self, feature_config: Dict[str, Any], optimizer: Any,
               validate_ids: bool = False):
    """Builds the tables.

    Args:
      feature_config: the compiled feature configs.
      optimizer: the global embedding optimizer.
      validate_ids: whether every step asserts the ids' range again. Off by
        default: the trainer's batches come from ``IdMapper``, which already
        checks every id against its table on the host (in the input
        pipeline, with an error naming the feature), so a second check in
        the step would only cost time.
    """
    self.strategy = tf.distribute.get_strategy()
    self.num_replicas = 1
    self.embedding = cpu_embedding.CpuEmbedding(
        feature_config, optimizer, validate_ids=validate_ids,
        native_kernels=True, defer_updates=True)
    devices = tf.config.list_logical_devices('GPU')
    self.device_description = (
        f'GPU ({devices[0].name})' if devices else
        'CPU (native embedding kernels)' if native_kernels.library() else
        "CPU (TensorFlow's embedding kernels)")

  def distribute(self, dataset: tf.data.Dataset) -> tf.data.Dataset:
    return dataset

  def distribute_from_function(
      self, dataset_fn: Callable[[tf.distribute.InputContext],
                                 tf.data.Dataset]) -> tf.data.Dataset:
    """The whole input: one pipeline, one replica."""
    return dataset_fn(tf.distribute.InputContext())

  def step_body(self, model: Any, dense_optimizer: Any, task: Any
               ) -> Callable[[Any], tf.Tensor]:
    """One optimizer step on the iterator's next batch; returns the loss.

    Plain Python, to be traced inside a ``tf.function`` (``train_step``, or
    the training loop's multi-step function).
    """

    def step(iterator):
      ids, weights, dense, labels = next(iterator)
      # The last step's deferred updates of large tables: the rows this batch
      # reads before its lookup, the rest after it, while the model runs.
      rest = self.embedding.apply_deferred_read_by(ids)
      with tf.GradientTape() as tape:
        activations = self.embedding(ids, full_weights(ids, weights))
        outputs = model(model_inputs(activations, dense), training=True)
        loss = tf.reduce_mean(task.per_example_loss(labels, outputs))
      with tf.control_dependencies(tf.nest.flatten(activations)):
        self.embedding.apply_deferred(rest)
      table_variables = self.embedding.trainable_variables
      gradients = tape.gradient(loss,
                                table_variables + model.trainable_variables)
      apply_gradients(gradients, table_variables)
      return loss

    # The optimizers hold no user code: tracing them without AutoGraph saves
    # seconds per trace (AutoGraph converts tf_keras's optimizer code, which
    # its rules do not skip). The model's call keeps AutoGraph.
    @tf.autograph.experimental.do_not_convert
    def apply_gradients(gradients, table_variables):
      self.embedding.apply_gradients(gradients[:len(table_variables)])
      dense_optimizer.apply_gradients(
          zip(gradients[len(table_variables):], model.trainable_variables))

    return step

  def finish_steps(self) -> None:
    """Applies the last step's deferred updates of large tables."""
    self.embedding.apply_deferred()

  def predict_step(self, model: Any, element_spec: Optional[Any] = None
                  ) -> Callable[[Batch], Tuple[tf.Tensor, tf.Tensor]]:
    """A tf.function mapping a batch to (labels, model outputs).

    Args:
      model: the dense model.
      element_spec: the batches' ``tf.data`` element spec, when known: the
        step is then traced once, for every batch the spec admits (ragged
        row lengths and a partial last batch included). Without it, the step
        traces for general shapes once batches differ (``reduce_retracing``:
        typically a trace for the first batch, one for the next and one for
        a partial last batch).
    """

    def step(batch):
      ids, weights, dense, labels = batch
      activations = self.embedding(ids, full_weights(ids, weights))
      return labels, model(model_inputs(activations, dense), training=False)

    if element_spec is not None:
      return tf.function(step, input_signature=[element_spec])
    return tf.function(step, reduce_retracing=True)


class TpuBackend(_Backend):
  """Trains on a TPU with the engine its embedding hardware supports.

  The engine (see ``engines``) follows the TPU's
  ``tpu_hardware_feature.embedding_feature`` unless the config forces one:
  ``TPUEmbedding`` (V1: enqueue on the host, dequeue per replica,
  ``apply_gradients``), ``TPUEmbeddingV2`` (SparseCore: one lookup per
  replica returning activations and the partitioned ids that
  ``apply_gradients`` takes back) or ``TPUEmbeddingV0`` (no embedding
  hardware: replicated tables looked up under the tape and updated with this
  package's TPU update rules). The ids stay on the host
  (``experimental_fetch_to_device=False``); each host reads its own share of
  the input (``distribute_from_function``).
  """

  name = 'tpu'

  def __init__(self, tpu: str, feature_config: Dict[str, Any], optimizer: Any,
               pipeline_execution_with_tensor_core: bool = False,
               engine: str = engines.AUTO, batch_size: int = 0,
               sparse_core_limits: Optional[engines.SparseCoreLimits] = None):
    resolver = tf.distribute.cluster_resolver.TPUClusterResolver(
        tpu='' if tpu in ('', 'local') else tpu)
    tf.config.experimental_connect_to_cluster(resolver)
    tf.tpu.experimental.initialize_tpu_system(resolver)
    self.strategy = tf.distribute.TPUStrategy(resolver)
    self.num_replicas = self.strategy.num_replicas_in_sync
    hardware = self.strategy.extended.tpu_hardware_feature
    self.engine = engines.select_engine(hardware.embedding_feature, engine)
    self.device_description = (
        f'TPU {tpu or "local"} ({self.num_replicas} replicas, engine '
        f'{engines.describe(self.engine)})')
    self.feature_config = feature_config
    engines.check_batch_size(batch_size or self.num_replicas,
                             self.num_replicas)
    sparse_core = (engines.sparse_core_config(sparse_core_limits)
                   if self.engine == engines.V2 else None)
    with self.strategy.scope():
      self.embedding = engines.build_embedding(
          self.engine, feature_config, optimizer,
          (batch_size or self.num_replicas) // self.num_replicas,
          pipeline_execution_with_tensor_core, sparse_core)

  def distribute(self, dataset: tf.data.Dataset) -> Any:
    return self.strategy.experimental_distribute_dataset(
        self._engine_layout(dataset), options=_HOST_IDS)

  def distribute_from_function(
      self, dataset_fn: Callable[[tf.distribute.InputContext],
                                 tf.data.Dataset]) -> Any:
    """Per-host input: ``dataset_fn(input_context)`` on every host."""
    return self.strategy.distribute_datasets_from_function(
        lambda context: self._engine_layout(dataset_fn(context)),
        options=_HOST_IDS)

  def _engine_layout(self, dataset: tf.data.Dataset) -> tf.data.Dataset:
    if self.engine != engines.V2:
      return dataset
    return dataset.map(lambda ids, weights, dense, labels: (
        engines.v2_inputs(ids, self.feature_config), weights, dense, labels))

  def _lookup(self, ids: Any, weights: Any, training: bool) -> Any:
    """Activations per replica (V0, V2); V2 also returns its partitions."""
    return self.embedding(ids, full_weights(ids, weights))

  def step_body(self, model: Any, dense_optimizer: Any, task: Any
               ) -> Callable[[Any], tf.Tensor]:
    """One step on a distributed iterator's next batch; returns the loss.

    Plain Python, to be traced inside a ``tf.function`` (``train_step``, or
    the training loop's multi-step function, the loop TensorFlow documents
    for ``TPUEmbedding``).
    """
    num_replicas = self.num_replicas

    def dense_part(activations, dense, labels, tape_targets):
      with tf.GradientTape() as tape:
        tape.watch(tape_targets)
        outputs = model(model_inputs(activations(), dense), training=True)
        loss = tf.reduce_mean(
            task.per_example_loss(labels, outputs)) / num_replicas
      gradients = tape.gradient(loss,
                                [tape_targets, model.trainable_variables])
      dense_optimizer.apply_gradients(
          zip(gradients[1], model.trainable_variables))
      return loss, gradients[0]

    def v1_replica_step(dense, labels):
      activations = self.embedding.dequeue()
      loss, gradients = dense_part(lambda: activations, dense, labels,
                                   activations)
      self.embedding.apply_gradients(gradients)
      return loss

    def v2_replica_step(ids, weights, dense, labels):
      activations, preserved = self._lookup(ids, weights, True)
      loss, gradients = dense_part(lambda: activations, dense, labels,
                                   activations)
      self.embedding.apply_gradients(gradients, preserved)
      return loss

    def v0_replica_step(ids, weights, dense, labels):
      tables = self._v0_tables()
      loss, gradients = dense_part(
          lambda: self._lookup(ids, weights, True), dense, labels,
          [variable for _, variable in tables])
      self._v0_apply_gradients(tables, gradients)
      return loss

    def step(iterator):
      ids, weights, dense, labels = next(iterator)
      if self.engine == engines.V1:
        self.embedding.enqueue(ids, full_weights(ids, weights), training=True)
        losses = self.strategy.run(v1_replica_step, args=(dense, labels))
      else:
        replica_step = (v2_replica_step if self.engine == engines.V2 else
                        v0_replica_step)
        losses = self.strategy.run(replica_step,
                                   args=(ids, weights, dense, labels))
      return self.strategy.reduce(tf.distribute.ReduceOp.SUM, losses, axis=None)

    return step

  def _v0_tables(self) -> List[Tuple[Any, Any]]:
    """(TableConfig, replicated table variable) pairs of TPUEmbeddingV0."""
    return list(self.embedding.embedding_tables.items())

  def _v0_apply_gradients(self, tables: List[Tuple[Any, Any]],
                          gradients: List[Any]) -> None:
    """Every replica applies the summed update of all replicas to its copy.

    TPUEmbeddingV0 leaves the optimizer to the caller; the rows and slots
    move with the TPU's rules (``tpu_update_rules``), as on the CPU path.
    """
    context = tf.distribute.get_replica_context()
    for (table, variable), gradient in zip(tables, gradients):
      if gradient is None:
        continue
      gradient = tf.IndexedSlices(
          context.all_gather(gradient.values, axis=0),
          context.all_gather(gradient.indices, axis=0), gradient.dense_shape)
      slots = {name: slot for name, slot in
               self.embedding._variables[table.name].items()  # pylint: disable=protected-access
               if name != 'parameters'}
      learning_rate = tpu_update_rules.evaluate_learning_rate(
          table.optimizer.learning_rate)
      if tpu_update_rules.is_dense(table.optimizer):
        tpu_update_rules.apply_dense(table.optimizer, variable, slots,
                                     gradient, learning_rate)
      else:
        # Replicated TPU variables: the gather/scatter rules, not the CPU's
        # fused kernels (raw ops on replica handles, untested on a TPU).
        tpu_update_rules.apply_sparse(table.optimizer, variable, slots,
                                      gradient, learning_rate,
                                      use_fused_kernels=False)

  def predict_step(self, model: Any, element_spec: Optional[Any] = None
                  ) -> Callable[[Any], Tuple[tf.Tensor, tf.Tensor]]:
    """A tf.function mapping a distributed batch to (labels, model outputs).

    ``element_spec`` is accepted for the CPU backend's interface and not
    used: TPU batches have static shapes (``drop_remainder``).
    """
    del element_spec  # Unused.

    def v1_replica_step(dense, labels):
      activations = self.embedding.dequeue()
      return labels, model(model_inputs(activations, dense), training=False)

    def lookup_replica_step(ids, weights, dense, labels):
      activations = self._lookup(ids, weights, False)
      if self.engine == engines.V2:
        activations = activations[0]
      return labels, model(model_inputs(activations, dense), training=False)

    @tf.function
    def step(batch):
      ids, weights, dense, labels = batch
      if self.engine == engines.V1:
        self.embedding.enqueue(ids, full_weights(ids, weights), training=False)
        labels, outputs = self.strategy.run(v1_replica_step,
                                            args=(dense, labels))
      else:
        labels, outputs = self.strategy.run(lookup_replica_step,
                                            args=(ids, weights, dense, labels))
      return (tf.concat(self.strategy.experimental_local_results(labels), 0),
              tf.concat(self.strategy.experimental_local_results(outputs), 0))

    return step


_HOST_IDS = tf.distribute.InputOptions(experimental_fetch_to_device=False)


def make_backend(tpu: Optional[str], feature_config: Dict[str, Any],
                 optimizer: Any,
                 pipeline_execution_with_tensor_core: bool = False,
                 engine: str = engines.AUTO, batch_size: int = 0,
                 sparse_core_limits: Optional[engines.SparseCoreLimits] = None):
  """The TPU backend when ``tpu`` is set, else the CPU/GPU one (logged)."""
  if tpu is not None:
    backend = TpuBackend(tpu, feature_config, optimizer,
                         pipeline_execution_with_tensor_core, engine,
                         batch_size, sparse_core_limits)
  else:
    backend = CpuBackend(feature_config, optimizer)
  logging.info('Training the embedding on %s.', backend.device_description)
  return backend


check_batch_size = engines.check_batch_size
