"""Tests of the trainer's input pipeline (`components.trainer.inputs`)."""

import numpy as np
import pytest
import tensorflow as tf

from components.trainer import inputs

_SPEC = {
    'ids': tf.io.RaggedFeature(tf.int64),
    'index': tf.io.FixedLenFeature([], tf.int64),
    'label': tf.io.FixedLenFeature([], tf.int64),
}


def _write_examples(path: str, count: int) -> None:
  """`count` gzipped tf.Examples: row i has index i, ids [i, i+1, ...]
  (i % 3 ids) and label i % 2."""
  with tf.io.TFRecordWriter(path, options='GZIP') as writer:
    for i in range(count):
      example = tf.train.Example(features=tf.train.Features(feature={
          'ids': tf.train.Feature(int64_list=tf.train.Int64List(
              value=list(range(i, i + i % 3)))),
          'index': tf.train.Feature(int64_list=tf.train.Int64List(
              value=[i])),
          'label': tf.train.Feature(int64_list=tf.train.Int64List(
              value=[i % 2])),
      }))
      writer.write(example.SerializeToString())


def _prepare(features, labels):
  """Stands for the id mapping: one dense tensor per batch."""
  return features['ids'].row_lengths() * 10, labels


_PER_BATCH_MAPS = ('MapDataset', 'ParallelMapDataset', 'ParallelMapDatasetV2')


def _per_batch_maps(dataset: tf.data.Dataset):
  """The map ops of `dataset`'s graph (file reading's FlatMap left out)."""
  graph = tf.compat.v1.GraphDef()
  graph.ParseFromString(dataset._as_serialized_graph().numpy())  # pylint: disable=protected-access
  return [node.op for node in graph.node if node.op in _PER_BATCH_MAPS]


def test_prepare_runs_in_the_parsing_map_and_equals_a_map_after_it(tmp_path):
  path = str(tmp_path / 'data.gz')
  _write_examples(path, 10)
  fused = inputs.make_dataset([path], _SPEC, 'label', 4, training=False,
                              drop_remainder=False, prepare=_prepare)
  separate = inputs.make_dataset([path], _SPEC, 'label', 4, training=False,
                                 drop_remainder=False).map(_prepare)

  assert _per_batch_maps(fused) == ['ParallelMapDatasetV2']
  assert len(_per_batch_maps(separate)) == 2
  batches = list(zip(fused, separate))
  assert len(batches) == 3
  for (fused_ids, fused_labels), (ids, labels) in batches:
    np.testing.assert_array_equal(fused_ids.numpy(), ids.numpy())
    np.testing.assert_array_equal(fused_labels.numpy(), labels.numpy())
  np.testing.assert_array_equal(batches[0][0][0].numpy(), [0, 10, 20, 0])


def _training_batches(path: str, in_memory: bool,
                      batch_size: int = 4) -> tf.data.Dataset:
  return inputs.make_dataset([path], _SPEC, 'label', batch_size, training=True,
                             shuffle_buffer=5, seed=3, prepare=_rows,
                             in_memory=in_memory)


def _rows(features, labels):
  """Each example's index, and what it was parsed to (for checking)."""
  return (features['index'], features['ids'].row_lengths(),
          tf.reshape(labels, [-1]))


def _take(iterator, count: int):
  return [next(iterator)[0].numpy().tolist() for _ in range(count)]


def test_in_memory_epochs_are_seeded_permutations_of_the_examples(tmp_path):
  path = str(tmp_path / 'data.gz')
  _write_examples(path, 10)
  iterator = iter(_training_batches(path, True, batch_size=5))
  epochs = []
  for _ in range(3):
    batches = [next(iterator) for _ in range(2)]
    for index, lengths, labels in batches:
      # Every feature of an example is gathered from the same row.
      np.testing.assert_array_equal(lengths, index.numpy() % 3)
      np.testing.assert_array_equal(labels, index.numpy() % 2)
    epochs.append([i for index, _, _ in batches for i in index.numpy()])
  assert all(sorted(epoch) == list(range(10)) for epoch in epochs)
  assert epochs[0] != epochs[1] != epochs[2]  # Reshuffled every epoch.
  again = _take(iter(_training_batches(path, True, batch_size=5)), 6)
  assert [i for batch in again for i in batch] == sum(epochs, [])


def test_in_memory_refuses_files_without_examples(tmp_path):
  path = str(tmp_path / 'empty.gz')
  _write_examples(path, 0)
  with pytest.raises(ValueError, match='hold no examples'):
    _training_batches(path, True)


@pytest.mark.parametrize('in_memory', [False, True])
def test_a_restored_iterator_continues_where_it_was_saved(tmp_path, in_memory):
  path = str(tmp_path / 'data.gz')
  _write_examples(path, 10)
  expected = _take(iter(_training_batches(path, in_memory)), 9)

  iterator = iter(_training_batches(path, in_memory))
  _take(iterator, 4)  # Into the second epoch.
  saved = tf.train.Checkpoint(input=iterator).save(str(tmp_path / 'ckpt'))
  restored = iter(_training_batches(path, in_memory))
  tf.train.Checkpoint(input=restored).restore(saved).assert_consumed()
  assert _take(restored, 5) == expected[4:]


def test_total_mib_sums_the_files(tmp_path):
  for name, size in (('a', 2**20), ('b', 2**19)):
    (tmp_path / name).write_bytes(b'x' * size)
  assert inputs.total_mib([str(tmp_path / 'a'), str(tmp_path / 'b')]) == 1.5
  files = [str(tmp_path / 'a'), str(tmp_path / 'b')]
  assert inputs.holds_in_memory(files, 2)
  assert not inputs.holds_in_memory(files, 1)
  (tmp_path / 'empty').write_bytes(b'')
  assert not inputs.holds_in_memory([str(tmp_path / 'empty')], 0)  # Never.
