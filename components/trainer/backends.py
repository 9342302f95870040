"""Where the embedding lives: the TPU, or the CPU/GPU with the TPU's semantics.

Both backends take the same compiled ``feature_config`` and embedding
optimizer, the same batches (ids already mapped on the host), the same dense
model and loss. They differ only in the device calls:

* ``CpuBackend``: ``CpuEmbedding`` looks ids up with TensorFlow's CPU version
  of the TPU lookup inside the gradient tape, and applies the embedding
  optimizer with the TPU's sparse update rules.
* ``TpuBackend``: ``TPUEmbedding`` under a ``TPUStrategy``: ``enqueue`` the ids
  from the host, ``dequeue`` activations on the TensorCores, and
  ``apply_gradients`` with the gradients of the activations.
"""

from typing import Any, Callable, Dict, Optional, Tuple

import tensorflow as tf
from absl import logging

from components.embedding import cpu_embedding

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


class CpuBackend:
  """Trains on the CPU or a GPU with ``CpuEmbedding``."""

  name = 'cpu'

  def __init__(self, feature_config: Dict[str, Any], optimizer: Any):
    self.strategy = tf.distribute.get_strategy()
    self.num_replicas = 1
    self.embedding = cpu_embedding.CpuEmbedding(feature_config, optimizer)
    devices = tf.config.list_logical_devices('GPU')
    self.device_description = (f'GPU ({devices[0].name})' if devices else
                               'CPU')

  def distribute(self, dataset: tf.data.Dataset) -> tf.data.Dataset:
    return dataset

  def train_step(self, model: Any, dense_optimizer: Any, task: Any
                ) -> Callable[[Any], tf.Tensor]:
    """A tf.function taking an iterator; one optimizer step, returns loss."""

    @tf.function
    def step(iterator):
      ids, weights, dense, labels = next(iterator)
      with tf.GradientTape() as tape:
        activations = self.embedding(ids, full_weights(ids, weights))
        outputs = model(model_inputs(activations, dense), training=True)
        loss = tf.reduce_mean(task.per_example_loss(labels, outputs))
      table_variables = self.embedding.trainable_variables
      gradients = tape.gradient(loss,
                                table_variables + model.trainable_variables)
      self.embedding.apply_gradients(gradients[:len(table_variables)])
      dense_optimizer.apply_gradients(
          zip(gradients[len(table_variables):], model.trainable_variables))
      return loss

    return step

  def predict_step(self, model: Any) -> Callable[[Batch], Tuple[tf.Tensor,
                                                                tf.Tensor]]:
    """A tf.function mapping a batch to (labels, model outputs)."""

    # Batches differ in their ragged row lengths: trace for general shapes.
    @tf.function(reduce_retracing=True)
    def step(batch):
      ids, weights, dense, labels = batch
      activations = self.embedding(ids, full_weights(ids, weights))
      return labels, model(model_inputs(activations, dense), training=False)

    return step


class TpuBackend:
  """Trains on a TPU with the mid-level ``TPUEmbedding`` API.

  The ids stay on the host (``experimental_fetch_to_device=False``) and are
  enqueued to the TPU's embedding engine; the dense model runs per replica on
  a per-replica share of each global batch.
  """

  name = 'tpu'

  def __init__(self, tpu: str, feature_config: Dict[str, Any], optimizer: Any,
               pipeline_execution_with_tensor_core: bool = False):
    resolver = tf.distribute.cluster_resolver.TPUClusterResolver(
        tpu='' if tpu in ('', 'local') else tpu)
    tf.config.experimental_connect_to_cluster(resolver)
    tf.tpu.experimental.initialize_tpu_system(resolver)
    self.strategy = tf.distribute.TPUStrategy(resolver)
    self.num_replicas = self.strategy.num_replicas_in_sync
    self.device_description = f'TPU {tpu or "local"} ({self.num_replicas} cores)'
    with self.strategy.scope():
      self.embedding = _embedding.TPUEmbedding(
          feature_config, optimizer,
          pipeline_execution_with_tensor_core=(
              pipeline_execution_with_tensor_core))

  def distribute(self, dataset: tf.data.Dataset) -> Any:
    return self.strategy.experimental_distribute_dataset(
        dataset,
        options=tf.distribute.InputOptions(experimental_fetch_to_device=False))

  def train_step(self, model: Any, dense_optimizer: Any, task: Any
                ) -> Callable[[Any], tf.Tensor]:
    """A tf.function taking a distributed iterator; returns the mean loss."""
    num_replicas = self.num_replicas

    def replica_step(dense, labels):
      activations = self.embedding.dequeue()
      with tf.GradientTape() as tape:
        tape.watch(activations)
        outputs = model(model_inputs(activations, dense), training=True)
        loss = tf.reduce_mean(
            task.per_example_loss(labels, outputs)) / num_replicas
      gradients = tape.gradient(loss, [activations, model.trainable_variables])
      self.embedding.apply_gradients(gradients[0])
      dense_optimizer.apply_gradients(
          zip(gradients[1], model.trainable_variables))
      return loss

    @tf.function
    def step(iterator):
      ids, weights, dense, labels = next(iterator)
      self.embedding.enqueue(ids, full_weights(ids, weights), training=True)
      losses = self.strategy.run(replica_step, args=(dense, labels))
      return self.strategy.reduce(tf.distribute.ReduceOp.SUM, losses, axis=None)

    return step

  def predict_step(self, model: Any) -> Callable[[Any], Tuple[tf.Tensor,
                                                              tf.Tensor]]:

    def replica_step(dense, labels):
      activations = self.embedding.dequeue()
      return labels, model(model_inputs(activations, dense), training=False)

    @tf.function
    def step(batch):
      ids, weights, dense, labels = batch
      self.embedding.enqueue(ids, full_weights(ids, weights), training=False)
      labels, outputs = self.strategy.run(replica_step, args=(dense, labels))
      return (tf.concat(self.strategy.experimental_local_results(labels), 0),
              tf.concat(self.strategy.experimental_local_results(outputs), 0))

    return step


def make_backend(tpu: Optional[str], feature_config: Dict[str, Any],
                 optimizer: Any,
                 pipeline_execution_with_tensor_core: bool = False):
  """The TPU backend when ``tpu`` is set, else the CPU/GPU one (logged)."""
  if tpu is not None:
    backend = TpuBackend(tpu, feature_config, optimizer,
                         pipeline_execution_with_tensor_core)
  else:
    backend = CpuBackend(feature_config, optimizer)
  logging.info('Training the embedding on %s.', backend.device_description)
  return backend


def check_batch_size(batch_size: int, num_replicas: int) -> None:
  """TPUs split every global batch evenly over the replicas."""
  if batch_size % num_replicas:
    raise ValueError(
        f'batch_size={batch_size} is not divisible by the {num_replicas} TPU '
        f'replicas; use a multiple of {num_replicas}.')

