"""The custom training loop shared by the CPU/GPU and TPU paths.

Everything up to the device calls is shared: the input pipeline, the id
mapping on the host, the user's dense model and its optimizer, checkpoints,
TensorBoard logs and progress. The backend (see ``backends``) supplies only the
step functions.

A checkpoint holds the step, the tables with their optimizer slots, the dense
model and optimizer, and (on the CPU/GPU path) the input iterator's position.
A run that finds a checkpoint in its run directory resumes from it.
"""

import dataclasses
import os
import time
from typing import Any, Callable, Dict, List, Mapping, Optional

import numpy as np
import tensorflow as tf
import tf_keras
from absl import logging

from components.trainer import autograph_rules
from components.trainer import backends
from components.trainer import config as config_lib
from components.trainer import health as health_lib
from components.trainer import inputs
from components.trainer import multihost
from components.trainer import parsed_blocks
from components.trainer import tasks

CHECKPOINT_DIR = 'checkpoints'
LOG_DIR = 'logs'


@dataclasses.dataclass
class TrainResult:
  """What a training run did and where it left its state."""
  steps: int
  resumed_from_step: int
  final_loss: float
  examples_per_second: float
  eval_metrics: Dict[str, float]
  checkpoint: str
  device: str
  engine: str
  dense_feature_keys: List[str]
  warm_start: Dict[str, Any] = dataclasses.field(default_factory=dict)
  health: Dict[str, Any] = dataclasses.field(default_factory=dict)


class BatchPreparer:
  """Maps parsed features to ``(ids, weights, dense, labels)`` on the host.

  Weights of unweighted features are left out (tf.data elements cannot hold
  None); ``backends.full_weights`` restores the full structure.
  """

  def __init__(self, id_mapper: Any, dense_keys: List[str]):
    self._id_mapper = id_mapper
    self._dense_keys = list(dense_keys)

  def __call__(self, features: Mapping[str, Any], labels: tf.Tensor):
    ids, weights = self._id_mapper(features)
    weights = {k: v for k, v in weights.items() if v is not None}
    dense = {k: tf.cast(features[k], tf.float32) for k in self._dense_keys}
    return ids, weights, dense, labels


def _format_duration(seconds: float) -> str:
  seconds = int(max(seconds, 0))
  return f'{seconds // 3600}:{seconds % 3600 // 60:02d}:{seconds % 60:02d}'


class _Progress:
  """Logs steps, loss, examples per second and time left; writes TensorBoard."""

  def __init__(self, writer: Any, batch_size: int, first_step: int,
               last_step: int):
    self._writer = writer
    self._batch_size = batch_size
    self._last_step = last_step
    self._mark_step, self._mark_time = first_step, time.time()
    self._start_step, self._start_time = first_step, self._mark_time
    self.examples_per_second = 0.0

  def update(self, step: int, loss: float) -> None:
    now = time.time()
    rate = (step - self._mark_step) * self._batch_size / max(
        now - self._mark_time, 1e-9)
    self._mark_step, self._mark_time = step, now
    overall = (step - self._start_step) * self._batch_size / max(
        now - self._start_time, 1e-9)
    self.examples_per_second = overall
    left = (self._last_step - step) * self._batch_size / max(overall, 1e-9)
    logging.info('step %d/%d  mean loss %.4f  %s examples/s  %s left', step,
                 self._last_step, loss, f'{rate:,.0f}', _format_duration(left))
    with self._writer.as_default(step=step):
      tf.summary.scalar('loss', loss)
      tf.summary.scalar('examples_per_second', rate)


def evaluate(backend: Any, model: Any, task: tasks.Task, dataset: Any,
             steps: int = 0) -> Dict[str, float]:
  """The task's metrics and the example count on ``dataset``.

  Reads ``steps`` batches, or all of them when ``steps`` is 0. The predict
  step is traced once for all batches (their element spec) where the
  dataset has one.
  """
  autograph_rules.skip_tf_keras()
  predict = backend.predict_step(model, getattr(dataset, 'element_spec', None))
  metrics = task.metrics()
  # The updates run eagerly: AutoGraph would only convert tf_keras's metric
  # code (seconds per evaluation) to run it as plain Python anyway.
  update = tf.autograph.experimental.do_not_convert(metrics.update)
  for index, batch in enumerate(dataset):
    if steps and index >= steps:
      break
    update(*predict(batch))
  if not metrics.examples:
    raise ValueError('The evaluation split produced no full batch; lower '
                     'batch_size or add evaluation data.')
  return metrics.result()


class NonFiniteError(FloatingPointError):
  """Training produced NaN or inf; the last good checkpoint is kept."""


def named_state_variables(embedding: Any, model: Any, dense_optimizer: Any
                         ) -> Dict[str, tf.Variable]:
  """Tables (with slots) and dense variables, by a name a person can read."""
  variables = {}
  for table, variable in getattr(embedding, 'embedding_tables', {}).items():
    variables[f'table {table.name}'] = variable
    if hasattr(embedding, 'slot_variables'):  # The CPU path holds the slots.
      for slot, slot_variable in embedding.slot_variables(table).items():
        variables[f'table {table.name} slot {slot}'] = slot_variable
  for variable in model.variables:
    variables[f'layer variable {variable.name}'] = variable
  optimizer_variables = dense_optimizer.variables
  if callable(optimizer_variables):
    optimizer_variables = optimizer_variables()
  for variable in optimizer_variables:
    variables[f'dense optimizer variable {variable.name}'] = variable
  return variables


def check_finite(step: int, loss: float,
                 variables: Mapping[str, tf.Variable]) -> None:
  """Raises ``NonFiniteError`` naming the step and the variables affected."""
  bad = [name for name, variable in variables.items()
         if variable.dtype.is_floating and
         not bool(tf.reduce_all(tf.math.is_finite(variable)))]
  if np.isfinite(loss) and not bad:
    return
  raise NonFiniteError(
      f'Training stopped at step {step}: the loss is {loss}'
      + (f' and these hold NaN or inf: {", ".join(bad)}' if bad else '')
      + '. Check the data for NaN/inf features or labels and lower the '
      'learning rates; the last good checkpoint is kept and the run fails.')


def restore_newest_readable(checkpoint: tf.train.Checkpoint,
                            manager: tf.train.CheckpointManager
                           ) -> Optional[str]:
  """Restores the newest checkpoint that reads whole; returns its path.

  A checkpoint cut short (a crash while writing, a truncated copy) is
  skipped with a warning and the previous one is tried.
  """
  for path in reversed(manager.checkpoints):
    try:
      reader = tf.train.load_checkpoint(path)
      for name, dtype in reader.get_variable_to_dtype_map().items():
        if dtype != tf.variant:  # The input iterator's state reads lazily.
          reader.get_tensor(name)
      checkpoint.restore(path)
      return path
    except (tf.errors.OpError, ValueError, IndexError) as error:
      logging.warning('Checkpoint %s cannot be read (%s); trying the one '
                      'before it.', path, str(error).splitlines()[0])
  if manager.checkpoints:
    logging.warning('No checkpoint in %s can be read; training starts over.',
                    manager.directory)
  return None


def compile_train_steps(backend: Any, model: Any, dense_optimizer: Any,
                        task: tasks.Task, health: health_lib.TrainingHealth,
                        global_step: tf.Variable
                       ) -> Callable[[Any, int], tf.Tensor]:
  """``run(iterator, num_steps)``: up to ``num_steps`` steps in one call.

  The steps run in a graph loop: one Python call and one host read of the
  loss per call instead of per step, which on small models is a large share
  of a step. Every step records its ids and loss in ``health`` and advances
  ``global_step``; the loop stops after a step whose loss is not finite, so
  that the caller names that step. Returns the last step's loss.
  """
  autograph_rules.skip_tf_keras()
  step = backend.step_body(model, dense_optimizer, task)

  @tf.function
  def run_steps(iterator, num_steps):
    loss = tf.constant(0.0)
    for _ in tf.range(num_steps):
      loss = step(iterator)
      health.add_loss(loss)
      global_step.assign_add(1)
      if not tf.math.is_finite(loss):
        break
    backend.finish_steps()
    return loss

  def run(iterator: Any, num_steps: int) -> tf.Tensor:
    # A tensor argument: one trace for every number of steps.
    return run_steps(iterator, tf.constant(num_steps, tf.int64))

  return run


def steps_in_next_call(step: int, config: config_lib.TrainingConfig) -> int:
  """Steps until the next log, checkpoint or final step, at most
  ``steps_per_execution``: calls end where the host has work to do."""

  def until_multiple(every: int) -> int:
    return every - step % every

  return min(config.steps_per_execution, config.train_steps - step,
             until_multiple(config.log_every),
             until_multiple(config.checkpoint_every))


def train(config: config_lib.TrainingConfig,
          resolved_spec: Any,
          feature_spec: Mapping[str, Any],
          train_files: List[str],
          eval_files: List[str],
          run_dir: str,
          on_step: Optional[Callable[[int], None]] = None,
          sparse_core_limits: Optional[Any] = None,
          warm_start_from: Optional[Any] = None) -> TrainResult:
  """Trains (or resumes) to ``config.train_steps`` and evaluates.

  Args:
    config: the training settings.
    resolved_spec: a ``ResolvedEmbeddingSpec`` (sizes and lengths concrete).
    feature_spec: the transformed feature spec (``TFTransformOutput``).
    train_files: training TFRecord files.
    eval_files: evaluation TFRecord files.
    run_dir: checkpoints go to ``run_dir/checkpoints``, TensorBoard logs to
      ``run_dir/logs``.
    on_step: called after every call of the training function with the
      step reached (tests use it).
    sparse_core_limits: ``engines.SparseCoreLimits`` for a SparseCore TPU.
    warm_start_from: a ``warm_start.Source``: a fresh run (no checkpoint
      of its own) starts from that base model's remapped tables.
  """
  tf.keras.utils.set_random_seed(config.seed)
  global_step = tf.Variable(0, dtype=tf.int64, trainable=False,
                            name='global_step')
  backend = backends.make_backend(
      config.tpu, resolved_spec.compile(global_step),
      resolved_spec.compile_optimizer(global_step),
      config.pipeline_execution_with_tensor_core,
      config.embedding_engine, config.batch_size, sparse_core_limits)
  backends.check_batch_size(config.batch_size, backend.num_replicas)
  embedded_keys = list(resolved_spec.features)
  dense_keys = inputs.dense_feature_keys(feature_spec, config.label_key,
                                         embedded_keys)
  task = tasks.Task(config.task)
  with backend.strategy.scope():
    model = tasks.import_by_path(config.model_fn)(resolved_spec, dense_keys)
    dense_optimizer = tf_keras.optimizers.Adam(config.dense_learning_rate)
  prepare = BatchPreparer(resolved_spec.id_mapper(), dense_keys)
  form = inputs.training_input(train_files, config.in_memory_train_mib,
                               config.parse_once)
  blocks_dir = (parsed_blocks.local_folder(run_dir)
                if form == inputs.PARSED_BLOCKS else None)
  logging.info('Training files: %.1f MiB, read as %s (in_memory_train_mib=%d, '
               'parse_once=%s).', inputs.total_mib(train_files), form,
               config.in_memory_train_mib, config.parse_once)

  def train_data(context: tf.distribute.InputContext) -> tf.data.Dataset:
    return inputs.make_dataset(
        train_files, feature_spec, config.label_key,
        context.get_per_replica_batch_size(config.batch_size),
        training=True, shuffle_buffer=config.shuffle_buffer,
        seed=config.seed, label_fn=task.labels,
        input_context=context, prepare=prepare,
        in_memory=form == inputs.IN_MEMORY, blocks_dir=blocks_dir,
        max_examples=config.train_steps * config.batch_size)

  iterator = iter(backend.distribute_from_function(train_data))
  health = health_lib.TrainingHealth(resolved_spec, backend.name,
                                     config.min_table_movement)
  state = dict(step=global_step, embedding=backend.embedding, model=model,
               dense_optimizer=dense_optimizer, health=health)
  if backend.name == 'cpu':
    state['input'] = iterator  # Distributed TPU iterators are not saveable.
  checkpoint = tf.train.Checkpoint(**state)
  manager = tf.train.CheckpointManager(
      checkpoint, os.path.join(run_dir, CHECKPOINT_DIR), max_to_keep=3)
  resumed_from = 0
  warm_report = {}
  restored = restore_newest_readable(checkpoint, manager)
  if restored:
    resumed_from = int(global_step.numpy())
    logging.info('Resuming from %s at step %d.', restored, resumed_from)
  else:
    if warm_start_from is not None:
      warm_report = warm_start_from.apply_to(
          backend, model, resolved_spec, dense_keys, config, run_dir,
          os.path.join(run_dir, LOG_DIR, 'train'),
          train_data(tf.distribute.InputContext()))
    health.copy_initial_values(health.live_tables(backend.embedding))

  run_steps = compile_train_steps(backend, model, dense_optimizer, task,
                                  health, global_step)
  writer = tf.summary.create_file_writer(os.path.join(run_dir, LOG_DIR,
                                                      'train'))
  with writer.as_default(step=resumed_from):
    tf.summary.text('device', backend.device_description)
  progress = _Progress(writer, config.batch_size, resumed_from,
                       config.train_steps)
  loss = float('nan')
  guarded = None  # Tables and slots exist once the first step has run.
  train_input = health.recording(iterator)  # One object: one trace.
  step = resumed_from
  with backend.strategy.scope():
    while step < config.train_steps:
      loss_tensor = run_steps(train_input, steps_in_next_call(step, config))
      step = int(global_step.numpy())
      guarded = guarded or named_state_variables(backend.embedding, model,
                                                 dense_optimizer)
      step_loss = float(loss_tensor)
      logged = step % config.log_every == 0 or step == config.train_steps
      saved = step % config.checkpoint_every == 0
      if not np.isfinite(step_loss) or logged or saved:
        check_finite(step, step_loss, guarded)
      if logged:
        loss = health.take_mean_loss()
        progress.update(step, loss)
        tables = health.live_tables(backend.embedding, periodic=True)
        if tables:
          health.write_figures(health.figures(tables), writer, step)
      if saved and multihost.is_chief():
        manager.save(checkpoint_number=step)
      if on_step:
        on_step(step)
  final_step = int(global_step.numpy())
  final_checkpoint = manager.latest_checkpoint
  if not final_checkpoint or not final_checkpoint.endswith(f'-{final_step}'):
    final_checkpoint = manager.save(checkpoint_number=final_step)
  health_figures = health.after_training(backend.embedding, final_checkpoint,
                                         run_dir, writer, final_step)
  if health_figures.pop('tables_changed'):
    final_checkpoint = manager.save(checkpoint_number=final_step)
  eval_data = inputs.make_dataset(
      eval_files, feature_spec, config.label_key, config.batch_size,
      training=False, drop_remainder=backend.name == 'tpu',
      label_fn=task.labels, prepare=prepare)
  metrics = evaluate(backend, model, task, backend.distribute(eval_data),
                     config.eval_steps)
  eval_writer = tf.summary.create_file_writer(os.path.join(run_dir, LOG_DIR,
                                                           'eval'))
  with eval_writer.as_default(step=int(global_step.numpy())):
    for name, value in metrics.items():
      tf.summary.scalar(name, value)
  logging.info('Evaluation: %s', metrics)
  if blocks_dir:
    parsed_blocks.remove(blocks_dir)  # Kept only while a rerun may resume.
  return TrainResult(
      steps=int(global_step.numpy()),
      resumed_from_step=resumed_from,
      final_loss=loss,
      examples_per_second=progress.examples_per_second,
      eval_metrics=metrics,
      checkpoint=final_checkpoint,
      device=backend.device_description,
      engine=backend.engine,
      dense_feature_keys=dense_keys,
      warm_start=warm_report,
      health=health_figures)
