"""Serialized `tf.train.Example`s -> Arrow RecordBatches -> NumPy arrays.

Decoding uses tfx-bsl's C++ decoder restricted to the measured columns, so
other features are skipped, and lengths and ids are then read from the Arrow
list offsets and flat values without per-example Python work.
"""

from typing import Dict, List, Sequence, Tuple

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
from tensorflow_metadata.proto.v0 import schema_pb2
from tfx_bsl.coders import example_coder

from components.embedding_stats import features as features_lib


def decoder_schema(columns: Sequence[str]) -> schema_pb2.Schema:
  """A TFMD schema that makes the decoder read only `columns`, as int64."""
  schema = schema_pb2.Schema()
  for column in sorted(set(columns)):
    schema.feature.add(name=column, type=schema_pb2.INT)
  return schema


def make_decoder(columns: Sequence[str]
                 ) -> example_coder.ExamplesToRecordBatchDecoder:
  """A picklable decoder of serialized examples into RecordBatches."""
  return example_coder.ExamplesToRecordBatchDecoder(
      decoder_schema(columns).SerializeToString())


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
