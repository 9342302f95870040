"""The input pipeline shared by the CPU and TPU paths.

Reads Transform's gzipped tf.Example TFRecords, parses them with the
transformed feature spec (ragged ids for lists) and yields fixed-size batches:
the last partial batch is dropped so that every step has the same static
shape, as TPUs require. The training iterator is checkpointable, so a resumed
run continues from the same input position.
"""

import os
from typing import Any, Dict, List, Mapping, Optional, Tuple

import tensorflow as tf

Features = Dict[str, Any]


def split_files(examples_uri: str, split: str) -> List[str]:
  """The TFRecord files of one split of an Examples artifact."""
  pattern = os.path.join(examples_uri, f'Split-{split}', '*')
  files = sorted(tf.io.gfile.glob(pattern))
  if not files:
    raise ValueError(f'No files match {pattern}: the examples have no '
                     f'{split!r} split.')
  return files


def dense_feature_keys(feature_spec: Mapping[str, Any], label_key: str,
                       embedded_keys: List[str]) -> List[str]:
  """Fixed-length numeric features the dense layers may read, sorted."""
  return sorted(
      key for key, spec in feature_spec.items()
      if isinstance(spec, tf.io.FixedLenFeature) and key != label_key and
      key not in embedded_keys and spec.dtype in (tf.float32, tf.int64))


def make_dataset(files: List[str],
                 feature_spec: Mapping[str, Any],
                 label_key: str,
                 batch_size: int,
                 training: bool,
                 shuffle_buffer: int = 10_000,
                 seed: Optional[int] = None,
                 drop_remainder: bool = True) -> tf.data.Dataset:
  """Batches of ``(features, labels)``.

  Training data is shuffled (seeded) and repeated forever; evaluation data is
  read once, in order.
  """
  if label_key not in feature_spec:
    raise ValueError(f'The label {label_key!r} is not a transformed feature; '
                     f'they are {sorted(feature_spec)}.')
  dataset = tf.data.TFRecordDataset(files, compression_type='GZIP')
  if training:
    dataset = dataset.shuffle(shuffle_buffer, seed=seed,
                              reshuffle_each_iteration=True).repeat()
  dataset = dataset.batch(batch_size, drop_remainder=drop_remainder)
  spec = dict(feature_spec)

  def parse(serialized: tf.Tensor) -> Tuple[Features, tf.Tensor]:
    features = tf.io.parse_example(serialized, spec)
    labels = features.pop(label_key)
    return features, tf.reshape(tf.cast(labels, tf.float32), [-1, 1])

  return dataset.map(parse, num_parallel_calls=tf.data.AUTOTUNE,
                     deterministic=True).prefetch(tf.data.AUTOTUNE)
