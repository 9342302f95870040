"""Training health: figures against numpy, the touched bitmap, warnings."""

import logging
import types

import numpy as np
import pytest
import tensorflow as tf

from components import embedding as emb
from components.embedding import cpu_embedding
from components.trainer import health as health_lib

_WORDS = [f'w{i}' for i in range(6)]


def _resolved(learning_rate=0.5, oov_rows='random'):
  column = emb.categorical_column_with_vocabulary_list('word', _WORDS,
                                                       num_oov_buckets=2)
  spec = emb.EmbeddingSpec(columns=[emb.embedding_column(column, 4)],
                           optimizer=emb.SGD(learning_rate),
                           oov_rows=oov_rows)
  return spec.resolve()


def _embedding(resolved):
  step = tf.Variable(0, dtype=tf.int64)
  return cpu_embedding.CpuEmbedding(resolved.compile(step),
                                    resolved.compile_optimizer(step))


def _train(resolved, embedding, health, batches):
  """SGD steps on sum(activations) through the recording iterator."""
  dataset = tf.data.Dataset.from_tensor_slices(
      tf.ragged.constant(batches, dtype=tf.int64)).batch(1).map(
          lambda ids: ({'word': ids}, {}, {}, tf.zeros([])))
  recording = health.recording(iter(dataset))

  @tf.function
  def step(iterator):
    ids, _, _, _ = next(iterator)
    words = tf.ragged.boolean_mask(ids['word'], ids['word'] >= 0)
    with tf.GradientTape() as tape:
      loss = tf.reduce_sum(embedding({'word': words})['word'])
    embedding.apply_gradients(
        tape.gradient(loss, embedding.trainable_variables))
    return loss

  for _ in batches:
    health.add_loss(step(recording))


def test_table_figures_match_numpy():
  rng = np.random.default_rng(1)
  initial = rng.normal(size=(5, 3))
  now = initial.copy()
  now[[1, 3]] += rng.normal(size=(2, 3))
  touched = np.array([0, 1, 0, 1, 1], np.int8)
  rows = np.array([0, 1, 3])  # A sample: row 4 was touched but not copied.
  figures = health_lib.table_figures(now, touched, rows, initial[rows])
  norms = np.linalg.norm(now, axis=1)
  initial_norm = np.linalg.norm(initial[rows], axis=1).mean()
  moved = np.linalg.norm(now[[1, 3]] - initial[[1, 3]], axis=1).mean()
  assert figures['touched_share'] == pytest.approx(0.6)
  assert figures['moved'] == pytest.approx(moved / initial_norm)
  assert figures['initial_mean_norm'] == pytest.approx(initial_norm)
  for q in (10, 50, 90):
    assert figures[f'norm_p{q}'] == pytest.approx(np.percentile(norms, q))
  assert figures['sampled_rows'] == 3
  assert health_lib.table_figures(now, touched)['moved'] is None


def test_large_tables_keep_a_sample_of_initial_rows():
  assert len(health_lib.copied_rows(100, 8)) == 100
  sample = health_lib.copied_rows(10**6, 64)
  assert len(sample) == health_lib.SAMPLED_ROWS
  assert len(np.unique(sample)) == len(sample) and sample.max() < 10**6


def test_bitmap_records_exactly_the_trained_ids_and_the_loss_window():
  resolved = _resolved()
  embedding = _embedding(resolved)
  health = health_lib.TrainingHealth(resolved, 'cpu', 0.05)
  health.copy_initial_values(health.live_tables(embedding))
  _train(resolved, embedding, health, [[0, 2], [2, 7], [-1, 3]])
  touched = next(iter(health.touched.values())).numpy()
  np.testing.assert_array_equal(touched, [1, 0, 1, 1, 0, 0, 0, 1])
  # Each step's loss is the sum of its rows' values (before the update).
  assert np.isfinite(health.take_mean_loss())
  assert np.isnan(health.take_mean_loss())  # A new, empty window.


def test_window_mean_is_the_mean_of_the_added_losses():
  health = health_lib.TrainingHealth(_resolved(), 'cpu')
  for loss in (1.0, 2.0, 6.0):
    health.add_loss(tf.constant(loss))
  assert health.take_mean_loss() == pytest.approx(3.0)


def _after_training(resolved, batches, tmp_path):
  embedding = _embedding(resolved)
  health = health_lib.TrainingHealth(resolved, 'cpu', 0.05)
  health.copy_initial_values(health.live_tables(embedding))
  before = next(iter(embedding.embedding_tables.values())).numpy()
  _train(resolved, embedding, health, batches)
  writer = tf.summary.create_file_writer(str(tmp_path))
  result = health.after_training(embedding, '', str(tmp_path), writer, 1)
  return result, before, next(iter(embedding.embedding_tables.values()))


def test_still_table_warns(tmp_path, caplog):
  with caplog.at_level(logging.WARNING):
    result, _, _ = _after_training(_resolved(learning_rate=1e-9),
                                   [[0, 1], [2]], tmp_path)
  (figures,) = result['tables'].values()
  assert figures['moved'] < 1e-6
  assert len(result['warnings']) == 1
  assert 'barely moved' in result['warnings'][0]
  assert 'barely moved' in caplog.text
  moving, _, _ = _after_training(_resolved(learning_rate=0.5), [[0, 1], [2]],
                                 tmp_path)
  assert not moving['warnings']


def test_mean_after_training_sets_untouched_oov_rows(tmp_path):
  resolved = _resolved(oov_rows='mean_after_training')
  result, _, table = _after_training(resolved, [[0, 1], [2, 6]], tmp_path)
  values = table.numpy()
  # Row 6 (an OOV row training reached) keeps its value; row 7 gets the mean.
  np.testing.assert_allclose(values[7], values[[0, 1, 2, 6]].mean(axis=0),
                             rtol=1e-6)
  assert not np.allclose(values[6], values[7])
  assert result['oov_rows_set'] == {'word_embedding': 1}
  assert result['tables_changed']


def test_statistics_warnings_are_repeated(caplog):
  statistics = types.SimpleNamespace(warnings=[
      types.SimpleNamespace(message='user_id: OOV rate 85% in eval')])
  with caplog.at_level(logging.WARNING):
    messages = health_lib.log_statistics_warnings(statistics)
  assert messages == ['user_id: OOV rate 85% in eval']
  assert 'Embedding statistics: user_id: OOV rate 85%' in caplog.text
  assert health_lib.log_statistics_warnings(None) == []


def test_large_tables_are_read_only_at_the_end(monkeypatch):
  resolved = _resolved()
  embedding = _embedding(resolved)
  health = health_lib.TrainingHealth(resolved, 'cpu')
  assert list(health.live_tables(embedding, periodic=True)) == [
      'word_embedding']
  monkeypatch.setattr(health_lib, 'MAX_PERIODIC_VALUES', 8 * 4 - 1)
  assert health.live_tables(embedding, periodic=True) == {}
  assert list(health.live_tables(embedding)) == ['word_embedding']
  assert health_lib.TrainingHealth(resolved, 'tpu').live_tables(
      embedding) is None


def test_figures_go_to_tensorboard(tmp_path):
  result, _, _ = _after_training(_resolved(), [[0, 1], [2]], tmp_path)
  tags = {}
  for path in tmp_path.glob('events.out.tfevents.*'):
    for event in tf.compat.v1.train.summary_iterator(str(path)):
      for value in event.summary.value:
        tags[value.tag] = float(tf.make_ndarray(value.tensor))
  figures = result['tables']['word_embedding']
  assert tags['health/word_embedding/touched_share'] == pytest.approx(
      figures['touched_share'])
  assert tags['health/word_embedding/moved'] == pytest.approx(
      figures['moved'])
  assert 'health/word_embedding/norm_p90' in tags
