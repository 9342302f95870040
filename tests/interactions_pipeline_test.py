"""The interactions example end to end: a generated log through ImportExampleGen,
a multiclass task, and a pipeline killed during training then rerun."""

import os
import signal
import subprocess
import sys

import numpy as np
import pytest
import tensorflow as tf

from components.trainer import loop
from pipelines.interactions import data
from pipelines.interactions import local_runner
from pipelines.interactions import pipeline

_ARGS = ['--num-users', '60', '--train-steps', '30']
_CHECKPOINT_EVERY = 10
_KILL_AT_STEP = 13

# Runs the local runner with the Trainer killed (SIGKILL: the whole pipeline
# process) at a training step.
_KILLED_PIPELINE = """
import os, signal, sys
sys.path.insert(0, {tests_dir!r})
import interactions_pipeline_test as t
t.use_test_settings()
from components.trainer import loop
train = loop.train
def killed_train(*args, **kwargs):
  def on_step(step):
    if step >= {step}:
      os.kill(os.getpid(), signal.SIGKILL)
  return train(*args, on_step=on_step, **kwargs)
loop.train = killed_train
from pipelines.interactions import local_runner
local_runner.main(['--output-dir', {output_dir!r}] + t._ARGS)
"""


def use_test_settings():
  """Checkpoints often enough, and calls short enough, for the kill to land
  between two checkpoints."""
  defaults = pipeline.default_training_config

  def config(**overrides):
    return defaults(**dict(overrides, checkpoint_every=_CHECKPOINT_EVERY,
                           log_every=_CHECKPOINT_EVERY, batch_size=32,
                           steps_per_execution=2))

  pipeline.default_training_config = config
  return defaults


@pytest.fixture(scope='module')
def rerun(tmp_path_factory):
  output_dir = str(tmp_path_factory.mktemp('interactions'))
  killed = subprocess.run(
      [sys.executable, '-c', _KILLED_PIPELINE.format(
          tests_dir=os.path.dirname(__file__), step=_KILL_AT_STEP,
          output_dir=output_dir)],
      check=False, capture_output=True)
  assert killed.returncode == -signal.SIGKILL, killed.stderr.decode()[-3000:]
  defaults = use_test_settings()
  try:
    return local_runner.run(local_runner.parse_args(
        ['--output-dir', output_dir] + _ARGS))
  finally:
    pipeline.default_training_config = defaults


@pytest.mark.slow
@pytest.mark.e2e
def test_rerun_after_a_kill_resumes_the_trainer(rerun):
  states = {c['name']: c['state'] for c in rerun['components']}
  assert states.pop('TpuEmbeddingTrainer') == 'COMPLETE'
  assert set(states.values()) == {'CACHED'}, states
  training = rerun['training']
  assert training['resumed_from_step'] == _CHECKPOINT_EVERY
  assert training['steps'] == 30


@pytest.mark.slow
@pytest.mark.e2e
def test_multiclass_task_end_to_end(rerun):
  training = rerun['training']
  assert training['task'] == 'multiclass' and training['serving_checked']
  metrics = training['eval_metrics']
  assert set(metrics) == {'accuracy', 'top_k_accuracy', 'log_loss',
                          'examples'}
  assert 0 <= metrics['accuracy'] <= metrics['top_k_accuracy'] <= 1
  assert metrics['examples'] == rerun['rows_per_split']['eval'] > 0
  assert rerun['vocabulary_sizes']['item'] > 0
  assert 'history_xf' in rerun['embedding_statistics']['max_sequence_length']


@pytest.mark.slow
@pytest.mark.e2e
def test_serving_returns_rating_probabilities_and_classes(rerun):
  rows = data.generate(data.LogOptions(num_users=3, seed=5))['eval']
  for row in rows:
    row.pop('rating')
  records = tf.constant([data.to_example(row) for row in rows])
  serving = tf.saved_model.load(rerun['training']['serving_model'])
  outputs = serving.signatures['serving_default'](examples=records)
  probabilities = outputs['probabilities'].numpy()
  assert probabilities.shape == (len(rows), 5)
  np.testing.assert_allclose(probabilities.sum(axis=1), 1.0, rtol=1e-5)
  np.testing.assert_array_equal(outputs['classes'].numpy(),
                                probabilities.argmax(axis=1))
  # The run's checkpoints moved into its ModelRun artifact.
  assert os.path.isdir(os.path.join(
      rerun['artifacts']['TpuEmbeddingTrainer.model_run'],
      loop.CHECKPOINT_DIR))
