"""Tests of the TPU embedding Trainer on its CPU path: resume, export, errors."""

import json
import os
import signal
import subprocess
import sys

import numpy as np
import pytest
import tensorflow as tf
import tensorflow_transform as tft
from tensorflow.core.protobuf import saved_model_pb2
from tfx.types import standard_artifacts

from components.trainer import backends
from components.trainer import config as config_lib
from components.trainer import executor as executor_lib
from components.trainer import inputs
from components.trainer import loop
from components.trainer import tasks
from components.trainer import training
from pipelines.movies import embedding_spec
from pipelines.movies import features

import trainer_fixture

_LENGTHS = {features.transformed_name(features.CAST): 8}


@pytest.fixture(scope='module')
def transform_run(movies_transform):
  return movies_transform


def _config(**overrides):
  values = dict(model_fn='pipelines.movies.model.build_model',
                label_key=features.TRANSFORMED_LABEL,
                raw_label_key=features.LABEL, train_steps=24, batch_size=16,
                checkpoint_every=8, log_every=8, shuffle_buffer=64, seed=7)
  values.update(overrides)
  return config_lib.TrainingConfig(**values)


def _train(transform_run, run_dir, config_overrides=None, **kwargs):
  examples_dir, transform_dir = transform_run
  examples = trainer_fixture.examples_artifact(examples_dir)
  output = tft.TFTransformOutput(transform_dir)
  resolved = embedding_spec.create_embedding_spec(24).resolve(
      tf_transform_output=output, max_sequence_lengths=_LENGTHS)
  return loop.train(_config(**(config_overrides or {})), resolved,
                    output.transformed_feature_spec(),
                    inputs.split_files([examples], ['train']),
                    inputs.split_files([examples], ['eval']), run_dir,
                    **kwargs)


def _checkpoint_values(path):
  reader = tf.train.load_checkpoint(path)
  values = {name: reader.get_tensor(name)
            for name in reader.get_variable_to_shape_map()
            if not name.startswith('input/') and 'save_counter' not in name}
  return {name: value for name, value in values.items()
          if isinstance(value, np.ndarray) and value.dtype.kind in 'fi'}


def _kill_at(step_to_kill):
  def on_step(step):
    if step >= step_to_kill:
      os.kill(os.getpid(), signal.SIGKILL)
  return on_step


_KILLED_RUN = """
import sys
sys.path.insert(0, {tests_dir!r})
import tensorflow as tf
import trainer_test
tf.config.experimental.enable_op_determinism()
trainer_test._train(({examples!r}, {transform!r}), {run_dir!r},
                    config_overrides=dict(steps_per_execution=2),
                    on_step=trainer_test._kill_at({step}))
"""


@pytest.mark.slow
def test_resumed_run_equals_uninterrupted_run(transform_run, tmp_path):
  """Killed after step 14 (2 steps per call), resumed from the checkpoint at
  step 8 with 8 steps per call: the same tables as one uninterrupted run."""
  tf.config.experimental.enable_op_determinism()
  straight = _train(transform_run, str(tmp_path / 'straight'))
  killed_dir = str(tmp_path / 'killed')
  script = _KILLED_RUN.format(tests_dir=os.path.dirname(__file__),
                              examples=transform_run[0],
                              transform=transform_run[1], run_dir=killed_dir,
                              step=13)
  killed = subprocess.run([sys.executable, '-c', script], check=False,
                          capture_output=True)
  assert killed.returncode == -signal.SIGKILL, killed.stderr.decode()[-2000:]
  resumed = _train(transform_run, killed_dir)
  assert resumed.resumed_from_step == 8
  assert resumed.steps == straight.steps == 24
  expected = _checkpoint_values(straight.checkpoint)
  actual = _checkpoint_values(resumed.checkpoint)
  assert expected.keys() == actual.keys()
  table_keys = [k for k in expected if k.startswith('embedding/')]
  assert any('.S' in k for k in table_keys), 'optimizer slots are checkpointed'
  for key in expected:
    np.testing.assert_allclose(actual[key], expected[key], rtol=1e-5,
                               atol=1e-6, err_msg=key)


def _run_executor(transform_run, tmp_path, config):
  examples_dir, transform_dir = transform_run
  examples = trainer_fixture.examples_artifact(examples_dir)
  graph = standard_artifacts.TransformGraph()
  graph.uri = transform_dir
  model = standard_artifacts.Model()
  model.uri = str(tmp_path / 'Trainer' / 'model' / '1')
  model_run = standard_artifacts.ModelRun()
  model_run.uri = str(tmp_path / 'Trainer' / 'model_run' / '1')
  spec = embedding_spec.create_embedding_spec(config.train_steps)
  cast = features.transformed_name(features.CAST)
  spec_json = json.loads(spec.to_json())
  for column in spec_json['columns']:
    if column.get('categorical_column', {}).get('key') == cast:
      column['max_sequence_length'] = 8  # No statistics artifact here.
  raw = trainer_fixture.examples_artifact(
      trainer_fixture.raw_examples_dir(examples_dir))
  executor_lib.Executor().Do(
      {'examples': [examples], 'transform_graph': [graph],
       'raw_examples': [raw]},
      {'model': [model], 'model_run': [model_run]},
      {'embedding_spec': json.dumps(spec_json),
       'training_config': config.to_json()})
  return model, model_run


@pytest.fixture(scope='module')
def exported(transform_run, tmp_path_factory):
  tmp_path = tmp_path_factory.mktemp('executor')
  model, model_run = _run_executor(transform_run, tmp_path,
                                   _config(train_steps=40))
  serving_dir = os.path.join(model.uri, 'Format-Serving')
  return tf.saved_model.load(serving_dir), model_run, serving_dir


def _predict(serving, rows):
  examples = tf.constant([trainer_fixture.raw_example(r) for r in rows])
  return serving.signatures['serving_default'](examples=examples)[
      'probabilities'].numpy().reshape(-1)


@pytest.mark.slow
def test_serving_signature_on_raw_examples(exported):
  serving, model_run, _ = exported
  rows = trainer_fixture.synthetic_rows(6, seed=9)
  for row in rows:
    row.pop(features.LABEL)
  probabilities = _predict(serving, rows)
  assert probabilities.shape == (6,)
  assert np.all((probabilities > 0) & (probabilities < 1))
  with open(os.path.join(model_run.uri, training.TRAINING_RESULT_FILE)) as f:
    result = json.load(f)
  assert result['steps'] == 40 and 0 <= result['eval_metrics']['auc'] <= 1
  assert result['task'] == 'binary' and result['serving_checked']
  assert result['examples_per_split'] == {'train': 480, 'eval': 160}
  assert result['eval_metrics']['examples'] == 160
  tables = result['health']['tables']
  assert tables and all(0 < t['touched_share'] <= 1 and t['moved'] > 0
                        for t in tables.values())
  assert result['health']['statistics_warnings'] == []  # No statistics here.
  assert model_run.get_float_custom_property('eval_auc') == pytest.approx(
      result['eval_metrics']['auc'])


@pytest.mark.slow
def test_unseen_tokens_share_the_oov_bucket(exported):
  serving, _, _ = exported
  base = trainer_fixture.synthetic_rows(1, seed=3)[0]
  base.pop(features.LABEL)
  unseen_a = dict(base, **{features.CAST: [b'never seen'],
                           features.PRODUCTION: [b'nobody']})
  unseen_b = dict(base, **{features.CAST: [b'also unseen'],
                           features.PRODUCTION: [b'no one']})
  known = dict(base, **{features.CAST: [b'actor_1'],
                        features.PRODUCTION: [b'nobody']})
  a, b, c = _predict(serving, [unseen_a, unseen_b, known])
  assert a == pytest.approx(b, abs=1e-6)
  assert a != pytest.approx(c, abs=1e-6)


@pytest.mark.slow
def test_missing_features_equal_empty_lists(exported):
  serving, _, _ = exported
  base = trainer_fixture.synthetic_rows(1, seed=4)[0]
  base.pop(features.LABEL)
  empty = dict(base, **{features.CAST: [], features.WRITER: [],
                        features.RUNTIME: []})
  missing = {k: v for k, v in base.items()
             if k not in (features.CAST, features.WRITER, features.RUNTIME)}
  p_empty, p_missing = _predict(serving, [empty, missing])
  assert p_empty == pytest.approx(p_missing, abs=1e-6)


@pytest.mark.slow
def test_serving_model_holds_only_tensorflows_ops(exported):
  """Trained with the native kernels, exported without them: the SavedModel
  loads wherever TensorFlow does (TF Serving, Vertex AI prediction)."""
  saved_model = saved_model_pb2.SavedModel()
  with open(os.path.join(exported[2], 'saved_model.pb'), 'rb') as f:
    saved_model.ParseFromString(f.read())
  graph = saved_model.meta_graphs[0].graph_def
  op_types = {node.op for node in graph.node} | {
      node.op for function in graph.library.function
      for node in function.node_def}
  assert 'ParseExample' in op_types or 'ParseExampleV2' in op_types
  assert not [op for op in op_types if op.startswith('EmbeddingRows')]


@pytest.mark.slow
def test_projector_files(exported):
  _, model_run, _ = exported
  projector_dir = os.path.join(model_run.uri, 'logs', 'projector')
  assert os.path.exists(os.path.join(projector_dir, 'projector_config.pbtxt'))
  with open(os.path.join(projector_dir, 'crew.tsv')) as f:
    labels = f.read().splitlines()
  assert 'crew_1' in labels and labels[-1] == '[OOV 0]'


def test_config_rejects_bad_values():
  with pytest.raises(ValueError, match='batch_size must be an int > 0'):
    _config(batch_size=0)
  with pytest.raises(ValueError, match='in_memory_train_mib must be an int >= 0'):
    _config(in_memory_train_mib=-1)
  with pytest.raises(ValueError, match='dotted path'):
    _config(model_fn='build_model')
  with pytest.raises(ValueError, match='Unknown TrainingConfig fields'):
    config_lib.TrainingConfig.from_dict({'model_fn': 'a.b', 'label_key': 'y',
                                         'epochs': 3})


def test_config_json_round_trip():
  config = _config(tpu='local')
  assert config_lib.TrainingConfig.from_json(config.to_json()) == config
  assert config.on_tpu and not _config().on_tpu


def test_tpu_batch_must_divide_over_replicas():
  backends.check_batch_size(256, 8)
  with pytest.raises(ValueError, match='not divisible by the 8 TPU replicas'):
    backends.check_batch_size(100, 8)


def test_missing_model_fn_is_reported():
  with pytest.raises(ValueError, match="has no 'nope'"):
    tasks.import_by_path('pipelines.movies.model.nope')
