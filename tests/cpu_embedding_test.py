"""Tests CpuEmbedding's lookups, id validation and checkpoint layout."""

import numpy as np
import pytest
import tensorflow as tf

from components.embedding import cpu_embedding
from components.embedding import initializers
from components.embedding import oov

E = tf.tpu.experimental.embedding
BATCH = 6
SEQUENCE_LENGTH = 3


def _feature_config():
  """Three tables, one per combiner, and sequence features sharing them."""
  tables = {
      combiner: E.TableConfig(
          vocabulary_size=9, dim=4, combiner=combiner, name=f't_{combiner}')
      for combiner in ('sum', 'mean', 'sqrtn')
  }
  config = {
      f'bag_{combiner}': E.FeatureConfig(table=table)
      for combiner, table in tables.items()
  }
  config['sequence'] = E.FeatureConfig(
      table=tables['sum'], max_sequence_length=SEQUENCE_LENGTH)
  config['weighted'] = E.FeatureConfig(table=tables['sqrtn'])
  return config


def _random_ids(rng):
  """Ragged ids with duplicates, empty rows and rows longer than 3."""
  lengths = rng.integers(0, 6, size=BATCH)
  lengths[0], lengths[1] = 0, 5
  rows = [list(rng.integers(0, 4, size=n)) for n in lengths]
  return rows


def _np_bag(table, ids, weights, combiner):
  """NumPy reference of a combined (bag) lookup of one example."""
  if not ids:
    return np.zeros(table.shape[1])
  ids, weights = np.asarray(ids), np.asarray(weights, np.float64)
  total = (weights[:, None] * table[ids]).sum(axis=0)
  if combiner == 'mean':
    return total / weights.sum()
  if combiner == 'sqrtn':
    return total / np.sqrt((weights**2).sum())
  return total


def _np_sequence(table, ids):
  """NumPy reference of a padded, truncated sequence lookup of one example."""
  out = np.zeros((SEQUENCE_LENGTH, table.shape[1]))
  for position, index in enumerate(ids[:SEQUENCE_LENGTH]):
    out[position] = table[index]
  return out


def _inputs(rng, to_sparse):
  """Random features and weights (as RaggedTensor or SparseTensor)."""
  rows = {name: _random_ids(rng) for name in _feature_config()}
  weights = [list(rng.uniform(0.5, 2.0, size=len(r))) for r in rows['weighted']]
  convert = (lambda x: x.to_sparse()) if to_sparse else (lambda x: x)
  features = {
      name: convert(tf.ragged.constant(r, dtype=tf.int64, ragged_rank=1))
      for name, r in rows.items()
  }
  weight_structure = {name: None for name in rows}
  weight_structure['weighted'] = convert(
      tf.ragged.constant(weights, dtype=tf.float32, ragged_rank=1))
  return rows, weights, features, weight_structure


def _expected(embedding, rows, weights):
  """NumPy reference activations for `rows`."""
  tables = {t.name: v.numpy() for t, v in embedding.embedding_tables.items()}
  expected = {}
  for combiner in ('sum', 'mean', 'sqrtn'):
    name = f'bag_{combiner}'
    expected[name] = [
        _np_bag(tables[f't_{combiner}'], r, [1.0] * len(r), combiner)
        for r in rows[name]
    ]
  expected['weighted'] = [
      _np_bag(tables['t_sqrtn'], r, w, 'sqrtn')
      for r, w in zip(rows['weighted'], weights)
  ]
  expected['sequence'] = [_np_sequence(tables['t_sum'], r)
                          for r in rows['sequence']]
  return {name: np.stack(value) for name, value in expected.items()}


@pytest.mark.parametrize('to_sparse', [False, True])
def test_lookup_matches_serving_lookup_and_numpy(to_sparse):
  rng = np.random.default_rng(3 + to_sparse)
  config = _feature_config()
  embedding = cpu_embedding.CpuEmbedding(config)
  rows, weights, features, weight_structure = _inputs(rng, to_sparse)

  got = embedding(features, weight_structure)
  serving = E.serving_embedding_lookup(features, weight_structure,
                                       embedding.embedding_tables, config)
  expected = _expected(embedding, rows, weights)
  assert got.keys() == expected.keys()
  for name in expected:
    np.testing.assert_allclose(
        got[name].numpy(), serving[name].numpy(), rtol=1e-6, atol=1e-7)
    np.testing.assert_allclose(
        got[name].numpy(), expected[name], rtol=1e-5, atol=1e-6,
        err_msg=name)
  assert got['sequence'].shape == (BATCH, SEQUENCE_LENGTH, 4)


def test_lookup_inside_function_and_dense_input():
  table = E.TableConfig(vocabulary_size=5, dim=2, name='t')
  embedding = cpu_embedding.CpuEmbedding({'ids': E.FeatureConfig(table=table)})
  ids = tf.constant([[0, 4], [2, 2]], tf.int64)
  got = tf.function(embedding)({'ids': ids})['ids']
  expected = embedding.embedding_tables[table].numpy()[ids.numpy()]
  np.testing.assert_allclose(got.numpy(), expected)


@pytest.mark.parametrize('kind', ['ragged', 'sparse', 'dense'])
def test_gradients_reach_tables_as_indexed_slices(kind):
  table = E.TableConfig(vocabulary_size=7, dim=3, name='t')
  config = {
      'bag': E.FeatureConfig(table=table),
      'sequence': E.FeatureConfig(table=table, max_sequence_length=2),
  }
  embedding = cpu_embedding.CpuEmbedding(config, E.SGD(0.1))
  ragged = tf.ragged.constant([[1, 2, 2], [], [6, 5, 4]], dtype=tf.int64)
  if kind == 'dense':
    features = {'bag': tf.constant([[1], [2], [6]], tf.int64)}
    embedding = cpu_embedding.CpuEmbedding(
        {'bag': E.FeatureConfig(table=table)}, E.SGD(0.1))
  elif kind == 'sparse':
    features = {'bag': ragged.to_sparse(), 'sequence': ragged.to_sparse()}
  else:
    features = {'bag': ragged, 'sequence': ragged}
  with tf.GradientTape() as tape:
    activations = embedding(features)
    loss = sum(tf.reduce_sum(value) for value in activations.values())
  (gradient,) = tape.gradient(loss, embedding.trainable_variables)
  assert isinstance(gradient, tf.IndexedSlices)
  touched = set(gradient.indices.numpy().tolist())
  assert touched <= {1, 2, 4, 5, 6} and {1, 2, 6} <= touched


def test_empty_sparse_rows_leave_row_zero_alone():
  """serving_embedding_lookup pads empty SparseTensor rows with id 0."""
  table = E.TableConfig(vocabulary_size=5, dim=2, name='t')
  embedding = cpu_embedding.CpuEmbedding([E.FeatureConfig(table=table)],
                                         E.FTRL(0.1))
  before = embedding.trainable_variables[0].numpy()
  ids = tf.ragged.constant([[3], []], dtype=tf.int64).to_sparse()
  with tf.GradientTape() as tape:
    loss = tf.reduce_sum(embedding([ids])[0])
  embedding.apply_gradients(tape.gradient(loss, embedding.trainable_variables))
  after = embedding.trainable_variables[0].numpy()
  np.testing.assert_array_equal(after[[0, 1, 2, 4]], before[[0, 1, 2, 4]])
  assert not np.allclose(after[3], before[3])


@pytest.mark.parametrize('bad_id', [9, -1])
@pytest.mark.parametrize('to_sparse', [False, True])
def test_out_of_range_ids_raise_naming_feature(bad_id, to_sparse):
  table = E.TableConfig(vocabulary_size=9, dim=2, name='items')
  embedding = cpu_embedding.CpuEmbedding(
      {'liked': E.FeatureConfig(table=table)})
  ids = tf.ragged.constant([[1, bad_id], []], dtype=tf.int64)
  if to_sparse:
    ids = ids.to_sparse()
  with pytest.raises(tf.errors.InvalidArgumentError,
                     match=r"'liked'.*\[0, 9\).*'items'"):
    embedding({'liked': ids})


def test_out_of_range_check_in_function_and_can_be_disabled():
  table = E.TableConfig(vocabulary_size=3, dim=2, name='items')
  config = [E.FeatureConfig(table=table, name='clicked')]
  checked = tf.function(cpu_embedding.CpuEmbedding(config))
  with pytest.raises(tf.errors.InvalidArgumentError,
                     match=r'clicked.*ids must lie in \[0, 3\)'):
    checked([tf.constant([[3]], tf.int64)])
  unchecked = cpu_embedding.CpuEmbedding(config, validate_ids=False)
  with pytest.raises(tf.errors.InvalidArgumentError) as error:
    unchecked([tf.constant([[3]], tf.int64)])
  assert 'clicked' not in str(error.value)


def test_quantization_config_is_rejected():
  table = E.TableConfig(
      vocabulary_size=3, dim=2, name='q',
      quantization_config=E.QuantizationConfig(4, -1.0, 1.0))
  with pytest.raises(NotImplementedError, match='quantization_config'):
    cpu_embedding.CpuEmbedding([E.FeatureConfig(table=table)])


def _ckpt_config():
  """Two tables: one with its own Adam, one with the global FTRL."""
  adam = E.TableConfig(vocabulary_size=6, dim=3, name='adam_table',
                       optimizer=E.Adam(0.1))
  ftrl = E.TableConfig(vocabulary_size=5, dim=2, name='ftrl_table')
  return {
      'a': E.FeatureConfig(table=adam),
      'b': E.FeatureConfig(table=ftrl),
      'c': E.FeatureConfig(table=adam, max_sequence_length=2),
  }


def _trained_embedding():
  """A CpuEmbedding after one step, so that every slot is non-trivial."""
  embedding = cpu_embedding.CpuEmbedding(_ckpt_config(), E.FTRL(0.1))
  gradients = [
      tf.IndexedSlices(tf.ones([2, var.shape[1]]), tf.constant([0, 2]))
      for var in embedding.trainable_variables
  ]
  embedding.apply_gradients(gradients)
  return embedding


def _checkpoint_values(path):
  """Every saved variable of the embedding, keyed by checkpoint key."""
  reader = tf.train.load_checkpoint(path)
  return {
      name: reader.get_tensor(name)
      for name, _ in tf.train.list_variables(path)
      if name.startswith('embedding/')
  }


def test_checkpoint_round_trip(tmp_path):
  embedding = _trained_embedding()
  path = tf.train.Checkpoint(embedding=embedding).save(str(tmp_path / 'c'))
  restored = cpu_embedding.CpuEmbedding(_ckpt_config(), E.FTRL(0.1))
  status = tf.train.Checkpoint(embedding=restored).restore(path)
  status.assert_existing_objects_matched()
  for original, copy in zip(embedding.trainable_variables,
                            restored.trainable_variables):
    np.testing.assert_array_equal(original.numpy(), copy.numpy())
  for table in embedding.tables:
    slots = embedding.slot_variables(table.name)
    restored_slots = restored.slot_variables(table.name)
    assert slots.keys() == restored_slots.keys() and slots
    for name in slots:
      np.testing.assert_array_equal(slots[name].numpy(),
                                    restored_slots[name].numpy())


def test_checkpoint_layout_matches_tpu_embedding_for_serving(tmp_path):
  ours = tf.train.Checkpoint(embedding=_trained_embedding()).save(
      str(tmp_path / 'ours'))
  serving = E.TPUEmbeddingForServing(_ckpt_config(), E.FTRL(0.1))
  serving.build()
  theirs = tf.train.Checkpoint(embedding=serving).save(str(tmp_path / 'tf'))
  assert dict(tf.train.list_variables(ours)) == dict(
      tf.train.list_variables(theirs))
  assert 'embedding/adam_table.Svelocities/.ATTRIBUTES/VARIABLE_VALUE' in dict(
      tf.train.list_variables(ours))


def test_checkpoint_moves_to_and_from_tpu_embedding(tmp_path):
  """TPUEmbedding built outside a TPUStrategy restores and saves our layout."""
  ours = tf.train.Checkpoint(embedding=_trained_embedding()).save(
      str(tmp_path / 'ours'))
  tpu = E.TPUEmbedding(_ckpt_config(), E.FTRL(0.1))
  status = tf.train.Checkpoint(embedding=tpu).restore(ours)
  assert tpu.embedding_tables  # Builds the variables: deferred restoration.
  status.assert_consumed()
  tpu_path = tf.train.Checkpoint(embedding=tpu).save(str(tmp_path / 'tpu'))
  ours_values, tpu_values = _checkpoint_values(ours), _checkpoint_values(
      tpu_path)
  assert ours_values.keys() == tpu_values.keys()
  for key, value in ours_values.items():
    np.testing.assert_array_equal(value, tpu_values[key], err_msg=key)

  back = cpu_embedding.CpuEmbedding(_ckpt_config(), E.FTRL(0.1))
  back.build()
  tf.train.Checkpoint(embedding=back).restore(tpu_path).assert_consumed()
  back_path = tf.train.Checkpoint(embedding=back).save(str(tmp_path / 'back'))
  for key, value in _checkpoint_values(back_path).items():
    np.testing.assert_array_equal(value, tpu_values[key], err_msg=key)


# --- Ids dropped inside a row (unknown tokens with default_value=-1). ---

VOCABULARY = ['a', 'b', 'c', 'd']
# An unknown token at the start, middle and end of a row, a row of unknown
# tokens only, an empty row and a row without unknown tokens.
TOKEN_ROWS = [['zz', 'b', 'c'], ['b', 'zz', 'c'], ['b', 'c', 'zz'],
              ['zz', 'qq'], [], ['d', 'a']]
WEIGHT_ROWS = [[0.5 + i + 0.25 * j for j in range(len(row))]
               for i, row in enumerate(TOKEN_ROWS)]


def _dropping_spec():
  from components import embedding as emb  # pylint: disable=g-import-not-at-top

  def words(key, sequence=False):
    make = (emb.sequence_categorical_column_with_vocabulary_list if sequence
            else emb.categorical_column_with_vocabulary_list)
    return make(key, VOCABULARY)  # default_value=-1, no OOV buckets.

  columns = [emb.embedding_column(words(f'bag_{c}'), 3, combiner=c)
             for c in ('sum', 'mean', 'sqrtn')]
  columns += [
      emb.embedding_column(
          emb.weighted_categorical_column(words(f'weighted_{c}'),
                                          f'weight_{c}'), 3, combiner=c)
      for c in ('sum', 'mean', 'sqrtn')]
  columns.append(emb.embedding_column(words('sequence', sequence=True), 3,
                                      max_sequence_length=4))
  return emb.EmbeddingSpec(columns, emb.Adagrad(0.1)).resolve()


def _raw_ids(rows):
  """The ids TensorFlow's vocabulary lookup gives: -1 for unknown tokens."""
  return [[VOCABULARY.index(t) if t in VOCABULARY else -1 for t in row]
          for row in rows]


def _dropping_inputs():
  tokens = tf.ragged.constant(TOKEN_ROWS, dtype=tf.string)
  weights = tf.ragged.constant(WEIGHT_ROWS, dtype=tf.float32,
                               ragged_rank=1)
  inputs = {'sequence': tokens}
  for combiner in ('sum', 'mean', 'sqrtn'):
    inputs[f'bag_{combiner}'] = tokens
    inputs[f'weighted_{combiner}'] = tokens
    inputs[f'weight_{combiner}'] = weights
  return inputs


def _dropping_embedding(resolved):
  embedding = cpu_embedding.CpuEmbedding(resolved.compile(),
                                         resolved.compile_optimizer())
  embedding.build()
  return embedding


def _table_of(embedding, resolved, key):
  """The table values of feature `key`, as a NumPy array."""
  name = resolved.features[key].table_name
  return next(v for t, v in embedding.embedding_tables.items()
              if t.name == name).numpy()


@pytest.mark.parametrize('in_function', [False, True])
def test_dropped_ids_are_combined_as_tensorflow_does(in_function):
  resolved = _dropping_spec()
  embedding = _dropping_embedding(resolved)
  mapper = resolved.id_mapper()

  def lookup(inputs):
    return embedding(*mapper(inputs))

  if in_function:
    lookup = tf.function(lookup)
  out = lookup(_dropping_inputs())
  # Reference: TensorFlow's own pruning of negative ids, on the raw ids.
  raw = tf.ragged.constant(_raw_ids(TOKEN_ROWS), tf.int64,
                           ragged_rank=1).to_sparse()
  raw_weights = tf.ragged.constant(WEIGHT_ROWS, tf.float32,
                                   ragged_rank=1).to_sparse()
  for combiner in ('sum', 'mean', 'sqrtn'):
    for key, weights in ((f'bag_{combiner}', None),
                         (f'weighted_{combiner}', raw_weights)):
      table = _table_of(embedding, resolved, key)
      expected = tf.nn.safe_embedding_lookup_sparse(
          table, raw, weights, combiner=combiner).numpy()
      np.testing.assert_allclose(out[key].numpy(), expected, rtol=1e-6,
                                 err_msg=key)
      assert not out[key].numpy()[3].any()  # Only unknown tokens: zeros.
      assert not out[key].numpy()[4].any()


def test_dropped_ids_keep_sequence_positions():
  resolved = _dropping_spec()
  embedding = _dropping_embedding(resolved)
  out = embedding(*resolved.id_mapper()(_dropping_inputs()))['sequence']
  table = _table_of(embedding, resolved, 'sequence')
  expected = np.zeros((len(TOKEN_ROWS), 4, 3))
  for row, ids in enumerate(_raw_ids(TOKEN_ROWS)):
    for position, index in enumerate(ids):
      if index >= 0:  # A dropped id leaves a zero vector at its position.
        expected[row, position] = table[index]
  np.testing.assert_allclose(out.numpy(), expected, rtol=1e-6)


def test_enqueued_ids_are_valid_and_right_ragged():
  resolved = _dropping_spec()
  ids, weights = resolved.id_mapper()(_dropping_inputs())
  bag = ids['bag_sum']
  assert bag.indices.numpy().tolist() == [
      [0, 0], [0, 1], [1, 0], [1, 1], [2, 0], [2, 1], [5, 0], [5, 1]]
  assert bag.values.numpy().tolist() == [1, 2, 1, 2, 1, 2, 3, 0]
  assert bag.dense_shape.numpy().tolist() == [6, 3]
  kept = weights['weighted_sum']
  assert kept.indices.numpy().tolist() == bag.indices.numpy().tolist()
  assert kept.values.numpy().tolist() == pytest.approx(
      [0.75, 1.0, 1.5, 2.0, 2.5, 2.75, 5.5, 5.75])
  sequence = ids['sequence']
  assert sequence.indices.numpy().tolist() == [
      [0, 1], [0, 2], [1, 0], [1, 2], [2, 0], [2, 1], [5, 0], [5, 1]]
  assert min(sequence.values.numpy()) >= 0


def test_dense_ids_padded_with_minus_one_inside_a_row():
  from components import embedding as emb  # pylint: disable=g-import-not-at-top
  column = emb.embedding_column(emb.categorical_column_with_identity('i', 5),
                                2, combiner='sum')
  resolved = emb.EmbeddingSpec([column], emb.SGD(0.1)).resolve()
  embedding = _dropping_embedding(resolved)
  ids, weights = resolved.id_mapper()(
      {'i': tf.constant([[3, -1, 4], [-1, -1, 2], [-1, -1, -1]], tf.int64)})
  out = embedding(ids, weights)['i'].numpy()
  table = _table_of(embedding, resolved, 'i')
  np.testing.assert_allclose(out, [table[3] + table[4], table[2], [0, 0]],
                             rtol=1e-6)


def test_sparse_bag_with_gaps_is_looked_up_by_rows():
  embedding = cpu_embedding.CpuEmbedding(
      {'bag': E.FeatureConfig(table=E.TableConfig(9, 2, combiner='mean'))},
      E.SGD(0.1))
  gaps = tf.SparseTensor([[0, 0], [0, 2], [1, 1]],
                         tf.constant([1, 2, 3], tf.int64), [2, 3])
  out = embedding({'bag': gaps})['bag'].numpy()
  table = embedding.embedding_tables[
      embedding.tables[0]].numpy()
  np.testing.assert_allclose(out, [(table[1] + table[2]) / 2, table[3]],
                             rtol=1e-6)


# --- FTRL: refused settings and NaN gradients. ---


@pytest.mark.parametrize('kwargs, message', [
    (dict(learning_rate=0.0), 'divides by the learning rate'),
    (dict(learning_rate=0.1, beta=-0.5), 'beta must be >= 0'),
])
def test_ftrl_settings_that_write_nan_are_refused(kwargs, message):
  table = E.TableConfig(5, 2, optimizer=E.FTRL(**kwargs), name='t')
  with pytest.raises(ValueError, match=f"Table 't': FTRL.*{message}"):
    cpu_embedding.CpuEmbedding({'f': E.FeatureConfig(table=table)})
  fixed = E.FTRL(learning_rate=0.0, multiply_linear_by_learning_rate=True)
  cpu_embedding.CpuEmbedding({'f': E.FeatureConfig(
      table=E.TableConfig(5, 2, optimizer=fixed, name='t'))})


def test_ftrl_nan_gradient_is_not_hidden_as_a_zero_weight():
  table = E.TableConfig(5, 2, name='t',
                        initializer=tf.constant_initializer(0.5))
  embedding = cpu_embedding.CpuEmbedding({'f': E.FeatureConfig(table=table)},
                                         E.FTRL(learning_rate=0.1))
  embedding.build()
  gradient = tf.IndexedSlices(tf.constant([[np.nan, 1.0]]),
                              tf.constant([2], tf.int64), tf.constant([5, 2]))
  embedding.apply_gradients([gradient])
  weights = embedding.embedding_tables[table].numpy()
  assert np.isnan(weights[2, 0])  # NaN, visible to a non-finite check.
  assert np.isfinite(weights[2, 1]) and weights[2, 1] != 0.5
  np.testing.assert_array_equal(weights[[0, 1, 3, 4]], 0.5)


# --- Table creation: in place, with TPUEmbeddingForServing's values. ---


def _initializer_config():
  """One table per kind of initializer, with Adam's two slots or Adagrad's."""
  kinds = {
      'default': None,
      'normal': initializers.initializer('random_normal', stddev=0.3),
      'uniform_seeded': initializers.initializer('random_uniform', seed=4),
      'zero_oov': oov.ZeroOovRows(None, first_row=7, vocabulary_size=9,
                                  table_name='zero_oov'),
      'constant': initializers.initializer('constant', value=0.5),
  }
  return {
      name: E.FeatureConfig(table=E.TableConfig(
          vocabulary_size=9, dim=5, initializer=init, name=name,
          optimizer=E.Adam(0.1) if name == 'normal' else None))
      for name, init in kinds.items()
  }


def _built_variables(embedding_class):
  """Every variable `embedding_class` builds, by name, from the same seed."""
  tf.random.set_seed(11)
  embedding = embedding_class(_initializer_config(), E.Adagrad(0.1))
  embedding.build()
  # Both classes keep each table's variables in their base class's dict.
  by_table = embedding._variables  # pylint: disable=protected-access
  return {variable.name: variable
          for variables in by_table.values() for variable in variables.values()}


def test_build_creates_tpu_embedding_for_serving_variables_and_values():
  ours = _built_variables(cpu_embedding.CpuEmbedding)
  theirs = _built_variables(E.TPUEmbeddingForServing)
  assert sorted(ours) == sorted(theirs)
  assert 'normal/velocities:0' in ours and 'default/accumulators:0' in ours
  for name, variable in ours.items():
    assert variable.shape == theirs[name].shape, name
    assert variable.trainable == theirs[name].trainable, name
    np.testing.assert_array_equal(variable.numpy(), theirs[name].numpy(),
                                  err_msg=name)


def test_build_finishes_only_random_tables_in_place(monkeypatch):
  finished = []
  original = initializers.initialize_in_place

  def spy(variable, recipe, **kwargs):
    finished.append(variable.name)
    original(variable, recipe, **kwargs)

  monkeypatch.setattr(initializers, 'initialize_in_place', spy)
  _built_variables(cpu_embedding.CpuEmbedding)
  assert sorted(finished) == [
      'default:0', 'normal:0', 'uniform_seeded:0', 'zero_oov:0']
