"""Tests of the trainer's input pipeline (`components.trainer.inputs`)."""

import os

import numpy as np
import pytest
import tensorflow as tf

from components.trainer import inputs

_SPEC = {
    'ids': tf.io.RaggedFeature(tf.int64),
    'label': tf.io.FixedLenFeature([], tf.int64),
}


def _write_examples(path: str, count: int) -> None:
  """`count` gzipped tf.Examples: row i has ids [i, i+1, ...] (i % 3 ids)."""
  with tf.io.TFRecordWriter(path, options='GZIP') as writer:
    for i in range(count):
      example = tf.train.Example(features=tf.train.Features(feature={
          'ids': tf.train.Feature(int64_list=tf.train.Int64List(
              value=list(range(i, i + i % 3)))),
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


def _training_batches(path: str, cache_in_memory: bool) -> tf.data.Dataset:
  return inputs.make_dataset([path], _SPEC, 'label', 4, training=True,
                             shuffle_buffer=5, seed=3, prepare=_prepare,
                             cache_in_memory=cache_in_memory)


def _take(iterator, count: int):
  return [next(iterator)[0].numpy().tolist() for _ in range(count)]


def test_cached_training_batches_equal_streamed_ones_across_epochs(tmp_path):
  path = str(tmp_path / 'data.gz')
  _write_examples(path, 10)
  # 12 batches of 4 from 10 records: five epochs, reshuffled each time.
  streamed = _take(iter(_training_batches(path, False)), 12)
  cached = _take(iter(_training_batches(path, True)), 12)
  assert cached == streamed
  assert streamed[:3] != streamed[5:8]  # Later epochs are reshuffled.


@pytest.mark.parametrize('cache_in_memory', [False, True])
def test_a_restored_iterator_continues_where_it_was_saved(tmp_path,
                                                          cache_in_memory):
  path = str(tmp_path / 'data.gz')
  _write_examples(path, 10)
  expected = _take(iter(_training_batches(path, cache_in_memory)), 9)

  iterator = iter(_training_batches(path, cache_in_memory))
  _take(iterator, 4)  # Into the second epoch: a cache is complete.
  saved = tf.train.Checkpoint(input=iterator).save(str(tmp_path / 'ckpt'))
  if cache_in_memory:
    # The checkpoint holds the cached records: the files are not read again.
    os.rename(path, path + '.moved')
  restored = iter(_training_batches(path, cache_in_memory))
  tf.train.Checkpoint(input=restored).restore(saved).assert_consumed()
  assert _take(restored, 5) == expected[4:]


def test_total_mib_sums_the_files(tmp_path):
  for name, size in (('a', 2**20), ('b', 2**19)):
    (tmp_path / name).write_bytes(b'x' * size)
  assert inputs.total_mib([str(tmp_path / 'a'), str(tmp_path / 'b')]) == 1.5
