"""Tests of the categorical and embedding columns and of the id mapping."""

import math

import numpy as np
import pytest
import tensorflow as tf

from components import embedding as emb


def _spec(*columns, optimizer=None):
  return emb.EmbeddingSpec(list(columns), optimizer or emb.SGD())


def _map(column, inputs):
  resolved = _spec(column).resolve()
  ids, weights = resolved.id_mapper()(inputs)
  key = column.feature_key
  return ids[key], weights[key]


def _rows(sparse):
  """Returns the values of each row of a SparseTensor as lists."""
  dense = tf.sparse.to_dense(tf.sparse.map_values(lambda v: v + 1000, sparse))
  return [[int(v) - 1000 for v in row if v != 0] for row in dense.numpy()]


# --- Categorical columns: argument validation as TensorFlow's. ---


@pytest.mark.parametrize('num_buckets', [0, -3, 2.5, None])
def test_identity_rejects_bad_num_buckets(num_buckets):
  with pytest.raises(ValueError, match=r"num_buckets .* column_name 'ids'"):
    emb.categorical_column_with_identity('ids', num_buckets)


@pytest.mark.parametrize('default', [-1, 5, 7])
def test_identity_rejects_default_out_of_range(default):
  with pytest.raises(ValueError,
                     match=r'default_value .* not in range \[0, 5\)'):
    emb.categorical_column_with_identity('ids', 5, default_value=default)


def test_identity_rejects_empty_key():
  with pytest.raises(ValueError, match='non-empty string'):
    emb.categorical_column_with_identity('', 5)


def test_vocabulary_list_validation():
  with pytest.raises(ValueError, match='must be non-empty'):
    emb.categorical_column_with_vocabulary_list('w', [])
  with pytest.raises(ValueError, match=r"Duplicate keys .*'w'.*\['a'\]"):
    emb.categorical_column_with_vocabulary_list('w', ['a', 'b', 'a'])
  with pytest.raises(ValueError, match="Can't specify both num_oov_buckets"):
    emb.categorical_column_with_vocabulary_list(
        'w', ['a'], default_value=0, num_oov_buckets=2)
  with pytest.raises(ValueError, match='Invalid num_oov_buckets -1'):
    emb.categorical_column_with_vocabulary_list('w', ['a'], num_oov_buckets=-1)
  with pytest.raises(ValueError, match='do not match'):
    emb.categorical_column_with_vocabulary_list('w', ['a'], dtype=tf.int64)
  with pytest.raises(ValueError, match='only strings or only integers'):
    emb.categorical_column_with_vocabulary_list('w', ['a', 1])
  with pytest.raises(ValueError, match=r'outside the table rows \[0, 2\)'):
    emb.categorical_column_with_vocabulary_list('w', ['a', 'b'],
                                                default_value=2)


def test_vocabulary_list_sizes_and_dtype():
  column = emb.categorical_column_with_vocabulary_list(
      'w', [b'a', 'b'], num_oov_buckets=3)
  assert column.vocabulary_list == ('a', 'b')
  assert column.dtype == 'string'
  assert column.num_buckets == 5
  ints = emb.categorical_column_with_vocabulary_list('n', np.array([3, 7]))
  assert ints.dtype == 'int64' and ints.vocabulary_list == (3, 7)


def test_vocabulary_file_validation(tmp_path):
  with pytest.raises(ValueError, match="Missing vocabulary_file in 'f'"):
    emb.categorical_column_with_vocabulary_file('f', '')
  with pytest.raises(ValueError, match='Invalid vocabulary_size 0'):
    emb.categorical_column_with_vocabulary_file('f', 'v.txt', 0)
  with pytest.raises(ValueError, match="Can't specify both"):
    emb.categorical_column_with_vocabulary_file('f', 'v.txt', 3,
                                                num_oov_buckets=1,
                                                default_value=0)
  with pytest.raises(ValueError, match='TFRecord vocabulary files'):
    emb.categorical_column_with_vocabulary_file('f', 'v.tfrecord.gz', 3)
  missing = emb.embedding_column(
      emb.categorical_column_with_vocabulary_file(
          'f', str(tmp_path / 'missing.txt')), 4)
  with pytest.raises(ValueError, match="of column 'f' does not exist"):
    _spec(missing).resolve()


def test_vocabulary_file_counts_lines_at_resolution(tmp_path):
  path = tmp_path / 'vocab.txt'
  path.write_text('a\nb\nc\n')
  column = emb.embedding_column(
      emb.categorical_column_with_vocabulary_file('f', str(path),
                                                  num_oov_buckets=2), 4)
  feature = _spec(column).resolve().features['f']
  assert (feature.vocabulary_size, feature.num_oov_buckets) == (5, 2)
  assert feature.default_value is None
  assert feature.kind == 'vocabulary_file'


def test_weighted_column_validation():
  ids = emb.categorical_column_with_identity('ids', 5)
  with pytest.raises(ValueError, match='not convertible to float'):
    emb.weighted_categorical_column(ids, 'w', dtype=tf.string)
  with pytest.raises(ValueError, match='another feature than the ids'):
    emb.weighted_categorical_column(ids, 'ids')
  sequence = emb.sequence_categorical_column_with_identity('seq', 5)
  with pytest.raises(ValueError, match="Sequence column 'seq' cannot be "
                     "weighted"):
    emb.weighted_categorical_column(sequence, 'w')
  weighted = emb.weighted_categorical_column(ids, 'w')
  with pytest.raises(ValueError, match='already weighted'):
    emb.weighted_categorical_column(weighted, 'w2')
  assert weighted.name == 'ids_weighted_by_w'
  assert (weighted.feature_key, weighted.weight_key) == ('ids', 'w')


def test_transform_vocabulary_column_validation():
  with pytest.raises(ValueError, match='vocabulary_name'):
    emb.categorical_column_with_transform_vocabulary('ids', '')
  with pytest.raises(ValueError, match='not a path'):
    emb.categorical_column_with_transform_vocabulary('ids', '/tmp/vocab')
  column = emb.sequence_categorical_column_with_transform_vocabulary('s', 'v')
  assert column.is_sequence and column.num_buckets is None


# --- TensorFlow's own feature columns. ---


def test_tensorflow_identity_and_weighted_columns_are_converted():
  tf_column = tf.feature_column.weighted_categorical_column(
      tf.feature_column.categorical_column_with_identity('ids', 7, 3), 'w')
  column = emb.embedding_column(tf_column, 4).categorical_column
  assert column == emb.weighted_categorical_column(
      emb.categorical_column_with_identity('ids', 7, default_value=3), 'w')


def test_tensorflow_vocabulary_columns_are_converted(tmp_path):
  path = tmp_path / 'v.txt'
  path.write_text('a\nb\n')
  converted = emb.as_categorical_column(
      tf.feature_column.categorical_column_with_vocabulary_list(
          'w', ['a', 'b'], num_oov_buckets=2))
  assert converted == emb.categorical_column_with_vocabulary_list(
      'w', ['a', 'b'], num_oov_buckets=2)
  from_file = emb.as_categorical_column(
      tf.feature_column.categorical_column_with_vocabulary_file(
          'f', str(path), num_oov_buckets=1))
  assert from_file == emb.categorical_column_with_vocabulary_file(
      'f', str(path), 2, num_oov_buckets=1)


def test_tensorflow_sequence_columns_are_converted(tmp_path):
  path = tmp_path / 'v.txt'
  path.write_text('a\nb\n')
  fc = tf.feature_column
  pairs = [
      (fc.sequence_categorical_column_with_identity('s1', 9),
       emb.sequence_categorical_column_with_identity('s1', 9)),
      (fc.sequence_categorical_column_with_vocabulary_list('s2', ['a', 'b']),
       emb.sequence_categorical_column_with_vocabulary_list('s2', ['a', 'b'])),
      (fc.sequence_categorical_column_with_vocabulary_file('s3', str(path), 2),
       emb.sequence_categorical_column_with_vocabulary_file('s3', str(path),
                                                            2)),
  ]
  for tf_column, expected in pairs:
    column = emb.embedding_column(tf_column, 4, max_sequence_length=3)
    assert column.categorical_column == expected
    assert column.is_sequence


def test_unsupported_tensorflow_columns_are_refused():
  hashed = tf.feature_column.categorical_column_with_hash_bucket('h', 10)
  with pytest.raises(TypeError, match='HashedCategoricalColumn'):
    emb.embedding_column(hashed, 4)
  with pytest.raises(TypeError, match='categorical_column'):
    emb.embedding_column('ids', 4)


# --- Embedding columns. ---


@pytest.mark.parametrize('dimension', [0, -1, 2.0, None, True])
def test_embedding_column_rejects_bad_dimension(dimension):
  with pytest.raises(ValueError, match=f"Invalid dimension {dimension!r} "
                     "for embedding column 'ids'"):
    emb.embedding_column(emb.categorical_column_with_identity('ids', 5),
                         dimension)


def test_embedding_column_rejects_non_callable_initializer():
  with pytest.raises(ValueError, match='initializer must be callable'):
    emb.embedding_column(emb.categorical_column_with_identity('ids', 5), 4,
                         initializer=0.1)


def test_embedding_column_rejects_bad_combiner_and_learning_rate_fn():
  ids = emb.categorical_column_with_identity('ids', 5)
  with pytest.raises(ValueError, match="Invalid combiner 'max'"):
    emb.embedding_column(ids, 4, combiner='max')
  with pytest.raises(ValueError, match="learning_rate_fn of column 'ids'"):
    emb.embedding_column(ids, 4, learning_rate_fn=0.1)


def test_max_sequence_length_rules():
  seq = emb.sequence_categorical_column_with_identity('seq', 5)
  ids = emb.categorical_column_with_identity('ids', 5)
  with pytest.raises(ValueError, match="greater than 0 for sequence.*'seq'"):
    emb.embedding_column(seq, 4)
  with pytest.raises(ValueError, match="greater than 0 for sequence.*'seq'"):
    emb.embedding_column(seq, 4, max_sequence_length=-2)
  with pytest.raises(ValueError, match="Non zero max_seq_length=3 .*'ids'"):
    emb.embedding_column(ids, 4, max_sequence_length=3)
  with pytest.raises(ValueError, match="max_seq_length='auto' .*'ids'"):
    emb.embedding_column(ids, 4, max_sequence_length='auto')
  assert emb.embedding_column(seq, 4, max_sequence_length='auto').is_sequence


@pytest.mark.parametrize('argument, value, hint', [
    ('ckpt_to_load_from', 'gs://ckpt', 'tf.train.Checkpoint'),
    ('tensor_name_in_ckpt', 'x', 'tf.train.Checkpoint'),
    ('max_norm', 1.0, 'clip_weight_min'),
    ('trainable', False, 'always trained'),
])
def test_unsupported_arguments_are_refused(argument, value, hint):
  ids = emb.categorical_column_with_identity('ids', 5)
  with pytest.raises(ValueError, match=f'`{argument}=.*not supported.*{hint}'):
    emb.embedding_column(ids, 4, **{argument: value})
  with pytest.raises(ValueError, match=f'`{argument}='):
    emb.shared_embedding_columns([ids], 4, **{argument: value})


def test_tpu_compatible_values_of_unsupported_arguments_are_accepted():
  ids = emb.categorical_column_with_identity('ids', 5)
  emb.embedding_column(ids, 4, trainable=True, max_norm=None)
  with pytest.raises(TypeError, match='unexpected keyword argument'):
    emb.embedding_column(ids, 4, dimensions=3)


def test_default_initializer_is_truncated_normal_of_inverse_sqrt_dimension():
  dimension = 16
  column = emb.embedding_column(
      emb.categorical_column_with_identity('ids', 4000), dimension)
  table = _spec(column).resolve().compile()['ids'].table
  values = table.initializer((4000, dimension), dtype=tf.float32).numpy()
  stddev = 1 / math.sqrt(dimension)
  assert abs(values.mean()) < 0.01
  assert np.abs(values).max() <= 2 * stddev + 1e-6
  # A normal truncated at 2 stddev has a standard deviation of 0.88 stddev.
  assert values.std() == pytest.approx(0.8796 * stddev, rel=0.03)
  registered = emb.initializer('truncated_normal')((4000, dimension))
  assert registered.numpy().std() == pytest.approx(0.8796 * stddev, rel=0.03)


def test_shared_embedding_columns():
  a = emb.categorical_column_with_identity('a', 6)
  b = tf.feature_column.categorical_column_with_identity('b', 6)
  columns = emb.shared_embedding_columns([b, a], 4, combiner='sum')
  assert [c.table_name for c in columns] == ['a_b_shared_embedding'] * 2
  assert all(c.shared_with == ('a', 'b') for c in columns)
  named = emb.shared_embedding_columns(
      [a, b], 4, shared_embedding_collection_name='ab')
  assert {c.resolved_table_name for c in named} == {'ab'}


def test_shared_embedding_columns_errors():
  a = emb.categorical_column_with_identity('a', 6)
  b = emb.categorical_column_with_identity('b', 7)
  with pytest.raises(ValueError,
                     match=r"same number of buckets.*'a': 6, 'b': 7"):
    emb.shared_embedding_columns([a, b], 4)
  with pytest.raises(ValueError, match='must be of the same length'):
    emb.shared_embedding_columns([a, emb.categorical_column_with_identity('c', 6)], 4,
                                 max_sequence_lengths=[0])
  with pytest.raises(ValueError, match='each feature can appear once'):
    emb.shared_embedding_columns([a, a], 4)
  with pytest.raises(ValueError, match='Invalid dimension'):
    emb.shared_embedding_columns([a], 0)
  with pytest.raises(ValueError, match='initializer must be callable'):
    emb.shared_embedding_columns([a], 3, initializer='zeros')
  with pytest.raises(ValueError, match='Table name'):
    emb.shared_embedding_columns([a], 3,
                                 shared_embedding_collection_name='a/b')


def test_shared_sequence_lengths_apply_per_column():
  s = emb.sequence_categorical_column_with_identity('s', 6)
  a = emb.categorical_column_with_identity('a', 6)
  columns = emb.shared_embedding_columns([s, a], 4,
                                         max_sequence_lengths=[5, 0])
  assert [c.max_sequence_length for c in columns] == [5, 0]
  with pytest.raises(ValueError, match="sequence column 's'"):
    emb.shared_embedding_columns([s, a], 4)


# --- Id mapping, per column kind. ---


def test_identity_ids_from_dense_sparse_and_ragged():
  column = emb.embedding_column(emb.categorical_column_with_identity('i', 5),
                                2)
  ids, weights = _map(column, {'i': tf.constant([[1, -1], [4, 0]])})
  assert weights is None
  assert ids.dtype == tf.int64
  assert _rows(ids) == [[1], [4, 0]]
  ids, _ = _map(column, {'i': tf.ragged.constant([[3], [], [0, 1]])})
  assert _rows(ids) == [[3], [], [0, 1]]
  assert ids.dense_shape.numpy().tolist() == [3, 2]
  ids, _ = _map(column, {'i': tf.constant([2, 3], tf.int32)})
  assert _rows(ids) == [[2], [3]]


@pytest.mark.parametrize('bad', [5, 9, -2])
def test_identity_out_of_range_ids_raise(bad):
  column = emb.embedding_column(emb.categorical_column_with_identity('i', 5),
                                2)
  sparse = tf.SparseTensor([[0, 0], [1, 0]], tf.constant([1, bad], tf.int64),
                           [2, 1])
  with pytest.raises(tf.errors.InvalidArgumentError,
                     match=r'Feature `i` has ids outside .*\[0, 5\)'):
    _map(column, {'i': sparse})


def test_identity_out_of_range_ids_raise_inside_tf_function():
  column = emb.embedding_column(emb.categorical_column_with_identity('i', 5),
                                2)
  mapper = _spec(column).resolve().id_mapper()
  mapped = tf.function(lambda x: mapper({'i': x})[0]['i'].values)
  assert mapped(tf.ragged.constant([[4]], tf.int64)).numpy().tolist() == [4]
  with pytest.raises(tf.errors.InvalidArgumentError, match='Feature `i`'):
    mapped(tf.ragged.constant([[5]], tf.int64))


def test_identity_out_of_range_ids_take_default_value():
  column = emb.embedding_column(
      emb.categorical_column_with_identity('i', 5, default_value=0), 2)
  sparse = tf.SparseTensor([[0, 0], [0, 1], [1, 0]],
                           tf.constant([7, 3, -4], tf.int64), [2, 2])
  ids, _ = _map(column, {'i': sparse})
  assert ids.values.numpy().tolist() == [0, 3, 0]


def test_vocabulary_list_ids_with_oov_buckets_hash_like_tensorflow():
  vocab = ['a', 'b', 'c']
  column = emb.embedding_column(
      emb.categorical_column_with_vocabulary_list('w', vocab,
                                                  num_oov_buckets=4), 2)
  tokens = tf.ragged.constant([['b', 'zz'], ['c', 'qq', 'a']])
  ids, _ = _map(column, {'w': tokens})
  expected_oov = tf.strings.to_hash_bucket_fast(['zz', 'qq'], 4).numpy() + 3
  assert _rows(ids) == [[1, int(expected_oov[0])],
                        [2, int(expected_oov[1]), 0]]


def test_vocabulary_list_unknown_tokens_are_dropped_with_their_weights():
  column = emb.embedding_column(
      emb.weighted_categorical_column(
          emb.categorical_column_with_vocabulary_list('w', ['a', 'b']), 'wt'),
      2)
  ids, weights = _map(column, {
      'w': tf.constant([['a', 'x'], ['b', '']]),
      'wt': tf.constant([[0.5, 2.0], [3.0, 0.0]]),
  })
  assert ids.indices.numpy().tolist() == [[0, 0], [1, 0]]
  assert ids.values.numpy().tolist() == [0, 1]
  assert weights.indices.numpy().tolist() == [[0, 0], [1, 0]]
  assert weights.values.numpy().tolist() == [0.5, 3.0]


def test_vocabulary_list_default_value_and_int_keys():
  column = emb.embedding_column(
      emb.categorical_column_with_vocabulary_list('n', [10, 20, 30],
                                                  default_value=2), 2)
  ids, _ = _map(column, {'n': tf.constant([[20, 99]], tf.int32)})
  assert ids.values.numpy().tolist() == [1, 2]


def test_vocabulary_file_ids(tmp_path):
  path = tmp_path / 'vocab.txt'
  path.write_text('a\nb\nc\nd\n')
  limited = emb.embedding_column(
      emb.categorical_column_with_vocabulary_file('f', str(path), 3,
                                                  num_oov_buckets=1), 2)
  ids, _ = _map(limited, {'f': tf.ragged.constant([['c', 'd', 'a']])})
  assert ids.values.numpy().tolist() == [2, 3, 0]
  feature = _spec(limited).resolve().features['f']
  assert (feature.vocabulary_size, feature.num_oov_buckets) == (4, 1)


def test_weighted_ids_with_sparse_weights():
  column = emb.embedding_column(
      emb.weighted_categorical_column(
          emb.categorical_column_with_identity('i', 5), 'w'), 2)
  indices = [[0, 0], [0, 1], [1, 0]]
  ids, weights = _map(column, {
      'i': tf.SparseTensor(indices, tf.constant([1, 2, 3], tf.int64), [2, 2]),
      'w': tf.SparseTensor(indices, [0.1, 0.2, 0.3], [2, 2]),
  })
  assert weights.dtype == tf.float32
  assert weights.indices.numpy().tolist() == ids.indices.numpy().tolist()
  assert weights.values.numpy().tolist() == pytest.approx([0.1, 0.2, 0.3])
  with pytest.raises(tf.errors.InvalidArgumentError, match='same indices'):
    _map(column, {
        'i': tf.SparseTensor(indices, tf.constant([1, 2, 3], tf.int64),
                             [2, 2]),
        'w': tf.SparseTensor([[0, 0], [1, 0], [1, 1]], [0.1, 0.2, 0.3],
                             [2, 2]),
    })


def test_mapping_rejects_wrong_dtypes_and_missing_features():
  ids_column = emb.embedding_column(
      emb.categorical_column_with_identity('i', 5), 2)
  with pytest.raises(ValueError, match="Feature 'i' must hold integer ids"):
    _map(ids_column, {'i': tf.constant([['a']])})
  with pytest.raises(KeyError, match="Input feature 'i' is missing"):
    _map(ids_column, {'j': tf.constant([[1]])})
  words = emb.embedding_column(
      emb.categorical_column_with_vocabulary_list('w', ['a']), 2)
  with pytest.raises(ValueError, match="Feature 'w' must hold strings"):
    _map(words, {'w': tf.constant([[1]])})


def test_mapped_ids_feed_the_serving_lookup():
  seq = emb.embedding_column(
      emb.sequence_categorical_column_with_vocabulary_list(
          's', ['a', 'b', 'c'], num_oov_buckets=1), 3, max_sequence_length=2)
  weighted = emb.embedding_column(
      emb.weighted_categorical_column(
          emb.categorical_column_with_identity('i', 4), 'w'), 3,
      combiner='sum', initializer=emb.initializer('constant', value=1.0))
  resolved = _spec(seq, weighted).resolve()
  ids, weights = resolved.id_mapper()({
      's': tf.ragged.constant([['a', 'b', 'c'], ['x']]),
      'i': tf.ragged.constant([[1, 2], [3]], tf.int64),
      'w': tf.ragged.constant([[0.5, 2.0], [1.0]]),
  })
  lookup = tf.tpu.experimental.embedding.TPUEmbeddingForServing(
      resolved.compile(), resolved.compile_optimizer())
  out = lookup(ids, weights)
  assert out['s'].shape == (2, 2, 3)
  assert out['i'].numpy().tolist() == [[2.5] * 3, [1.0] * 3]


# --- TF 1.15's positional order and numpy integers. ---


def test_shared_embedding_columns_takes_tensorflow_positional_order():
  a = emb.categorical_column_with_identity('a', 6)
  s = emb.sequence_categorical_column_with_identity('s', 6)
  # TF 1.15: (categorical_columns, dimension, combiner, initializer,
  # shared_embedding_collection_name, max_sequence_lengths, learning_rate_fn).
  columns = emb.shared_embedding_columns(
      [a, s], 4, 'sum', None, 'crew', [0, 3], step_schedule)
  assert {c.resolved_table_name for c in columns} == {'crew'}
  assert [c.max_sequence_length for c in columns] == [0, 3]
  assert all(c.learning_rate_fn is step_schedule for c in columns)


def step_schedule(step):
  return 0.1


def test_numpy_integers_are_accepted_where_tensorflow_takes_ints():
  identity = emb.categorical_column_with_identity('i', np.int64(5),
                                                  default_value=np.int32(0))
  assert identity.num_buckets == 5 and type(identity.num_buckets) is int
  seq = emb.sequence_categorical_column_with_vocabulary_list(
      's', ['a', 'b'], num_oov_buckets=np.int64(2))
  column = emb.embedding_column(seq, np.int64(4),
                                max_sequence_length=np.int32(7))
  assert (column.dimension, column.max_sequence_length) == (4, 7)
  assert type(column.dimension) is int
  assert column.categorical_column.num_buckets == 4
  files = emb.categorical_column_with_vocabulary_file('f', 'v.txt',
                                                      np.uint16(3))
  assert files.num_buckets == 3
  emb.EmbeddingSpec([column, emb.embedding_column(identity, 2)],
                    emb.SGD()).to_json()  # JSON-serialisable ints.


@pytest.mark.parametrize('make, message', [
    (lambda: emb.categorical_column_with_identity('i', '5'),
     r"num_buckets must be an int >= 1, got '5' of type str"),
    (lambda: emb.categorical_column_with_identity('i', True),
     'got True of type bool'),
    (lambda: emb.categorical_column_with_identity('i', np.bool_(True)),
     'of type bool'),
    (lambda: emb.categorical_column_with_identity('i', 0),
     "num_buckets 0 < 1, column_name 'i'"),
    (lambda: emb.embedding_column(
        emb.categorical_column_with_identity('i', 5), np.float32(4)),
     r'must be an int > 0, got \S*4.0\S* of type float32'),
    (lambda: emb.categorical_column_with_vocabulary_list(
        'w', ['a'], num_oov_buckets='2'), "'2' of type str"),
    (lambda: emb.categorical_column_with_vocabulary_file(
        'f', 'v.txt', vocabulary_size=3.0), '3.0 of type float'),
    (lambda: emb.embedding_column(
        emb.sequence_categorical_column_with_identity('s', 5), 2,
        max_sequence_length='8'), r"max_sequence_length='8' \(str\)"),
])
def test_bad_integers_are_refused_naming_the_type(make, message):
  with pytest.raises(ValueError, match=message):
    make()


def test_is_sequence_must_be_a_bool():
  with pytest.raises(ValueError, match="is_sequence of column 'i' must be "
                     "True or False, got 'false' of type str"):
    emb.IdentityColumn('i', 5, is_sequence='false')
