"""The input pipeline shared by the CPU and TPU paths.

Reads Transform's gzipped tf.Example TFRecords, parses them with the
transformed feature spec (ragged ids for lists) and yields fixed-size batches:
the last partial batch is dropped so that every step has the same static
shape, as TPUs require. Small training data (``TrainingConfig.
in_memory_train_mib``) is parsed into memory once and each epoch is a full
seeded shuffle of it; larger data streams from the files through a shuffle
buffer. The training iterator is checkpointable, so a resumed run continues
from the same input position.
"""

from typing import Any, Callable, Dict, List, Mapping, Optional, Tuple

import tensorflow as tf
from tfx import types
from tfx.types import artifact_utils
from tfx.utils import io_utils

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
                 in_memory: bool = False) -> tf.data.Dataset:
  """Batches of ``(features, labels)``, or of ``prepare(features, labels)``.

  Training data is shuffled (seeded) and repeated forever; evaluation data is
  read once, in order. ``label_fn`` shapes the parsed label for the loss (the
  task's ``labels``); by default float32 ``[batch, 1]``. With an
  ``input_context`` (multi-host TPU input) this host reads only its share of
  the records, and ``batch_size`` is the per-replica batch.

  Training data is streamed from the files through a shuffle buffer of
  ``shuffle_buffer`` records, or with ``in_memory`` read and parsed once and
  drawn from memory (``_in_memory_batches``).

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
    return finish({key: tf.gather(value, rows)
                   for key, value in features.items()}, tf.gather(labels, rows))

  return (tf.data.Dataset.range(count)
          .shuffle(count, seed=seed, reshuffle_each_iteration=True).repeat()
          .batch(batch_size, drop_remainder=drop_remainder)
          .map(gather, num_parallel_calls=tf.data.AUTOTUNE, deterministic=True)
          .prefetch(tf.data.AUTOTUNE))
