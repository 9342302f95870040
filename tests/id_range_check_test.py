"""The id mapper's single range check for all features of a batch.

`IdMapper` checks the ids of every feature against its table in one `Assert`
(per feature: the largest id read as unsigned). These tests compare its
output with mapping each feature on its own (one check per feature, as the
plain implementation did), eagerly and inside a tf.data map as the Trainer's
input pipeline runs it, and pin the error: it names exactly the features out
of range and their table range.
"""

import numpy as np
import pytest
import tensorflow as tf

from components import embedding as emb
from components.trainer import loop


def _spec(*columns):
  return emb.EmbeddingSpec(list(columns), emb.SGD())


def _columns():
  """Every kind of id path: checked, defaulted, looked up, dropped."""
  identity = emb.categorical_column_with_identity
  return [
      emb.embedding_column(identity('bag', 5), 2),
      emb.embedding_column(
          emb.sequence_categorical_column_with_identity('seq', 7), 2,
          max_sequence_length=3),
      emb.embedding_column(
          emb.weighted_categorical_column(identity('weighted', 4), 'w'), 2),
      emb.embedding_column(identity('defaulted', 3, default_value=0), 2),
      emb.embedding_column(
          emb.categorical_column_with_vocabulary_list('words', ['a', 'b']),
          2),
  ]


def _inputs():
  return {
      'bag': tf.ragged.constant([[4, 0], [], [1]], tf.int64),
      # A sequence with a gap at position 1 of row 0.
      'seq': tf.SparseTensor([[0, 0], [0, 2], [2, 0]],
                             tf.constant([6, 0, 3], tf.int64), [3, 3]),
      'weighted': tf.ragged.constant([[3], [2, 1], []], tf.int64),
      'w': tf.ragged.constant([[0.5], [1.0, 2.0], []], tf.float32),
      'defaulted': tf.constant([[2], [9], [-4]], tf.int32),
      'words': tf.constant([['a', 'zz'], ['', 'b'], ['zz', '']]),
  }


def _mapped(mapper, inputs):
  ids, weights = mapper(inputs)
  as_lists = lambda s: (s.indices.numpy().tolist(), s.values.numpy().tolist(),
                        s.dense_shape.numpy().tolist())
  return ({k: as_lists(v) for k, v in ids.items()},
          {k: as_lists(v) for k, v in weights.items() if v is not None})


def _per_feature(resolved, inputs):
  """Each feature mapped by a mapper of its own: one check per feature."""
  ids, weights = {}, {}
  for feature in resolved.features.values():
    one_ids, one_weights = _mapped(emb.IdMapper([feature]), inputs)
    ids.update(one_ids)
    weights.update(one_weights)
  return ids, weights


def test_all_features_map_as_with_one_mapper_per_feature():
  resolved = _spec(*_columns()).resolve()
  ids, weights = _mapped(resolved.id_mapper(), _inputs())
  assert (ids, weights) == _per_feature(resolved, _inputs())
  assert ids['seq'][0] == [[0, 0], [0, 2], [2, 0]]  # The gap stays.
  assert ids['defaulted'][1] == [2, 0, 0]
  assert ids['words'][1] == [0, 1]  # Unknown tokens dropped.
  assert weights['weighted'][1] == [0.5, 1.0, 2.0]


def test_batches_in_a_dataset_map_equal_the_eager_mapping():
  resolved = _spec(*_columns()).resolve()
  prepare = loop.BatchPreparer(resolved.id_mapper(), [])
  labels = tf.zeros([3, 1])
  dataset = tf.data.Dataset.from_tensors((_inputs(), labels)).map(prepare)
  ids, weights, _, _ = next(iter(dataset))
  eager_ids, eager_weights = _per_feature(resolved, _inputs())
  for key, (indices, values, shape) in eager_ids.items():
    assert ids[key].indices.numpy().tolist() == indices
    assert ids[key].values.numpy().tolist() == values
    assert ids[key].dense_shape.numpy().tolist() == shape
  assert sorted(weights) == sorted(eager_weights) == ['weighted']
  assert weights['weighted'].values.numpy().tolist() == (
      eager_weights['weighted'][1])


def _three_tables():
  identity = emb.categorical_column_with_identity
  return _spec(emb.embedding_column(identity('a', 5), 2),
               emb.embedding_column(identity('b', 7), 2),
               emb.embedding_column(identity('c', 3), 2)).resolve()


def _ids(b_values, dtype=tf.int64):
  return {'a': tf.ragged.constant([[4], [0]], tf.int64),
          'b': tf.ragged.constant(b_values, dtype),
          'c': tf.ragged.constant([[2], []], tf.int64)}


@pytest.mark.parametrize('bad', [7, 8, -1, 2**62, -2**63])
def test_out_of_range_id_names_only_its_feature(bad):
  mapper = _three_tables().id_mapper()
  with pytest.raises(tf.errors.InvalidArgumentError) as error:
    mapper(_ids([[1, bad], [6]]))
  message = str(error.value)
  assert 'Feature `b` has ids outside the table range [0, 7)' in message
  assert 'Feature `a`' not in message and 'Feature `c`' not in message


def test_every_feature_out_of_range_is_named():
  mapper = _three_tables().id_mapper()
  inputs = _ids([[7]])
  inputs['c'] = tf.ragged.constant([[-3], []], tf.int64)
  with pytest.raises(tf.errors.InvalidArgumentError,
                     match=r'(?s)Feature `b` .*\[0, 7\).*Feature `c` .*'
                     r'\[0, 3\)'):
    mapper(inputs)


def test_negative_int32_ids_are_out_of_range():
  mapper = _three_tables().id_mapper()
  with pytest.raises(tf.errors.InvalidArgumentError, match='Feature `b`'):
    mapper(_ids([[-1], []], tf.int32))


def test_last_rows_and_empty_batches_pass():
  mapper = _three_tables().id_mapper()
  ids, _ = mapper(_ids([[6, 0], [6]]))
  assert ids['b'].values.numpy().tolist() == [6, 0, 6]
  empty = {key: tf.ragged.constant([[], []], tf.int64) for key in 'abc'}
  ids, _ = mapper(empty)
  assert all(v.values.shape[0] == 0 for v in ids.values())


def test_out_of_range_fails_in_the_dataset_map_naming_the_feature():
  prepare = loop.BatchPreparer(_three_tables().id_mapper(), [])
  good = tf.data.Dataset.from_tensors((_ids([[1], [6]]), tf.zeros([2, 1])))
  bad = tf.data.Dataset.from_tensors((_ids([[1], [7]]), tf.zeros([2, 1])))
  iterator = iter(good.concatenate(bad).map(prepare))
  ids, _, _, _ = next(iterator)
  assert ids['b'].values.numpy().tolist() == [1, 6]
  with pytest.raises(tf.errors.InvalidArgumentError,
                     match=r'Feature `b` has ids outside .*\[0, 7\)'):
    next(iterator)


def test_check_depends_on_the_values_in_a_graph():
  """The checked values carry the check: a graph computing only them fails."""
  mapper = _three_tables().id_mapper()
  values = tf.function(lambda x: mapper(dict(_ids([[1]]), b=x))[0]['b'].values)
  assert values(tf.ragged.constant([[6]], tf.int64)).numpy().tolist() == [6]
  with pytest.raises(tf.errors.InvalidArgumentError, match='Feature `b`'):
    values(tf.ragged.constant([[np.int64(7)]], tf.int64))
