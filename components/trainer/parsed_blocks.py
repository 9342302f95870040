"""Streamed training data parsed once into blocks on local disk.

Training data too large for memory used to be read, decompressed and parsed
again every epoch, and parsing alone (``tf.io.parse_example``) ran at about a
quarter of a million examples a second on two cores: slower than the CPU path
trains. Here the records are parsed once, in blocks of consecutive records,
and every block's parsed tensors are written to a file. Every epoch then
visits the blocks in a new random order and each block's examples in a new
random order, so batches are gathered from parsed tensors, as for data held
in memory, and the shuffle is at least as wide as a shuffle buffer of one
block's examples.

A cache folder holds::

    block-00000 ... block-NNNNN  one block each: its parsed (features,
        labels) flattened to tensors, each serialized with
        ``tf.io.serialize_tensor``, all in one serialized string tensor.
    manifest.json  written last: what was parsed (``key``), the number of
        blocks and of examples. A folder without it, or with another key, is
        parsed again: a run killed while writing never reads half a cache.

The blocks' contents depend only on the files, their order, the parsing and
the block size, so a resumed run that finds the folder gone parses the same
blocks again and its restored input position means the same examples.
"""

import hashlib
import json
import math
import os
import tempfile
import time
from typing import Any, Callable, Dict, Optional, Tuple

import tensorflow as tf
from absl import logging

MANIFEST = 'manifest.json'
_BLOCK_FILE = 'block-{:05d}'
_LOG_SECONDS = 30  # Progress lines while a large training set is parsed.

Element = Tuple[Any, tf.Tensor]  # (features, labels), as inputs' parser gives.


def local_folder(run_dir: str) -> str:
  """The blocks' folder for a run: on this machine's temporary disk, named
  by the run's folder, so a resumed run on the same machine finds it."""
  name = hashlib.sha256(run_dir.encode('utf-8')).hexdigest()[:16]
  return os.path.join(tempfile.gettempdir(), 'tpu_embedding_tfx_blocks', name)


def remove(directory: str) -> None:
  """Deletes a cache folder once its run has finished with it."""
  if tf.io.gfile.exists(directory):
    tf.io.gfile.rmtree(directory)


def block_rows(shuffle_buffer: int, batch_size: int) -> int:
  """Examples per block: ``shuffle_buffer`` rounded up to whole batches, so
  only an epoch's last (partial) block leaves examples out of a batch."""
  return max(1, math.ceil(shuffle_buffer / batch_size)) * batch_size


def encode(element: Any) -> tf.Tensor:
  """One scalar string holding every tensor of ``element`` (composites
  such as ragged tensors flattened to their component tensors)."""
  parts = [tf.io.serialize_tensor(part)
           for part in tf.nest.flatten(element, expand_composites=True)]
  return tf.io.serialize_tensor(tf.stack(parts))


def decode(data: tf.Tensor, element_spec: Any) -> Any:
  """The element ``encode`` wrote, rebuilt with ``element_spec``'s types."""
  parts = tf.io.parse_tensor(data, tf.string)
  specs = tf.nest.flatten(element_spec, expand_composites=True)
  components = [tf.ensure_shape(tf.io.parse_tensor(parts[i], spec.dtype),
                                spec.shape)
                for i, spec in enumerate(specs)]
  return tf.nest.pack_sequence_as(element_spec, components,
                                  expand_composites=True)


def _read_manifest(directory: str) -> Optional[Dict[str, Any]]:
  path = os.path.join(directory, MANIFEST)
  if not tf.io.gfile.exists(path):
    return None
  with tf.io.gfile.GFile(path) as f:
    return json.load(f)


def write_blocks(blocks: tf.data.Dataset, directory: str,
                 key: Dict[str, Any]) -> Dict[str, Any]:
  """Writes each element of ``blocks`` (a parsed block) to
  ``directory``, unless a complete cache of the same ``key`` is there.

  Returns the manifest: ``key``, ``num_blocks`` and ``num_examples``.
  Raises ValueError when there are no examples.
  """
  key = json.loads(json.dumps(key))  # As the manifest holds it.
  manifest = _read_manifest(directory)
  if manifest is not None and manifest['key'] == key:
    logging.info('Reusing %d parsed blocks (%d examples) in %s.',
                 manifest['num_blocks'], manifest['num_examples'], directory)
    return manifest
  if tf.io.gfile.exists(directory):
    tf.io.gfile.rmtree(directory)
  tf.io.gfile.makedirs(directory)
  start = time.perf_counter()
  num_blocks = num_examples = 0
  encoded = blocks.map(
      lambda features, labels: (encode((features, labels)),
                                tf.shape(labels)[0]),
      num_parallel_calls=tf.data.AUTOTUNE, deterministic=True)
  logged = start
  for data, rows in encoded.prefetch(2):
    path = os.path.join(directory, _BLOCK_FILE.format(num_blocks))
    try:
      tf.io.write_file(path, data)
    except tf.errors.OpError as error:
      raise OSError(
          f'Could not write parsed block {path} ({error.message}). The '
          f'blocks need about the parsed size of the training examples: '
          f'point TMPDIR at a larger disk, or set TrainingConfig.parse_once '
          f'to False to parse the files every epoch.') from error
    num_blocks += 1
    num_examples += int(rows)
    if time.perf_counter() - logged > _LOG_SECONDS:
      logged = time.perf_counter()
      logging.info('Parsed %d examples into %d blocks so far.', num_examples,
                   num_blocks)
  if not num_examples:
    raise ValueError('The training files hold no examples.')
  manifest = {'key': key, 'num_blocks': num_blocks,
              'num_examples': num_examples}
  staged = os.path.join(directory, MANIFEST + '.tmp')
  with tf.io.gfile.GFile(staged, 'w') as f:
    json.dump(manifest, f)
  tf.io.gfile.rename(staged, os.path.join(directory, MANIFEST), overwrite=True)
  logging.info('Parsed %d examples into %d blocks in %.1f s (%s).',
               num_examples, num_blocks, time.perf_counter() - start,
               directory)
  return manifest


def shuffled_batches(directory: str, num_blocks: int, element_spec: Any,
                     batch_size: int, seed: Optional[int],
                     gather: Callable[[Element, tf.Tensor], Any]
                    ) -> tf.data.Dataset:
  """Full batches from the blocks in ``directory``, forever.

  Every epoch reads the blocks in a new seeded order; each block's examples
  are permuted with a seed drawn from a checkpointable random stream
  (``Dataset.random``), so a restored iterator repeats the same batches.
  The next block is read while the current one's batches are taken.
  ``gather(block, rows)`` makes a batch from the block's examples ``rows``.
  """
  paths = tf.constant([os.path.join(directory, _BLOCK_FILE.format(i))
                       for i in range(num_blocks)])
  order = tf.data.Dataset.range(num_blocks).shuffle(
      num_blocks, seed=seed, reshuffle_each_iteration=True).repeat()
  seeds = tf.data.Dataset.random(seed=seed)

  def load(index: tf.Tensor, block_seed: tf.Tensor) -> Tuple[Element,
                                                             tf.Tensor]:
    block = decode(tf.io.read_file(paths[index]), element_spec)
    count = tf.shape(block[1])[0]
    permutation = tf.random.experimental.stateless_shuffle(
        tf.range(count), seed=tf.stack([block_seed, index]))
    full = count // batch_size * batch_size
    return block, tf.reshape(permutation[:full], [-1, batch_size])

  def batches(block: Element, rows: tf.Tensor) -> tf.data.Dataset:
    return tf.data.Dataset.from_tensor_slices(rows).map(
        lambda batch_rows: gather(block, batch_rows))

  return (tf.data.Dataset.zip(order, seeds)
          .map(load, num_parallel_calls=2, deterministic=True)
          .flat_map(batches))
