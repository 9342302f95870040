"""Beam executor of MoviesExampleGen.

The query (the input split's pattern) runs in one DoFn, since SQLite is a single
local file; the rows are then reshuffled so that conversion and writing spread
over the workers (Dataflow or the multi-process DirectRunner). Rows without a
usable label are counted per reason, as Beam counters and in the Examples
artifact's custom properties, never dropped silently.
"""

import json
import os
from typing import Any, Dict, Iterator, List

import apache_beam as beam
import tensorflow as tf
from absl import logging
from tfx.components.example_gen import base_example_gen_executor
from tfx.types import artifact_utils
from tfx.types import standard_component_specs

from pipelines.movies.example_gen import movie_examples
from pipelines.movies.example_gen import movies_db

DATABASE_URI_KEY = 'database_uri'
_DROP_REPORT_DIR_KEY = '_drop_report_dir'
DROP_REPORT_FILE = 'dropped_rows.json'
_METRICS_NAMESPACE = 'MoviesExampleGen'


class _ReadRowsDoFn(beam.DoFn):
  """Runs the query against the database and emits rows as dicts."""

  def __init__(self, database_uri: str):
    self._database_uri = database_uri
    self._rows_read = beam.metrics.Metrics.counter(_METRICS_NAMESPACE,
                                                   'rows_read')

  def process(self, query: str) -> Iterator[Dict[str, Any]]:
    with movies_db.local_copy(self._database_uri) as path:
      for row in movies_db.read_rows(path, query):
        self._rows_read.inc()
        yield row


class _ToExampleDoFn(beam.DoFn):
  """Converts rows; dropped rows go to the 'dropped' output as their reason."""

  DROPPED = 'dropped'

  def __init__(self):
    self._examples = beam.metrics.Metrics.counter(_METRICS_NAMESPACE,
                                                  'examples_written')
    self._dropped = {
        reason: beam.metrics.Metrics.counter(_METRICS_NAMESPACE,
                                             f'dropped_{reason}')
        for reason in movie_examples.DROP_REASONS
    }

  def process(self, row: Dict[str, Any]):
    example, reason = movie_examples.row_to_example(row)
    if reason:
      self._dropped[reason].inc()
      yield beam.pvalue.TaggedOutput(self.DROPPED, reason)
    else:
      self._examples.inc()
      yield example


@beam.ptransform_fn
@beam.typehints.with_input_types(beam.Pipeline)
@beam.typehints.with_output_types(tf.train.Example)
def _MoviesToExample(  # pylint: disable=invalid-name
    pipeline: beam.Pipeline, exec_properties: Dict[str, Any],
    split_pattern: str) -> beam.pvalue.PCollection:
  """Reads the movies database with the split's query into tf.Examples."""
  database_uri = movies_db.resolve_database(
      exec_properties.get(DATABASE_URI_KEY))
  with movies_db.local_copy(database_uri) as path:
    movies_db.validate_database(path, split_pattern)
  logging.info('MoviesExampleGen reads %s', database_uri)
  converted = (
      pipeline
      | 'Query' >> beam.Create([split_pattern])
      | 'ReadRows' >> beam.ParDo(_ReadRowsDoFn(database_uri))
      | 'Reshuffle' >> beam.Reshuffle()
      | 'ToExample' >> beam.ParDo(_ToExampleDoFn()).with_outputs(
          _ToExampleDoFn.DROPPED, main='examples'))
  report_dir = exec_properties.get(_DROP_REPORT_DIR_KEY)
  if report_dir:
    _ = (
        converted[_ToExampleDoFn.DROPPED]
        | 'CountDropReasons' >> beam.combiners.Count.PerElement()
        | 'ToDict' >> beam.combiners.ToDict()
        | 'ToJson' >> beam.Map(lambda counts: json.dumps(counts, sort_keys=True))
        | 'WriteDropReport' >> beam.io.WriteToText(
            os.path.join(report_dir, DROP_REPORT_FILE),
            shard_name_template=''))
  return converted['examples']


class Executor(base_example_gen_executor.BaseExampleGenExecutor):
  """Generic ExampleGen executor over the movies database."""

  def GetInputSourceToExamplePTransform(self) -> beam.PTransform:
    return _MoviesToExample

  def Do(self, input_dict: Dict[str, List[Any]],
         output_dict: Dict[str, List[Any]],
         exec_properties: Dict[str, Any]) -> None:
    examples = artifact_utils.get_single_instance(
        output_dict[standard_component_specs.EXAMPLES_KEY])
    exec_properties = dict(exec_properties)
    exec_properties[_DROP_REPORT_DIR_KEY] = examples.uri
    super().Do(input_dict, output_dict, exec_properties)
    dropped = read_drop_report(examples.uri)
    for reason in movie_examples.DROP_REASONS:
      examples.set_int_custom_property(f'dropped_{reason}',
                                       dropped.get(reason, 0))
    logging.info('MoviesExampleGen dropped rows: %s', dropped)


def read_drop_report(examples_uri: str) -> Dict[str, int]:
  """Rows dropped per reason, as written by the executor (empty if none)."""
  path = os.path.join(examples_uri, DROP_REPORT_FILE)
  if not tf.io.gfile.exists(path):
    return {}
  with tf.io.gfile.GFile(path) as f:
    text = f.read().strip()
  return {str(k): int(v) for k, v in json.loads(text).items()} if text else {}
