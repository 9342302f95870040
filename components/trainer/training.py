"""``run_training``: one entry point from a spec and data to a serving model.

The TFX executor is a thin shell over it (artifacts in, properties out), and
so is any other caller: a notebook, a test, a custom orchestrator. In order:

1. resolve the embedding spec against the Transform output (table sizes, OOV
   buckets) and the statistics' recommended sequence lengths;
2. check the memory plan, the config and every split's labels, before any
   device time;
3. train (resuming from ``run_dir``'s newest readable checkpoint after a
   crash; NaN or inf stops it) and evaluate, checking that every evaluation
   example was scored;
4. export the serving model and the projector files, and check that the
   reloaded serving model scores raw examples as the training path does;
5. write ``training_result.json`` (a ``TrainingResult``).

With a ``base_model``, a fresh run starts from its tables remapped by token
(``warm_start``); every run leaves the state the next one needs
(``warm_start_state``) next to the serving model.
"""

import dataclasses
import json
import os
from typing import Any, Dict, List, Mapping, Optional, Sequence, Tuple, Union

import tensorflow as tf
from absl import logging

from components import embedding as emb
from components.trainer import config as config_lib
from components.trainer import export
from components.trainer import labels
from components.trainer import health as health_lib
from components.trainer import loop
from components.trainer import plan as plan_lib
from components.trainer import tasks
from components.trainer import verify
from components.trainer import warm_start
from components.trainer import warm_start_state

TRAINING_RESULT_FILE = 'training_result.json'


@dataclasses.dataclass
class TrainingResult:
  """What a Trainer run did; saved as ``training_result.json``.

  Attributes:
    steps: the optimizer step training ended at.
    resumed_from_step: the checkpoint step a crashed run resumed from (0 when
      it started fresh).
    final_loss: the last logged training loss: the mean over the steps since
      the previous progress line (up to ``log_every`` steps).
    examples_per_second: training throughput of this run.
    task: the task kind ('binary', 'multiclass', ...).
    eval_metrics: the task's metrics on the evaluation splits, plus
      ``examples`` (the count evaluated).
    examples_per_split: examples in each training and evaluation split.
    serving_checked: the serving model was reloaded and its outputs equal
      the training path's on raw evaluation examples.
    device: where the embedding trained (CPU, GPU, TPU ...).
    engine: the embedding engine: 'cpu', or on TPU 'v0', 'v1' or 'v2'.
    serving_model: the SavedModel's directory.
    memory_plan: bytes of the tables and optimizer slots, as logged.
    warm_start: per table rows kept / new / dropped and the share of
      training ids on warm rows, when the run started from a base model
      (see ``warm_start.report``); empty otherwise.
    health: per-table figures at the end (``tables``: touched share, how far
      touched rows moved, row-norm quantiles), the Trainer's warnings, the
      OOV rows set after training and the statistics' warnings repeated at
      the start (``statistics_warnings``); see ``health``.
  """

  steps: int
  resumed_from_step: int
  final_loss: float
  examples_per_second: float
  task: str
  eval_metrics: Dict[str, float]
  examples_per_split: Dict[str, int]
  serving_checked: bool
  device: str
  engine: str
  serving_model: str
  memory_plan: str = ''
  warm_start: Dict[str, Any] = dataclasses.field(default_factory=dict)
  health: Dict[str, Any] = dataclasses.field(default_factory=dict)

  def to_json(self) -> str:
    return json.dumps(dataclasses.asdict(self), indent=2, sort_keys=True)

  @classmethod
  def from_json(cls, text: str) -> 'TrainingResult':
    return cls(**json.loads(text))

  def save(self, run_dir: str) -> str:
    path = os.path.join(run_dir, TRAINING_RESULT_FILE)
    with tf.io.gfile.GFile(path, 'w') as f:
      f.write(self.to_json())
    return path

  @classmethod
  def load(cls, run_dir: str) -> 'TrainingResult':
    with tf.io.gfile.GFile(os.path.join(run_dir, TRAINING_RESULT_FILE)) as f:
      return cls.from_json(f.read())


def load_embedding_spec(value: Any,
                        allowed_module_prefixes: Sequence[str] = ()
                       ) -> emb.EmbeddingSpec:
  """A spec, from itself, its JSON, or the dotted path of a function.

  Dotted paths inside the JSON resolve only to registered functions or to
  functions under ``allowed_module_prefixes``.
  """
  if isinstance(value, emb.EmbeddingSpec):
    return value
  text = value.strip()
  if text.startswith('{'):
    return emb.EmbeddingSpec.from_json(text, allowed_module_prefixes)
  spec = tasks.import_by_path(text)()
  if not isinstance(spec, emb.EmbeddingSpec):
    raise ValueError(f'{text} returned {type(spec).__name__}, not an '
                     'EmbeddingSpec.')
  return spec


def check_plan(resolved: Any, config: config_lib.TrainingConfig,
               tpu_type: str, statistics: Optional[Any] = None
              ) -> Tuple[str, Optional[Any]]:
  """Logs the memory plan and refuses one that cannot train, before training.

  On the CPU/GPU the tables and slots must fit the host's memory. On a TPU
  whose type is known, ``plan.check_before_training`` checks the engine the
  type implies (or ``config.embedding_engine``): bytes per chip, the
  engine's rules, the batch split; SparseCore limits come from the
  statistics when they were measured for this slice. Returns the plan's text
  and the limits.
  """
  if not config.on_tpu:
    plan = resolved.memory_plan()
    logging.info('Embedding memory plan:\n%s', plan)
    plan.check(emb.host_memory_bytes())
    return str(plan), None
  if not tpu_type:
    logging.warning('No tpu_type given: the memory plan is checked once the '
                    'TPU reports its hardware.')
    return str(resolved.memory_plan()), None
  limits = (plan_lib.limits_from_statistics(statistics, tpu_type,
                                            config.batch_size)
            if statistics is not None else None)
  tpu_plan = plan_lib.check_before_training(
      resolved, tpu_type, config.embedding_engine, config.batch_size, limits)
  logging.info('Embedding memory plan:\n%s', tpu_plan)
  return str(tpu_plan), limits


def table_vocabularies(resolved: Any, transform_output: Any
                      ) -> Dict[str, List[str]]:
  """Row labels of each table that came from a Transform vocabulary."""
  result = {}
  for feature in resolved.features.values():
    name = getattr(feature.column, 'vocabulary_name', None)
    if name and feature.table_name not in result:
      result[feature.table_name] = [
          t.decode('utf-8', 'replace') if isinstance(t, bytes) else str(t)
          for t in transform_output.vocabulary_by_name(name)]
  return result


SplitFiles = Union[List[str], Mapping[str, List[str]]]


def _by_split(files: SplitFiles, default_split: str) -> Dict[str, List[str]]:
  if isinstance(files, Mapping):
    return {split: list(paths) for split, paths in files.items()}
  return {default_split: list(files)}


def expected_eval_examples(config: config_lib.TrainingConfig,
                           eval_examples: int, drop_remainder: bool) -> int:
  """How many examples evaluation must score: every one, unless
  ``eval_steps`` limits it or a TPU drops the last partial batch."""
  scored = eval_examples
  if drop_remainder:
    scored -= scored % config.batch_size
  if config.eval_steps:
    scored = min(scored, config.eval_steps * config.batch_size)
  return scored


def run_training(config: config_lib.TrainingConfig,
                 embedding_spec: Any,
                 transform_output: Any,
                 train_files: SplitFiles,
                 eval_files: SplitFiles,
                 run_dir: str,
                 serving_dir: str,
                 statistics: Optional[Any] = None,
                 tpu_type: str = '',
                 raw_eval_examples: Optional[List[bytes]] = None,
                 base_model: Optional[str] = None,
                 warm_start_dir: Optional[str] = None) -> TrainingResult:
  """Resolves, checks, trains, evaluates and exports; see the module doc.

  Args:
    config: the training settings.
    embedding_spec: an ``EmbeddingSpec``, its JSON or a dotted path.
    transform_output: the ``tft.TFTransformOutput`` of the examples.
    train_files: transformed training TFRecords (gzipped), by split name or
      as one list (the 'train' split).
    eval_files: transformed evaluation TFRecords, likewise ('eval').
    run_dir: checkpoints, TensorBoard logs, projector files and the result.
    serving_dir: where the serving SavedModel is written.
    statistics: the ``EmbeddingStatistics`` of the examples: lengths of
      ``'auto'`` sequence columns and SparseCore limits.
    tpu_type: the TPU slice (e.g. 'v6e-8') whose memory bounds the plan.
    raw_eval_examples: serialized raw evaluation tf.Examples; the reloaded
      serving model must score them as the training path does. None skips
      that check (logged).
    base_model: URI of a Model this trainer wrote: a fresh run starts from
      its tables (remapped by token) and dense model.
    warm_start_dir: where this run's warm-start state goes (default:
      ``warm_start`` next to ``serving_dir``).
  """
  task = tasks.Task(config.task)
  train_splits = _by_split(train_files, 'train')
  eval_splits = _by_split(eval_files, 'eval')
  lengths = (statistics.recommended_max_sequence_lengths()
             if statistics is not None else {})
  resolved = load_embedding_spec(
      embedding_spec, config.allowed_spec_prefixes()).resolve(
      tf_transform_output=transform_output, max_sequence_lengths=lengths)
  plan, limits = check_plan(resolved, config, tpu_type, statistics)
  feature_spec = transform_output.transformed_feature_spec()
  label_summaries = labels.check_labels(
      {**train_splits, **eval_splits}, list(train_splits), config.label_key,
      feature_spec, config.task)
  statistics_warnings = health_lib.log_statistics_warnings(statistics)
  source = (warm_start.Source(base_model, warm_start_state.table_rows(
      resolved, transform_output)) if base_model else None)
  result = loop.train(config, resolved, feature_spec,
                      [f for files in train_splits.values() for f in files],
                      [f for files in eval_splits.values() for f in files],
                      run_dir, sparse_core_limits=limits,
                      warm_start_from=source)
  expected = expected_eval_examples(
      config, sum(label_summaries[s].examples for s in eval_splits),
      drop_remainder=config.on_tpu)
  if int(result.eval_metrics['examples']) != expected:
    raise RuntimeError(
        f'Evaluation scored {result.eval_metrics["examples"]:.0f} examples; '
        f'the evaluation splits {sorted(eval_splits)} hold {expected} to '
        'score. The metrics do not describe the evaluation data.')
  serving_checked = _export(config, task, resolved, transform_output, result,
                            run_dir, serving_dir, raw_eval_examples)
  warm_start_state.save_state(
      warm_start_dir or os.path.join(os.path.dirname(serving_dir),
                                     warm_start_state.STATE_DIR),
      resolved, transform_output, result.checkpoint)
  training_result = TrainingResult(
      steps=result.steps,
      resumed_from_step=result.resumed_from_step,
      final_loss=result.final_loss,
      examples_per_second=result.examples_per_second,
      task=task.kind,
      eval_metrics=result.eval_metrics,
      examples_per_split={split: summary.examples
                          for split, summary in label_summaries.items()},
      serving_checked=serving_checked,
      device=result.device,
      engine=result.engine,
      serving_model=serving_dir,
      memory_plan=plan,
      warm_start=result.warm_start or (
          warm_start.load_report(run_dir) if base_model else {}),
      health=dict(result.health, statistics_warnings=statistics_warnings))
  training_result.save(run_dir)
  return training_result


def _export(config: config_lib.TrainingConfig, task: tasks.Task,
            resolved: Any, transform_output: Any, result: loop.TrainResult,
            run_dir: str, serving_dir: str,
            raw_eval_examples: Optional[List[bytes]]) -> bool:
  """Exports the serving model and projector files; True when checked."""
  feature_config = resolved.compile(tf.Variable(0, dtype=tf.int64))
  model = tasks.import_by_path(config.model_fn)(resolved,
                                                result.dense_feature_keys)
  tf.train.Checkpoint(model=model).restore(result.checkpoint).expect_partial()
  tables = export.restore_tables(feature_config, result.checkpoint)
  raw_label_keys = [config.raw_label_key] if config.raw_label_key else []
  export.export_serving_model(
      serving_dir, tables, model, resolved.id_mapper(), transform_output,
      raw_label_keys, result.dense_feature_keys, task)
  if config.export_projector:
    export.export_projector(
        os.path.join(run_dir, loop.LOG_DIR), tables, resolved,
        table_vocabularies(resolved, transform_output))
  if not raw_eval_examples:
    logging.warning('No raw evaluation examples: the serving model was not '
                    'checked against the training path.')
    return False
  outputs = verify.training_path_outputs(
      raw_eval_examples, resolved, model, result.checkpoint,
      transform_output, raw_label_keys, result.dense_feature_keys)
  expected = {key: value.numpy() for key, value in
              task.serving_outputs(tf.constant(outputs)).items()}
  verify.check_serving(
      verify.serving_outputs(serving_dir, raw_eval_examples), expected)
  return True
