"""Reliability of the Trainer: bad labels, NaN, crashes, corrupt checkpoints,
serving skew, wrong evaluation, bad settings. One test per case."""

import json
import logging
import os
import shutil
import signal
import subprocess
import sys
import tempfile

import numpy as np
import pytest
import tensorflow as tf
import tensorflow_transform as tft
from tfx.types import standard_artifacts

from components.embedding import native_kernels
from components.trainer import backends
from components.trainer import executor as executor_lib
from components.trainer import export
from components.trainer import inputs
from components.trainer import labels
from components.trainer import loop
from components.trainer import models
from components.trainer import resume
from components.trainer import tasks
from components.trainer import training
from pipelines import local
from pipelines.movies import embedding_spec
from pipelines.movies import features
from pipelines.movies import local_runner

import trainer_fixture

_LENGTHS_JSON_KEY = features.transformed_name(features.CAST)


def _config(**overrides):
  return trainer_fixture.training_config(
      **dict(dict(checkpoint_every=4, export_projector=True, seed=3),
             **overrides))


def _spec_json(train_steps):
  spec = json.loads(embedding_spec.create_embedding_spec(train_steps).to_json())
  for column in spec['columns']:
    if column.get('categorical_column', {}).get('key') == _LENGTHS_JSON_KEY:
      column['max_sequence_length'] = 8
  return json.dumps(spec)


def _label_files(tmp_path, split, values, dtype=tf.int64):
  def example(value):
    feature = (tf.train.Feature(int64_list=tf.train.Int64List(value=[value]))
               if dtype == tf.int64 else
               tf.train.Feature(float_list=tf.train.FloatList(value=[value])))
    return tf.train.Example(features=tf.train.Features(
        feature={'y': feature})).SerializeToString()
  trainer_fixture.write_split(str(tmp_path), split,
                              [example(v) for v in values])
  return tf.io.gfile.glob(str(tmp_path / f'Split-{split}' / '*'))


@pytest.mark.parametrize('kind, values, message', [
    ('binary', [0, 1, 7], 'invalid labels'),
    ('binary', [0, 1, -1], 'invalid labels'),
    ('binary', [1, 1, 1], 'only label'),
    ('binary', [], 'no examples'),
    ('multiclass', [0, 1, 5], r'class ids must be in \[0, 5\)'),
    ('multiclass', [2, 2], 'only class'),
])
def test_bad_labels_are_refused_naming_the_split(tmp_path, kind, values,
                                                 message):
  files = _label_files(tmp_path, 'train', values)
  task = tasks.TaskConfig(kind=kind,
                          num_classes=5 if kind == 'multiclass' else None)
  spec = {'y': tf.io.FixedLenFeature([], tf.int64)}
  with pytest.raises(labels.LabelError, match=f"'train' split.*{message}"):
    labels.check_labels({'train': files}, ['train'], 'y', spec, task)


def test_non_finite_regression_labels_and_good_labels(tmp_path):
  spec = {'y': tf.io.FixedLenFeature([], tf.float32)}
  bad = _label_files(tmp_path / 'a', 'eval', [1.0, float('nan')], tf.float32)
  with pytest.raises(labels.LabelError, match="'eval' split has 1 non-finite"):
    labels.check_labels({'eval': bad}, [], 'y', spec,
                        tasks.TaskConfig(kind='regression'))
  good = _label_files(tmp_path / 'b', 'train', [0, 1, 1])
  summary = labels.check_labels(
      {'train': good}, ['train'], 'y',
      {'y': tf.io.FixedLenFeature([], tf.int64)}, tasks.TaskConfig())
  assert summary['train'].examples == 3
  assert summary['train'].classes == {0: 1, 1: 2}


class ExplodingModel(models.EmbeddingMlp):
  """The movies tower whose outputs become NaN from its 6th training call."""

  def __init__(self, *args, **kwargs):
    super().__init__(*args, **kwargs)
    self.training_calls = tf.Variable(0, dtype=tf.int64, trainable=False)

  def call(self, inputs, training=False):
    outputs = super().call(inputs, training=training)
    if training:
      calls = self.training_calls.assign_add(1)
      # A factor, so that gradients stay finite before the 6th call.
      outputs = outputs * tf.where(calls > 5, np.nan, 1.0)
    return outputs


def build_exploding_model(resolved_spec, dense_feature_keys):
  return ExplodingModel(models.sequence_keys(resolved_spec),
                        dense_feature_keys, outputs=1)


def _resolved(transform_dir, train_steps):
  output = tft.TFTransformOutput(transform_dir)
  return output, embedding_spec.create_embedding_spec(train_steps).resolve(
      tf_transform_output=output,
      max_sequence_lengths={_LENGTHS_JSON_KEY: 8})


@pytest.mark.slow
def test_nan_stops_training_and_keeps_the_last_good_checkpoint(
    movies_transform, tmp_path):
  examples_dir, transform_dir = movies_transform
  examples = trainer_fixture.examples_artifact(examples_dir)
  output, resolved = _resolved(transform_dir, 24)
  config = _config(model_fn='reliability_trainer_test.build_exploding_model',
                   train_steps=24, checkpoint_every=2, log_every=100)
  with pytest.raises(loop.NonFiniteError,
                     match=r'step 6: the loss is nan and these hold NaN.*'
                     r'table cast_xf_embedding'):
    loop.train(config, resolved, output.transformed_feature_spec(),
               inputs.split_files([examples], ['train']),
               inputs.split_files([examples], ['eval']), str(tmp_path))
  latest = tf.train.latest_checkpoint(str(tmp_path / loop.CHECKPOINT_DIR))
  assert latest.endswith('ckpt-4')
  reader = tf.train.load_checkpoint(latest)
  assert all(np.all(np.isfinite(reader.get_tensor(name)))
             for name, dtype in reader.get_variable_to_dtype_map().items()
             if dtype.is_floating)


def test_corrupt_newest_checkpoint_falls_back_to_the_previous(tmp_path,
                                                              caplog):
  variable = tf.Variable(0.0)
  checkpoint = tf.train.Checkpoint(v=variable)
  manager = tf.train.CheckpointManager(checkpoint, str(tmp_path),
                                       max_to_keep=3)
  for step in (1, 2, 3):
    variable.assign(float(step))
    manager.save(checkpoint_number=step)
  data = tf.io.gfile.glob(manager.latest_checkpoint + '.data-*')[0]
  with open(data, 'r+b') as f:
    f.truncate(2)
  variable.assign(-1.0)
  restored = loop.restore_newest_readable(checkpoint, manager)
  assert restored.endswith('ckpt-2') and float(variable) == 2.0
  assert 'cannot be read' in caplog.text


def test_resume_fingerprint_follows_inputs_and_config(tmp_path):
  inputs_a = {'examples': ['/p/Transform/transformed_examples/4']}
  inputs_b = {'examples': ['/p/Transform/transformed_examples/9']}
  properties = {'training_config': _config().to_json(), 'tpu_type': None}
  changed = {'training_config': _config(train_steps=9).to_json()}
  same = resume.fingerprint(inputs_a, properties)
  assert same == resume.fingerprint(dict(inputs_a), dict(properties))
  assert same != resume.fingerprint(inputs_b, properties)
  assert same != resume.fingerprint(inputs_a, changed)
  assert resume.working_dir('/root/Trainer/model_run/7/', same) == (
      f'/root/Trainer/resume/{same}')
  assert resume.working_dir('gs://b/r/123/job-2/Trainer_5/model_run', same,
                            'gs://b/r/Trainer/resume') == (
                                f'gs://b/r/Trainer/resume/{same}')


def test_run_identity_ignores_only_how_the_run_is_carried_out(tmp_path):
  memory = inputs.IN_MEMORY
  identity = _config().run_identity(memory)
  # Steps per call, log and checkpoint intervals: the same trained model.
  assert _config(steps_per_execution=7, log_every=3,
                 checkpoint_every=11).run_identity(memory) == identity
  # Settings that keep the same files in memory: the same example order.
  assert _config(in_memory_train_mib=64,
                 parse_once=False).run_identity(memory) == identity
  # Blocks or streaming instead change the order; so do the model's settings.
  assert _config().run_identity(inputs.PARSED_BLOCKS) != identity
  assert _config().run_identity(inputs.STREAMED) != _config().run_identity(
      inputs.PARSED_BLOCKS)
  for changed in (dict(train_steps=9), dict(seed=4), dict(batch_size=64),
                  dict(shuffle_buffer=3), dict(dense_learning_rate=0.5)):
    assert _config(**changed).run_identity(memory) != identity, changed
  # The form follows the files' size and parse_once.
  (tmp_path / 'train.gz').write_bytes(b'x' * 2**20)
  files = [str(tmp_path / 'train.gz')]
  assert inputs.training_input(files, 1, False) == inputs.IN_MEMORY
  assert inputs.training_input(files, 0, True) == inputs.PARSED_BLOCKS
  assert inputs.training_input(files, 0, False) == inputs.STREAMED


def _executor_dicts(movies_transform, root, execution, job='',
                    steps_per_execution=2, **config_overrides):
  """The executor's arguments; with `job`, laid out as a Vertex AI job's
  artifacts (a folder per job) and with the builder's resume root."""
  examples_dir, transform_dir = movies_transform
  graph = standard_artifacts.TransformGraph()
  graph.uri = transform_dir
  outputs = (os.path.join(root, job, f'Trainer_{execution}') if job else
             os.path.join(root, 'Trainer'))
  model = standard_artifacts.Model()
  model.uri = os.path.join(outputs, 'model', '' if job else str(execution))
  model_run = standard_artifacts.ModelRun()
  model_run.uri = os.path.join(outputs, 'model_run',
                               '' if job else str(execution))
  input_dict = {'examples': [trainer_fixture.examples_artifact(examples_dir)],
                'transform_graph': [graph]}
  output_dict = {'model': [model], 'model_run': [model_run]}
  properties = {'embedding_spec': _spec_json(24),
                'training_config': _config(
                    train_steps=24, checkpoint_every=8, log_every=8,
                    steps_per_execution=steps_per_execution,
                    **config_overrides).to_json()}
  if job:
    properties[executor_lib.RESUME_ROOT_KEY] = os.path.join(
        root, 'Trainer', resume.RESUME_DIR)
  return input_dict, output_dict, properties


_KILLED_EXECUTOR = """
import sys
sys.path.insert(0, {tests_dir!r})
import os, signal
from components.trainer import executor, loop
import reliability_trainer_test as t
train = loop.train
def killed_train(*args, **kwargs):
  def on_step(step):
    if step >= 13:
      os.kill(os.getpid(), signal.SIGKILL)
  return train(*args, on_step=on_step, **kwargs)
loop.train = killed_train
executor.Executor().Do(*t._executor_dicts(({examples!r}, {transform!r}),
                                          {root!r}, 1, {job!r},
                                          **{overrides!r}))
"""


@pytest.mark.slow
@pytest.mark.parametrize('layout', ['local', 'vertex'])
def test_a_killed_trainer_resumes_when_rerun_and_a_finished_one_does_not(
    movies_transform, tmp_path, layout, monkeypatch):
  """Local: every execution's ModelRun beside the others. Vertex AI: each
  pipeline job's outputs in a folder of its own, the resume root shared;
  there the training files count as large (parsed once into blocks on local
  disk) and the rerun runs on another machine, without the killed run's
  blocks."""
  root = str(tmp_path)
  jobs = iter(['job-1', 'job-2', 'job-3'] if layout == 'vertex' else [''] * 3)
  overrides = {'in_memory_train_mib': 0} if layout == 'vertex' else {}
  local_tmp = tmp_path / 'local_tmp'
  local_tmp.mkdir()
  monkeypatch.setenv('TMPDIR', str(local_tmp))
  monkeypatch.setattr(tempfile, 'tempdir', None)  # Read TMPDIR again.
  blocks_root = local_tmp / 'tpu_embedding_tfx_blocks'
  script = _KILLED_EXECUTOR.format(
      tests_dir=os.path.dirname(__file__), examples=movies_transform[0],
      transform=movies_transform[1], root=root, job=next(jobs),
      overrides=overrides)
  killed = subprocess.run([sys.executable, '-c', script], check=False,
                          capture_output=True)
  assert killed.returncode == -signal.SIGKILL, killed.stderr.decode()[-2000:]
  if layout == 'vertex':
    assert len(os.listdir(blocks_root)) == 1  # Kept for a resume.
    shutil.rmtree(blocks_root)
  # The rerun is a new execution with a new ModelRun folder, and runs more
  # steps per call: that changes how it runs, not what it trains.
  input_dict, output_dict, properties = _executor_dicts(
      movies_transform, root, 2, next(jobs), steps_per_execution=4,
      **overrides)
  executor_lib.Executor().Do(input_dict, output_dict, properties)
  rerun = training.TrainingResult.load(output_dict['model_run'][0].uri)
  assert rerun.resumed_from_step == 8 and rerun.steps == 24
  assert not tf.io.gfile.listdir(os.path.join(root, 'Trainer', 'resume'))
  if layout == 'vertex':
    assert not os.listdir(blocks_root)  # Removed when training ended.
  assert tf.io.gfile.exists(os.path.join(output_dict['model_run'][0].uri,
                                         loop.CHECKPOINT_DIR))
  # A later run of the same inputs starts afresh: nothing stale is resumed.
  input_dict, output_dict, properties = _executor_dicts(movies_transform,
                                                        root, 3, next(jobs))
  executor_lib.Executor().Do(input_dict, output_dict, properties)
  assert training.TrainingResult.load(
      output_dict['model_run'][0].uri).resumed_from_step == 0


def _run_training(movies_transform, tmp_path, **config_overrides):
  examples_dir, transform_dir = movies_transform
  examples = trainer_fixture.examples_artifact(examples_dir)
  raw = trainer_fixture.examples_artifact(
      trainer_fixture.raw_examples_dir(examples_dir))
  return training.run_training(
      _config(**config_overrides), _spec_json(8),
      tft.TFTransformOutput(transform_dir),
      train_files=inputs.split_files([examples], ['train']),
      eval_files=inputs.split_files([examples], ['eval']),
      run_dir=str(tmp_path / 'run'), serving_dir=str(tmp_path / 'serving'),
      raw_eval_examples=[r for r in tf.data.TFRecordDataset(
          inputs.split_files([raw], ['eval']), compression_type='GZIP')
                         .take(32).as_numpy_iterator()])


@pytest.mark.slow
def test_a_serving_model_that_lost_its_combiner_fails_the_run(
    movies_transform, tmp_path, monkeypatch):
  serving_config = export.serving_feature_config

  def sqrtn_becomes_mean(feature_config):
    result = serving_config(feature_config)
    for feature in result.values():
      if feature.table.combiner == 'sqrtn':
        feature.table.combiner = 'mean'
    return result

  monkeypatch.setattr(export, 'serving_feature_config', sqrtn_becomes_mean)
  with pytest.raises(AssertionError, match="'probabilities' differs"):
    _run_training(movies_transform, tmp_path)


@pytest.mark.slow
def test_evaluating_the_wrong_split_fails_the_run(movies_transform, tmp_path,
                                                  monkeypatch):
  make_dataset = inputs.make_dataset
  train_files = inputs.split_files(
      [trainer_fixture.examples_artifact(movies_transform[0])], ['train'])

  def evaluate_on_train(files, *args, training, **kwargs):
    return make_dataset(train_files, *args, training=training, **kwargs)

  monkeypatch.setattr(inputs, 'make_dataset', evaluate_on_train)
  with pytest.raises(RuntimeError, match='Evaluation scored 480 examples; '
                     r"the evaluation splits \['eval'\] hold 160"):
    _run_training(movies_transform, tmp_path)


def test_expected_evaluation_count():
  config = _config(batch_size=16)
  assert training.expected_eval_examples(config, 50, False) == 50
  assert training.expected_eval_examples(config, 50, True) == 48
  limited = _config(batch_size=16, eval_steps=2)
  assert training.expected_eval_examples(limited, 50, False) == 32


def test_without_the_native_kernels_training_uses_tensorflows(
    monkeypatch, tmp_path, caplog):
  """A compiler that fails (here `false`) leaves TensorFlow's kernels: a
  warning says why, the device names the kernels, and the step trains."""
  if shutil.which('false') is None:
    pytest.skip('No `false` command to stand in for a broken compiler.')
  monkeypatch.setenv('CXX', 'false')
  monkeypatch.setenv(native_kernels.CACHE_VARIABLE, str(tmp_path))
  native_kernels._load.cache_clear()  # pylint: disable=protected-access
  E = tf.tpu.experimental.embedding  # pylint: disable=invalid-name
  try:
    with caplog.at_level(logging.WARNING):
      backend = backends.CpuBackend(
          {'bag': E.FeatureConfig(table=E.TableConfig(10, 4, name='t'))},
          E.Adagrad(0.5))
    assert 'did not compile' in caplog.text
    assert backend.device_description == "CPU (TensorFlow's embedding kernels)"
    before = backend.embedding.trainable_variables[0].numpy()
    features = {'bag': tf.ragged.constant([[1, 2], [3]], dtype=tf.int64)}

    @tf.function
    def step(features):
      with tf.GradientTape() as tape:
        loss = tf.reduce_sum(backend.embedding(features)['bag'])
      backend.embedding.apply_gradients(
          tape.gradient(loss, backend.embedding.trainable_variables))
      return loss

    step(features)
    after = backend.embedding.trainable_variables[0].numpy()
    assert not np.allclose(after[[1, 2, 3]], before[[1, 2, 3]])
    np.testing.assert_array_equal(after[[0, 4]], before[[0, 4]])
    assert not any(op.type.startswith('EmbeddingRows') for op in
                   step.get_concrete_function(features).graph.get_operations())
  finally:
    native_kernels._load.cache_clear()  # pylint: disable=protected-access


@pytest.mark.parametrize('field, value', [
    ('train_steps', True), ('batch_size', 0), ('eval_steps', -1),
    ('dense_learning_rate', float('nan')), ('dense_learning_rate', 'fast'),
    ('export_projector', 'yes'), ('parse_once', 'no'),
    ('embedding_engine', 'v9'),
])
def test_bad_training_config_values_are_refused(field, value):
  with pytest.raises(ValueError, match=f'TrainingConfig.{field}'):
    _config(**{field: value})


def test_bad_task_and_model_fn_fail_at_definition():
  with pytest.raises(ValueError, match='Unknown TrainingConfig.task fields'):
    _config(task={'kind': 'binary', 'classes': 3})
  with pytest.raises(ValueError, match='num_classes must be an int >= 2'):
    _config(task={'kind': 'multiclass'})
  with pytest.raises(ValueError, match="has no 'nope'"):
    tasks.import_by_path('pipelines.movies.model.nope')


@pytest.mark.parametrize('argv, message', [
    (['--train-steps', '0'], 'must be >= 1'),
    (['--sample-rows', '0'], 'must be >= 1'),
    (['--pipeline-name', '../x'], 'is not a pipeline name'),
])
def test_cli_refuses_zero_and_escaping_names(argv, message, capsys):
  with pytest.raises(SystemExit):
    local_runner.parse_args(argv)
  assert message in capsys.readouterr().err


def test_pipeline_names_cannot_leave_the_output_folder(tmp_path):
  with pytest.raises(ValueError, match='would write outside'):
    local.local_paths(str(tmp_path), '../elsewhere')
  assert local.local_paths(str(tmp_path), 'movies').output_dir == str(
      tmp_path / 'movies')
