"""How OOV rows start: the spec option, its JSON, resolution and compilation."""

import numpy as np
import pytest
import tensorflow as tf

from components import embedding as emb
from components.embedding import cpu_embedding
from components.embedding import oov

_WORDS = ['a', 'b', 'c', 'd', 'e']


def _spec(**kwargs):
  words = emb.categorical_column_with_vocabulary_list(
      'word', _WORDS, num_oov_buckets=3)
  shared = emb.shared_embedding_columns(
      [emb.categorical_column_with_vocabulary_list('left', _WORDS,
                                                    num_oov_buckets=2),
       emb.categorical_column_with_vocabulary_list('right', _WORDS,
                                                    num_oov_buckets=2)],
      dimension=4)
  return emb.EmbeddingSpec(
      columns=[emb.embedding_column(words, dimension=6)] + shared,
      optimizer=emb.Adagrad(0.1), **kwargs)


def _table_names(spec):
  return [c.resolved_table_name for c in spec.columns]


def test_json_round_trip_keeps_the_oov_modes():
  base = _spec()
  word_table, shared_table = _table_names(base)[0], _table_names(base)[1]
  spec = _spec(oov_rows='zero',
               oov_rows_by_table={shared_table: 'mean_after_training'})
  config = spec.to_config()
  assert config['oov_rows'] == 'zero'
  assert config['oov_rows_by_table'] == {shared_table: 'mean_after_training'}
  again = emb.EmbeddingSpec.from_json(spec.to_json())
  assert again == spec
  assert again.oov_rows_of(word_table) == 'zero'
  assert again.oov_rows_of(shared_table) == 'mean_after_training'
  # The default writes nothing, so older JSON stays as it was.
  assert 'oov_rows' not in base.to_config()
  assert 'oov_rows_by_table' not in base.to_config()


def test_schema_names_the_field_of_a_bad_mode():
  config = _spec().to_config()
  config['oov_rows'] = 'zeros'
  with pytest.raises(emb.SpecValidationError, match='^oov_rows: expected one'):
    emb.EmbeddingSpec.from_config(config)
  config = _spec().to_config()
  config['oov_rows_by_table'] = {'x': 'mean'}
  with pytest.raises(emb.SpecValidationError,
                     match=r'^oov_rows_by_table\.x: expected one'):
    emb.EmbeddingSpec.from_config(config)


def test_unknown_table_and_mode_are_refused():
  with pytest.raises(ValueError, match="names table 'nope'.*the tables are"):
    _spec(oov_rows_by_table={'nope': 'zero'})
  with pytest.raises(ValueError, match='oov_rows must be one of'):
    _spec(oov_rows='mean')
  config = _spec().to_config()
  config['oov_rows_by_table'] = {'nope': 'zero'}
  with pytest.raises(emb.SpecValidationError, match='^oov_rows_by_table: '):
    emb.EmbeddingSpec.from_config(config)


def test_resolution_knows_each_tables_oov_rows():
  spec = _spec(oov_rows='zero')
  tables = spec.resolve().tables
  word, shared = (tables[n] for n in _table_names(spec)[:2])
  assert (word.vocabulary_size, word.num_oov_rows, word.first_oov_row) == (
      8, 3, 5)
  assert (shared.vocabulary_size, shared.num_oov_rows,
          shared.first_oov_row) == (7, 2, 5)
  assert word.oov_rows == shared.oov_rows == 'zero'


def _initial_tables(spec):
  feature_config = spec.resolve().compile()
  embedding = cpu_embedding.CpuEmbedding(feature_config,
                                         tf.tpu.experimental.embedding.SGD(0.1))
  return feature_config, {t.name: v.numpy()
                          for t, v in embedding.embedding_tables.items()}


def test_zero_start_rows_are_exactly_zero_in_config_and_on_cpu():
  spec = _spec(oov_rows='zero')
  feature_config, tables = _initial_tables(spec)
  word_table = feature_config['word'].table
  assert isinstance(word_table.initializer, oov.ZeroOovRows)
  # The compiled TableConfig initializer, as any engine calls it.
  values = word_table.initializer((8, 6), dtype=tf.float32).numpy()
  assert np.all(values[5:] == 0.0)
  assert np.all(np.abs(values[:5]).sum(axis=1) > 0)
  # The CPU path's table variables.
  for name, rows in tables.items():
    assert np.all(rows[5:] == 0.0), name
    assert np.all(np.abs(rows[:5]).sum(axis=1) > 0), name


def test_zero_start_keeps_the_columns_initializer():
  words = emb.categorical_column_with_vocabulary_list('word', _WORDS,
                                                      num_oov_buckets=1)
  spec = emb.EmbeddingSpec(
      columns=[emb.embedding_column(
          words, dimension=3,
          initializer=emb.initializer('constant', value=0.5))],
      optimizer=emb.SGD(0.1), oov_rows='zero')
  _, tables = _initial_tables(spec)
  rows = next(iter(tables.values()))
  np.testing.assert_array_equal(rows[:5], np.full((5, 3), 0.5))
  np.testing.assert_array_equal(rows[5:], np.zeros((1, 3)))


def test_random_and_mean_modes_leave_the_initializer_alone():
  for mode in ('random', 'mean_after_training'):
    feature_config, tables = _initial_tables(_spec(oov_rows=mode))
    assert not isinstance(feature_config['word'].table.initializer,
                          oov.ZeroOovRows)
    assert all(np.all(np.abs(t).sum(axis=1) > 0) for t in tables.values())


def test_zero_start_refuses_a_shard_of_the_table():
  initializer = oov.ZeroOovRows(None, first_row=5, vocabulary_size=8,
                                table_name='t')
  with pytest.raises(ValueError, match="Table 't'.*shard of 4 rows"):
    initializer((4, 2))


def test_mean_after_training_sets_untouched_oov_rows_to_numpy_mean():
  rng = np.random.default_rng(0)
  values = rng.normal(size=(10, 3)).astype(np.float32)
  touched = np.zeros(10, bool)
  touched[[0, 2, 3, 8]] = True  # Row 8 is an OOV row training reached.
  table = tf.Variable(values)
  assert oov.set_untouched_rows_to_mean(table, 7, touched) == 2
  expected = values.copy()
  expected[[7, 9]] = values[[0, 2, 3, 8]].mean(axis=0)
  np.testing.assert_allclose(table.numpy(), expected, rtol=1e-6)
  # Idempotent, and nothing happens when training touched nothing.
  assert oov.set_untouched_rows_to_mean(table, 7, touched) == 2
  np.testing.assert_allclose(table.numpy(), expected, rtol=1e-6)
  assert oov.set_untouched_rows_to_mean(table, 7, np.zeros(10, bool)) == 0
