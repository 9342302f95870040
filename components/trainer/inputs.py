"""The input pipeline shared by the CPU and TPU paths.

Reads Transform's gzipped tf.Example TFRecords, parses them with the
transformed feature spec (ragged ids for lists) and yields fixed-size batches:
the last partial batch is dropped so that every step has the same static
shape, as TPUs require. Training data is parsed once and batches are
gathered from the parsed tensors:

- small data (``TrainingConfig.in_memory_train_mib``) is held in memory and
  each epoch is a full seeded shuffle of it;
- larger data is parsed into blocks on local disk (``parsed_blocks``), read
  back in a new random order every epoch;
- or, without a folder for the blocks, it streams from the files through a
  shuffle buffer and is parsed every epoch.

The training iterator is checkpointable, so a resumed run continues from the
same input position.
"""

import math
from typing import Any, Callable, Dict, List, Mapping, Optional, Tuple

import tensorflow as tf
from tfx import types
from tfx.types import artifact_utils
from tfx.utils import io_utils

from components.trainer import parsed_blocks

Features = Dict[str, Any]


def split_files(examples: List[types.Artifact],
                splits: List[str]) -> List[str]:
  """The TFRecord files of ``splits`` of Examples artifacts, sorted.

  Split folders are found through TFX's artifact utilities, so any split name
  an ExampleGen or Transform wrote works. A split that is missing or has no
  files is refused with the splits that exist.
  """
  available = sorted({name for artifact in examples
                      for name in artifact_utils.decode_split_names(
                          artifact.split_names)})
  files = []
  for split in splits:
    if split not in available:
      raise ValueError(f'The examples have no {split!r} split; they have '
                       f'{available}. Set train_args/eval_args splits.')
    for uri in artifact_utils.get_split_uris(examples, split):
      matched = tf.io.gfile.glob(io_utils.all_files_pattern(uri))
      if not matched:
        raise ValueError(f'Split {split!r} has no files in {uri}.')
      files.extend(sorted(matched))
  return files


def dense_feature_keys(feature_spec: Mapping[str, Any], label_key: str,
                       embedded_keys: List[str]) -> List[str]:
  """Fixed-length numeric features the dense layers may read, sorted."""
  return sorted(
      key for key, spec in feature_spec.items()
      if isinstance(spec, tf.io.FixedLenFeature) and key != label_key and
      key not in embedded_keys and spec.dtype in (tf.float32, tf.int64))


def total_mib(files: List[str]) -> float:
  """The size of ``files`` on disk, in MiB."""
  return sum(tf.io.gfile.stat(path).length for path in files) / 2**20


def holds_in_memory(files: List[str], in_memory_train_mib: int) -> bool:
  """Whether training on ``files`` parses them into memory (``make_dataset``'s
  ``in_memory``): when they total at most ``in_memory_train_mib`` MiB (0:
  never)."""
  return 0 < in_memory_train_mib and total_mib(files) <= in_memory_train_mib


# How training reads its files (``training_input``).
IN_MEMORY = 'in_memory'
PARSED_BLOCKS = 'parsed_blocks'
STREAMED = 'streamed'


def training_input(files: List[str], in_memory_train_mib: int,
                   parse_once: bool) -> str:
  """How training reads ``files`` (the ``TrainingConfig`` fields of the same
  names decide): ``IN_MEMORY``, ``PARSED_BLOCKS`` or ``STREAMED``. It
  decides the order of the examples, so the resume fingerprint holds it."""
  if holds_in_memory(files, in_memory_train_mib):
    return IN_MEMORY
  return PARSED_BLOCKS if parse_once else STREAMED


def make_dataset(files: List[str],
                 feature_spec: Mapping[str, Any],
                 label_key: str,
                 batch_size: int,
                 training: bool,
                 shuffle_buffer: int = 10_000,
                 seed: Optional[int] = None,
                 drop_remainder: bool = True,
                 label_fn: Optional[Callable[[tf.Tensor], tf.Tensor]] = None,
                 input_context: Optional[tf.distribute.InputContext] = None,
                 prepare: Optional[Callable[[Features, tf.Tensor], Any]] = None,
                 in_memory: bool = False,
                 blocks_dir: Optional[str] = None,
                 max_examples: Optional[int] = None) -> tf.data.Dataset:
  """Batches of ``(features, labels)``, or of ``prepare(features, labels)``.

  Training data is shuffled (seeded) and repeated forever; evaluation data is
  read once, in order. ``label_fn`` shapes the parsed label for the loss (the
  task's ``labels``); by default float32 ``[batch, 1]``. With an
  ``input_context`` (multi-host TPU input) this host reads only its share of
  the records, and ``batch_size`` is the per-replica batch.

  Training data is read and parsed once: with ``in_memory`` into memory
  (``_in_memory_batches``), else with a ``blocks_dir`` into blocks of about
  ``shuffle_buffer`` examples in that local folder (``_block_batches``;
  ``max_examples``: the examples the run will take, so that no more is
  parsed than it reads). With neither, it streams from the files through a
  shuffle buffer of ``shuffle_buffer`` records and is parsed every epoch.

  ``prepare`` (the trainer's id mapping, ``loop.BatchPreparer``) runs in the
  same parallel map as the parsing: a map of its own after the prefetch
  cost each batch another hop through tf.data and ran apart from the
  parallel parsing threads.
  """
  if label_key not in feature_spec:
    raise ValueError(f'The label {label_key!r} is not a transformed feature; '
                     f'they are {sorted(feature_spec)}.')
  records = tf.data.TFRecordDataset(files, compression_type='GZIP')
  if input_context is not None and input_context.num_input_pipelines > 1:
    records = records.shard(input_context.num_input_pipelines,
                            input_context.input_pipeline_id)
  parse = _parser(feature_spec, label_key, label_fn)
  finish = prepare or (lambda features, labels: (features, labels))
  if training and in_memory:
    return _in_memory_batches(records, parse, finish, batch_size, seed,
                              drop_remainder)
  if training and blocks_dir:
    if not drop_remainder:
      raise ValueError('Training batches from parsed blocks are always full: '
                       'drop_remainder must be True.')
    source = {'files': [_file_identity(path) for path in files],
              'shard': _shard(input_context)}
    return _block_batches(records, source, parse, finish, batch_size,
                          shuffle_buffer, seed, blocks_dir, max_examples)
  if training:
    records = records.shuffle(shuffle_buffer, seed=seed,
                              reshuffle_each_iteration=True).repeat()
  return records.batch(batch_size, drop_remainder=drop_remainder).map(
      lambda serialized: finish(*parse(serialized)),
      num_parallel_calls=tf.data.AUTOTUNE,
      deterministic=True).prefetch(tf.data.AUTOTUNE)


def _parser(feature_spec: Mapping[str, Any], label_key: str,
            label_fn: Optional[Callable[[tf.Tensor], tf.Tensor]]
           ) -> Callable[[tf.Tensor], Tuple[Features, tf.Tensor]]:
  """Serialized tf.Examples -> ``(features, labels)``."""
  spec = dict(feature_spec)

  def parse(serialized: tf.Tensor) -> Tuple[Features, tf.Tensor]:
    features = tf.io.parse_example(serialized, spec)
    labels = features.pop(label_key)
    if label_fn is not None:
      return features, label_fn(labels)
    return features, tf.reshape(tf.cast(labels, tf.float32), [-1, 1])

  return parse


# Records read per eager step when loading the training data into memory.
_READ_CHUNK = 65_536


def _shard(input_context: Optional[tf.distribute.InputContext]
          ) -> Tuple[int, int]:
  """(input pipelines, this one's id): the share of records this host reads."""
  if input_context is None:
    return (1, 0)
  return (input_context.num_input_pipelines, input_context.input_pipeline_id)


def _file_identity(path: str) -> Tuple[str, int, int]:
  """(path, size, modification time): a changed file is parsed again."""
  stat = tf.io.gfile.stat(path)
  return (path, stat.length, stat.mtime_nsec)


def _gather_rows(features: Features, labels: tf.Tensor,
                 rows: tf.Tensor) -> Tuple[Features, tf.Tensor]:
  """Examples ``rows`` of parsed ``features`` and ``labels``."""
  return ({key: tf.gather(value, rows) for key, value in features.items()},
          tf.gather(labels, rows))


def _in_memory_batches(records: tf.data.Dataset,
                       parse: Callable[[tf.Tensor], Tuple[Features, tf.Tensor]],
                       finish: Callable[[Features, tf.Tensor], Any],
                       batch_size: int, seed: Optional[int],
                       drop_remainder: bool) -> tf.data.Dataset:
  """Training batches gathered from all records, parsed once in memory;
  ``finish(features, labels)`` makes each batch.

  Every epoch is one seeded permutation of all the examples (a full
  shuffle; the streamed path shuffles within its buffer). A batch gathers
  its rows from the parsed features, so the files are read, decompressed and
  parsed once instead of every epoch. The iterator's checkpoint holds the
  permutation's state (8 bytes an example), not the data.
  """
  # Parsed chunk by chunk: the serialized records are never all in memory.
  parts = [parse(chunk) for chunk in records.batch(_READ_CHUNK)]
  if not parts:
    raise ValueError('The training files hold no examples.')
  features = {key: tf.concat([part[0][key] for part in parts], axis=0)
              for key in parts[0][0]}
  labels = tf.concat([part[1] for part in parts], axis=0)
  del parts
  count = int(tf.shape(labels)[0])

  def gather(rows: tf.Tensor) -> Any:
    return finish(*_gather_rows(features, labels, rows))

  return (tf.data.Dataset.range(count)
          .shuffle(count, seed=seed, reshuffle_each_iteration=True).repeat()
          .batch(batch_size, drop_remainder=drop_remainder)
          .map(gather, num_parallel_calls=tf.data.AUTOTUNE, deterministic=True)
          .prefetch(tf.data.AUTOTUNE))


def _block_batches(records: tf.data.Dataset, source: Dict[str, Any],
                   parse: Callable[[tf.Tensor], Tuple[Features, tf.Tensor]],
                   finish: Callable[[Features, tf.Tensor], Any],
                   batch_size: int, shuffle_buffer: int, seed: Optional[int],
                   blocks_dir: str,
                   max_examples: Optional[int]) -> tf.data.Dataset:
  """Training batches from the records parsed once into blocks on disk.

  The first ``max_examples`` records (all, when None), rounded up to whole
  blocks, are parsed, unless ``blocks_dir`` already holds them (the same
  ``source``, the records' files and shard, parsed the same way); the
  batches then come from ``parsed_blocks.shuffled_batches``.
  """
  rows = parsed_blocks.block_rows(shuffle_buffer, batch_size)
  blocks = records.batch(rows).map(parse, num_parallel_calls=tf.data.AUTOTUNE,
                                   deterministic=True)
  if max_examples is not None:
    blocks = blocks.take(math.ceil(max_examples / rows))
  # With the parsed features' names, types and shapes: another spec or
  # label function never reads these blocks.
  key = {**source, 'block_rows': rows, 'max_examples': max_examples,
         'element_spec': repr(blocks.element_spec)}
  manifest = parsed_blocks.write_blocks(blocks, blocks_dir, key)
  if manifest['num_examples'] < batch_size:
    raise ValueError(f'The training files hold {manifest["num_examples"]} '
                     f'examples, fewer than one batch of {batch_size}.')
  return parsed_blocks.shuffled_batches(
      blocks_dir, manifest['num_blocks'], blocks.element_spec, batch_size,
      seed, lambda block, batch_rows: _gather_rows(*block, batch_rows)
  ).map(finish, num_parallel_calls=tf.data.AUTOTUNE,
        deterministic=True).prefetch(tf.data.AUTOTUNE)
