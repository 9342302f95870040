"""Serialized `tf.train.Example`s -> Arrow RecordBatches -> NumPy arrays.

Files are read and parsed in batches by TensorFlow's C++ TFRecord reader and
example parser (`read_record_batches`; `decode_examples` for serialized
examples already in memory), restricted to the measured columns, so that no
Python work is done per example and other features are skipped. Lengths and
ids are then read from the Arrow list offsets and flat values.
"""

from typing import Dict, Iterator, List, Sequence, Tuple

from apache_beam.io import filesystem
import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
import tensorflow as tf

from components.embedding_stats import features as features_lib

# Beam's compression types (detected from the file name, as Beam's TFRecord
# source does) -> TensorFlow's names of the same formats.
_TF_COMPRESSION = {
    filesystem.CompressionTypes.UNCOMPRESSED: '',
    filesystem.CompressionTypes.GZIP: 'GZIP',
    filesystem.CompressionTypes.DEFLATE: 'ZLIB',
}


def tf_compression(path: str) -> str:
  """TensorFlow's compression name for a TFRecord file, from its suffix."""
  compression = filesystem.CompressionTypes.detect_compression_type(path)
  if compression not in _TF_COMPRESSION:
    raise ValueError(
        f'{path}: {compression} compressed TFRecords cannot be read; write '
        'the examples uncompressed, gzipped (.gz) or deflated (.deflate).')
  return _TF_COMPRESSION[compression]


def _parse_batch(columns: Sequence[str]):
  """A function parsing a batch of serialized examples into ragged columns."""
  spec = {column: tf.io.RaggedFeature(tf.int64, row_splits_dtype=tf.int64)
          for column in sorted(set(columns))}
  return lambda serialized: tf.io.parse_example(serialized, spec)


def _as_record_batch(parsed: Dict[str, tf.RaggedTensor]) -> pa.RecordBatch:
  """Parsed ragged columns as a RecordBatch of int64 large lists."""
  names = sorted(parsed)
  return pa.RecordBatch.from_arrays(
      [pa.LargeListArray.from_arrays(parsed[n].row_splits.numpy(),
                                     parsed[n].values.numpy())
       for n in names], names)


def decode_examples(serialized: Sequence[bytes],
                    columns: Sequence[str]) -> pa.RecordBatch:
  """Serialized tf.Examples as one RecordBatch of `columns`, as files are
  read (`read_record_batches`)."""
  return _as_record_batch(_parse_batch(columns)(tf.constant(list(serialized),
                                                            tf.string)))


def read_record_batches(path: str, columns: Sequence[str],
                        batch_size: int) -> Iterator[pa.RecordBatch]:
  """Reads a TFRecord file of tf.Examples as RecordBatches of `columns`.

  Each column is an int64 large list; a row without the feature is empty.
  Reading, decompression, checksums and parsing run in TensorFlow's C++ code,
  one call per batch of `batch_size` examples.
  """
  records = tf.data.TFRecordDataset(path,
                                    compression_type=tf_compression(path))
  dataset = records.batch(batch_size).map(_parse_batch(columns))
  for parsed in dataset:
    yield _as_record_batch(parsed)


def list_lengths_and_values(array: pa.Array) -> Tuple[np.ndarray, np.ndarray]:
  """Row lengths and flat values of a list array; missing rows are empty."""
  if pa.types.is_null(array.type):
    return np.zeros(len(array), dtype=np.int64), np.zeros(0, dtype=np.int64)
  lengths = pc.fill_null(pc.list_value_length(array), 0)
  lengths = np.asarray(lengths.to_numpy(zero_copy_only=False), dtype=np.int64)
  values = array.flatten()
  values = np.asarray(values.to_numpy(zero_copy_only=False), dtype=np.int64)
  return lengths, values


def record_batch_columns(
    record_batch: pa.RecordBatch,
    features: Sequence[features_lib.MeasuredFeature]
) -> Dict[str, Tuple[np.ndarray, np.ndarray]]:
  """Feature name -> (row lengths, flat ids) for one RecordBatch.

  A column absent from the batch (no example had the key) means empty rows.
  """
  names: List[str] = record_batch.schema.names
  result = {}
  for feature in features:
    if feature.column in names:
      array = record_batch.column(names.index(feature.column))
      result[feature.name] = list_lengths_and_values(array)
    else:
      result[feature.name] = (np.zeros(record_batch.num_rows, dtype=np.int64),
                              np.zeros(0, dtype=np.int64))
  return result
