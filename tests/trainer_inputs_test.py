"""Tests of the trainer's input pipeline (`components.trainer.inputs`)."""

import itertools
import os
import shutil

import numpy as np
import pytest
import tensorflow as tf

from components.trainer import inputs
from components.trainer import parsed_blocks

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


def _training_batches(path: str, mode: str, batch_size: int = 4,
                      **kwargs) -> tf.data.Dataset:
  """`mode`: 'memory', 'blocks' (in a `blocks` folder beside `path`) or
  'stream'."""
  blocks_dir = os.path.join(os.path.dirname(path), 'blocks')
  return inputs.make_dataset(
      [path], _SPEC, 'label', batch_size, training=True, shuffle_buffer=5,
      seed=3, prepare=_rows, in_memory=mode == 'memory',
      blocks_dir=blocks_dir if mode == 'blocks' else None, **kwargs)


def _rows(features, labels):
  """Each example's index, and what it was parsed to (for checking)."""
  return (features['index'], features['ids'].row_lengths(),
          tf.reshape(labels, [-1]))


def _take(iterator, count: int):
  return [next(iterator)[0].numpy().tolist() for _ in range(count)]


def test_in_memory_epochs_are_seeded_permutations_of_the_examples(tmp_path):
  path = str(tmp_path / 'data.gz')
  _write_examples(path, 10)
  iterator = iter(_training_batches(path, 'memory', batch_size=5))
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
  again = _take(iter(_training_batches(path, 'memory', batch_size=5)), 6)
  assert [i for batch in again for i in batch] == sum(epochs, [])


def test_in_memory_refuses_files_without_examples(tmp_path):
  path = str(tmp_path / 'empty.gz')
  _write_examples(path, 0)
  with pytest.raises(ValueError, match='hold no examples'):
    _training_batches(path, 'memory')


@pytest.mark.parametrize('mode', ['stream', 'memory', 'blocks'])
def test_a_restored_iterator_continues_where_it_was_saved(tmp_path, mode):
  path = str(tmp_path / 'data.gz')
  _write_examples(path, 10)
  expected = _take(iter(_training_batches(path, mode)), 9)

  iterator = iter(_training_batches(path, mode))
  _take(iterator, 4)  # Into the second epoch.
  saved = tf.train.Checkpoint(input=iterator).save(str(tmp_path / 'ckpt'))
  if mode == 'blocks':  # A rerun on another machine parses them again.
    shutil.rmtree(tmp_path / 'blocks')
  restored = iter(_training_batches(path, mode))
  tf.train.Checkpoint(input=restored).restore(saved).assert_consumed()
  assert _take(restored, 5) == expected[4:]


def _epochs_of_blocks(batches, count: int, epochs: int):
  """The indices of `epochs` epochs of `count` batches, checking that every
  feature of an example comes from the same row."""
  iterator = iter(batches)
  result = []
  for _ in range(epochs):
    indices = []
    for index, lengths, labels in (next(iterator) for _ in range(count)):
      np.testing.assert_array_equal(lengths, index.numpy() % 3)
      np.testing.assert_array_equal(labels, index.numpy() % 2)
      indices.extend(index.numpy().tolist())
    result.append(indices)
  return result


def test_parsed_blocks_epochs_are_new_permutations_of_each_block(tmp_path):
  path = str(tmp_path / 'data.gz')
  _write_examples(path, 22)
  # shuffle_buffer 5 and batches of 4: blocks of 8 examples, [0, 8), [8, 16)
  # and [16, 22); the last block gives one batch and leaves out 2 at random.
  epochs = _epochs_of_blocks(_training_batches(path, 'blocks'), 5, 4)
  for epoch in epochs:
    assert len(set(epoch)) == 20
    assert set(range(16)) <= set(epoch) <= set(range(22))
    # Each batch comes from one block, and a block's batches come together.
    batches = [epoch[i:i + 4] for i in range(0, 20, 4)]
    block_of_batch = [min(batch) // 8 for batch in batches]
    assert all(max(batch) // 8 == block
               for batch, block in zip(batches, block_of_batch))
    assert sorted(key for key, _ in itertools.groupby(block_of_batch)) == [
        0, 1, 2]
  assert len({tuple(epoch) for epoch in epochs}) == 4  # Reshuffled.
  assert len({tuple(epoch[:4]) for epoch in epochs}) > 1
  # The same seed gives the same batches; the blocks are read back, not
  # parsed again.
  written = os.path.getmtime(tmp_path / 'blocks' / 'block-00000')
  again = _epochs_of_blocks(_training_batches(path, 'blocks'), 5, 4)
  assert again == epochs
  assert os.path.getmtime(tmp_path / 'blocks' / 'block-00000') == written


def test_parsed_blocks_hold_only_the_examples_the_run_takes(tmp_path):
  path = str(tmp_path / 'data.gz')
  _write_examples(path, 40)
  # 9 examples round up to two blocks of 8: examples [0, 16).
  epochs = _epochs_of_blocks(
      _training_batches(path, 'blocks', max_examples=9), 4, 2)
  assert all(sorted(epoch) == list(range(16)) for epoch in epochs)
  manifest = parsed_blocks._read_manifest(str(tmp_path / 'blocks'))  # pylint: disable=protected-access
  assert (manifest['num_blocks'], manifest['num_examples']) == (2, 16)
  # Another limit is another cache: parsed again, all 40 examples.
  epochs = _epochs_of_blocks(_training_batches(path, 'blocks'), 10, 1)
  assert sorted(epochs[0]) == list(range(40))
  # So is another parsing (here without the `ids` feature).
  spec = {key: value for key, value in _SPEC.items() if key != 'ids'}
  batches = inputs.make_dataset(
      [path], spec, 'label', 4, training=True, shuffle_buffer=5, seed=3,
      blocks_dir=str(tmp_path / 'blocks'))
  assert set(next(iter(batches))[0]) == {'index'}


def test_a_cache_without_its_manifest_is_parsed_again(tmp_path):
  path = str(tmp_path / 'data.gz')
  _write_examples(path, 16)
  folder = tmp_path / 'blocks'
  folder.mkdir()
  (folder / 'block-00000').write_bytes(b'cut short by a killed run')
  epochs = _epochs_of_blocks(_training_batches(path, 'blocks'), 4, 1)
  assert sorted(epochs[0]) == list(range(16))
  assert (folder / parsed_blocks.MANIFEST).exists()


def test_a_block_that_cannot_be_written_says_what_to_do(tmp_path,
                                                         monkeypatch):
  path = str(tmp_path / 'data.gz')
  _write_examples(path, 16)

  def full_disk(filename, contents):
    raise tf.errors.ResourceExhaustedError(None, None, 'No space left')

  monkeypatch.setattr(tf.io, 'write_file', full_disk)
  with pytest.raises(OSError, match='No space left.*point TMPDIR at a '
                     'larger disk, or set TrainingConfig.parse_once'):
    _training_batches(path, 'blocks')


def test_parsed_blocks_refuse_fewer_examples_than_a_batch(tmp_path):
  path = str(tmp_path / 'data.gz')
  _write_examples(path, 3)
  with pytest.raises(ValueError, match='3 examples, fewer than one batch'):
    _training_batches(path, 'blocks')
  _write_examples(path, 0)
  with pytest.raises(ValueError, match='hold no examples'):
    _training_batches(path, 'blocks')
  with pytest.raises(ValueError, match='always full'):
    _training_batches(path, 'blocks', drop_remainder=False)


def test_encoded_blocks_decode_to_the_same_tensors():
  element = ({'ragged': tf.ragged.constant([[1, 2], [], [3]], tf.int64),
              'dense': tf.constant([[0.5], [1.5], [2.5]])},
             tf.constant([1, 0, 1]))
  spec = tf.nest.map_structure(tf.type_spec_from_value, element)
  decoded = parsed_blocks.decode(parsed_blocks.encode(element), spec)
  assert decoded[0]['ragged'].to_list() == [[1, 2], [], [3]]
  np.testing.assert_array_equal(decoded[0]['dense'], element[0]['dense'])
  np.testing.assert_array_equal(decoded[1], element[1])


def test_total_mib_sums_the_files(tmp_path):
  for name, size in (('a', 2**20), ('b', 2**19)):
    (tmp_path / name).write_bytes(b'x' * size)
  assert inputs.total_mib([str(tmp_path / 'a'), str(tmp_path / 'b')]) == 1.5
  files = [str(tmp_path / 'a'), str(tmp_path / 'b')]
  assert inputs.holds_in_memory(files, 2)
  assert not inputs.holds_in_memory(files, 1)
  (tmp_path / 'empty').write_bytes(b'')
  assert not inputs.holds_in_memory([str(tmp_path / 'empty')], 0)  # Never.
