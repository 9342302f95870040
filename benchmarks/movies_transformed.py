"""The demo's transformed training examples, for the statistics benchmark.

The films of the bundled movies database (bokeh-sampledata's movies.db) go
through what the demo pipeline runs before EmbeddingStatsGen:
MoviesExampleGen's row conversion (`movie_examples.row_values`) and its
train/eval split (TFX's hash of the film id over the demo's 4:1 buckets), then
the demo `preprocessing_fn` under tf.Transform's Beam API, fed and encoded
through RecordBatches as the Transform component does. The result is the
training split's transformed tf.Examples, the Transform output and the
features EmbeddingStatsGen measures in the demo (read off the demo's embedding
spec).

Not the pipeline's components themselves, whose runs on the DirectRunner take
minutes: the examples are encoded by tfx-bsl's C++ encoder rather than one
proto object per row, and Transform runs in its TF1 compatibility mode, which
takes half the CPU time of its TF2 mode here. The ids are the same in both
modes; a z-scored float may differ in its last bit.
"""

import itertools
import json
import os
import sys
from typing import Any, Callable, Dict, List, Mapping, Optional, Sequence, Tuple

import apache_beam as beam
import pyarrow as pa
import tensorflow as tf
import tensorflow_transform as tft
import tensorflow_transform.beam as tft_beam
from tensorflow_transform.tf_metadata import schema_utils
from tfx_bsl.coders import example_coder
from tfx_bsl.tfxio import tf_example_record
from tfx.components.example_gen import base_example_gen_executor
from tfx.proto import example_gen_pb2

from components.embedding_stats import features as features_lib
from components.embedding_stats import from_spec
from pipelines.movies import embedding_spec
from pipelines.movies import features
from pipelines.movies import preprocessing
from pipelines.movies.example_gen import component
from pipelines.movies.example_gen import movie_examples
from pipelines.movies.example_gen import movies_db

TRAIN_SPLIT = 'train'
FEATURES_FILE = 'measured_features.json'


def _trainer_fixture() -> Any:
  """`tests/trainer_fixture.py`, whose raw feature spec the demo's is."""
  tests_dir = os.path.join(
      os.path.dirname(os.path.dirname(os.path.abspath(__file__))), 'tests')
  if tests_dir not in sys.path:
    sys.path.insert(0, tests_dir)
  import trainer_fixture  # pylint: disable=g-import-not-at-top
  return trainer_fixture


def _is_training_film(split_config: example_gen_pb2.SplitConfig
                      ) -> Callable[[int], bool]:
  """Whether ExampleGen writes a film's example to the training split."""
  names = [split.name for split in split_config.splits]
  buckets = list(itertools.accumulate(s.hash_buckets
                                      for s in split_config.splits))
  train_index = names.index(TRAIN_SPLIT)
  # TFX's own partition function (private), so the split is ExampleGen's; it
  # hashes only the partition feature, here the film id.
  partition = base_example_gen_executor._PartitionFn  # pylint: disable=protected-access

  def is_training(film_id: int) -> bool:
    key = tf.train.Example()
    feature = key.features.feature[split_config.partition_feature_name]
    feature.int64_list.value.append(film_id)
    return partition(key, len(buckets), buckets, split_config) == train_index

  return is_training


def _raw_record_batch(rows: Sequence[Mapping[str, List[Any]]]
                      ) -> pa.RecordBatch:
  """`movie_examples.row_values` of many rows as one RecordBatch."""
  types = {features.FILM_ID: pa.int64(), features.LABEL: pa.int64()}
  types.update({name: pa.float32() for name in features.NUMERIC_FEATURES})
  names = sorted(rows[0]) if rows else []
  return pa.RecordBatch.from_arrays(
      [pa.array([row[name] for row in rows],
                type=pa.large_list(types.get(name, pa.large_binary())))
       for name in names], names)


def raw_training_records(sample_rows: Optional[int] = None,
                         database_path: Optional[str] = None
                         ) -> Tuple[List[bytes], int]:
  """(raw tf.Examples of the training split, films read) of the database.

  The examples are those MoviesExampleGen writes (`row_values` is its
  conversion), encoded by tfx-bsl's C++ encoder, not one proto object per row.
  `sample_rows` reads only the first rows (by film id), for smoke runs;
  `database_path` reads another database than the bundled one.
  """
  query = movies_db.DEFAULT_QUERY
  if sample_rows:
    query = movies_db.sample_query(sample_rows, query)
  is_training = _is_training_film(
      component.default_output_config().split_config)
  kept, films = [], 0
  for row in movies_db.read_rows(movies_db.resolve_database(database_path),
                                 query):
    films += 1
    values = movie_examples.row_values(row).values
    if values is not None and is_training(values[features.FILM_ID][0]):
      kept.append(values)
  encoder = example_coder.RecordBatchToExamplesEncoder()
  return encoder.encode(_raw_record_batch(kept)), films


def measured_features(transform_output: Any
                      ) -> List[features_lib.MeasuredFeature]:
  """The features the demo's EmbeddingStatsGen measures, resolved."""
  spec = embedding_spec.create_embedding_spec(train_steps=1)
  return features_lib.resolve_features(
      from_spec.features_from_embedding_spec(spec), transform_output)


def _encode(batch: Tuple[pa.RecordBatch, Any], metadata: Any) -> List[bytes]:
  """A transformed RecordBatch as serialized tf.Examples."""
  return example_coder.RecordBatchToExamplesEncoder(metadata.schema).encode(
      batch[0])


def _analyze_and_transform(raw_records: Sequence[bytes], root: str,
                           output_path: str) -> Any:
  """Runs the demo preprocessing_fn; writes the transformed records.

  Raw records are decoded by TFXIO to RecordBatches and the output is encoded
  from RecordBatches, as the TFX Transform component does. Returns the
  `tft.TFTransformOutput`.
  """
  raw_schema = schema_utils.schema_from_feature_spec(
      _trainer_fixture().raw_feature_spec())
  raw_tfxio = tf_example_record.TFExampleBeamRecord(
      physical_format='inmem', telemetry_descriptors=['benchmark'],
      schema=raw_schema)
  transform_dir = os.path.join(root, 'transform_fn')
  with beam.Pipeline() as pipeline:
    # TF1 mode: see the module docstring.
    with tft_beam.Context(temp_dir=os.path.join(root, 'tmp'),
                          force_tf_compat_v1=True):
      raw_data = (pipeline | 'CreateRaw' >> beam.Create(raw_records)
                  | 'DecodeRaw' >> raw_tfxio.BeamSource())
      (transformed, metadata), transform_fn = (
          (raw_data, raw_tfxio.TensorAdapterConfig())
          | tft_beam.AnalyzeAndTransformDataset(
              preprocessing.preprocessing_fn, output_record_batches=True))
      _ = transform_fn | tft_beam.WriteTransformFn(transform_dir)
      _ = (transformed
           | 'Encode' >> beam.FlatMap(
               _encode, beam.pvalue.AsSingleton(metadata.deferred_metadata))
           | 'Write' >> beam.io.WriteToTFRecord(
               output_path, shard_name_template=''))
  return tft.TFTransformOutput(transform_dir)


def transform_training_split(root: str, sample_rows: Optional[int] = None
                             ) -> Dict[str, Any]:
  """Writes the transformed training examples' records and features.

  Returns a dict with `records` (serialized transformed tf.Examples),
  `features` (the measured `MeasuredFeature`s), `features_path` (where they
  are written as JSON) and `films` (database rows read).
  """
  raw_records, films = raw_training_records(sample_rows)
  path = os.path.join(root, 'transformed_train.tfrecord')
  output = _analyze_and_transform(raw_records, root, path)
  records = [r.numpy() for r in tf.data.TFRecordDataset(path)]
  measured = measured_features(output)
  features_path = os.path.join(root, FEATURES_FILE)
  write_features(features_path, measured)
  return {'records': records, 'features': measured,
          'features_path': features_path, 'films': films}


def write_features(path: str,
                   measured: Sequence[features_lib.MeasuredFeature]) -> None:
  with open(path, 'w', encoding='utf-8') as f:
    json.dump([m.to_dict() for m in measured], f, indent=1)


def read_features(path: str) -> List[features_lib.MeasuredFeature]:
  with open(path, encoding='utf-8') as f:
    return [features_lib.MeasuredFeature(**d) for d in json.load(f)]
