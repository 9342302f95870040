"""Beam executor of MoviesExampleGen.

The query (the input split's pattern) runs in one DoFn, since SQLite is a single
local file; the rows are then reshuffled so that conversion and writing spread
over the workers (Dataflow or the multi-process DirectRunner). Rows without a
usable label, or (with ``on_bad_value='drop'``) with a number that is no
number, are counted per reason; NaN and infinite numbers are written as
missing values and counted per feature. The counts are Beam counters and the
Examples artifact's custom properties (``dropped_<reason>``,
``missing_non_finite_<feature>``): nothing is dropped or changed silently.
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
ON_BAD_VALUE_KEY = 'on_bad_value'
_DROP_REPORT_DIR_KEY = '_drop_report_dir'
DROP_REPORT_FILE = 'dropped_rows.json'
NON_FINITE_REPORT_FILE = 'missing_non_finite.json'
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
  """Converts rows.

  Dropped rows go to the 'dropped' output as their reason; every NaN or
  infinite number written as missing goes to the 'non_finite' output as its
  counter name.
  """

  DROPPED = 'dropped'
  NON_FINITE = 'non_finite'

  def __init__(self, on_bad_value: str):
    self._on_bad_value = on_bad_value
    self._examples = beam.metrics.Metrics.counter(_METRICS_NAMESPACE,
                                                  'examples_written')
    self._dropped = {
        reason: beam.metrics.Metrics.counter(_METRICS_NAMESPACE,
                                             f'dropped_{reason}')
        for reason in movie_examples.DROP_REASONS
    }
    self._non_finite = {
        name: beam.metrics.Metrics.counter(_METRICS_NAMESPACE, name)
        for name in movie_examples.NON_FINITE_COUNTS
    }

  def process(self, row: Dict[str, Any]):
    conversion = movie_examples.convert_row(row, self._on_bad_value)
    for feature in conversion.non_finite:
      name = movie_examples.non_finite_count_name(feature)
      self._non_finite[name].inc()
      yield beam.pvalue.TaggedOutput(self.NON_FINITE, name)
    if conversion.drop_reason:
      self._dropped[conversion.drop_reason].inc()
      yield beam.pvalue.TaggedOutput(self.DROPPED, conversion.drop_reason)
    else:
      self._examples.inc()
      yield conversion.example


@beam.ptransform_fn
def _WriteCounts(  # pylint: disable=invalid-name
    keys: beam.pvalue.PCollection, path: str) -> beam.pvalue.PDone:
  """Writes {key: occurrences} of ``keys`` as one JSON object to ``path``."""
  return (
      keys
      | 'CountPerKey' >> beam.combiners.Count.PerElement()
      | 'ToDict' >> beam.combiners.ToDict()
      | 'ToJson' >> beam.Map(lambda counts: json.dumps(counts, sort_keys=True))
      | 'Write' >> beam.io.WriteToText(path, shard_name_template=''))


def on_bad_value_option(exec_properties: Dict[str, Any]) -> str:
  """The validated ``on_bad_value`` option ('fail' when unset)."""
  value = exec_properties.get(ON_BAD_VALUE_KEY) or movie_examples.ON_BAD_VALUE_FAIL
  if value not in movie_examples.ON_BAD_VALUE_CHOICES:
    raise ValueError(
        f'MoviesExampleGen: on_bad_value must be one of '
        f'{list(movie_examples.ON_BAD_VALUE_CHOICES)}, got {value!r}.')
  return value


def check_numbers(path: str, query: str) -> None:
  """Fails before any Beam work on the first kept film with a bad number.

  Raises:
    movie_examples.BadValueError: naming the film, the column and the value.
  """
  for row in movies_db.read_rows(path, movies_db.numbers_query(query)):
    movie_examples.check_numbers(row)


@beam.ptransform_fn
@beam.typehints.with_input_types(beam.Pipeline)
@beam.typehints.with_output_types(tf.train.Example)
def _MoviesToExample(  # pylint: disable=invalid-name
    pipeline: beam.Pipeline, exec_properties: Dict[str, Any],
    split_pattern: str) -> beam.pvalue.PCollection:
  """Reads the movies database with the split's query into tf.Examples."""
  on_bad_value = on_bad_value_option(exec_properties)
  database_uri = movies_db.resolve_database(
      exec_properties.get(DATABASE_URI_KEY))
  with movies_db.local_copy(database_uri) as path:
    movies_db.validate_database(path, split_pattern)
    if on_bad_value == movie_examples.ON_BAD_VALUE_FAIL:
      check_numbers(path, split_pattern)
  logging.info('MoviesExampleGen reads %s', database_uri)
  converted = (
      pipeline
      | 'Query' >> beam.Create([split_pattern])
      | 'ReadRows' >> beam.ParDo(_ReadRowsDoFn(database_uri))
      | 'Reshuffle' >> beam.Reshuffle()
      | 'ToExample' >> beam.ParDo(_ToExampleDoFn(on_bad_value)).with_outputs(
          _ToExampleDoFn.DROPPED, _ToExampleDoFn.NON_FINITE, main='examples'))
  report_dir = exec_properties.get(_DROP_REPORT_DIR_KEY)
  if report_dir:
    _ = (converted[_ToExampleDoFn.DROPPED]
         | 'WriteDropReport' >> _WriteCounts(
             os.path.join(report_dir, DROP_REPORT_FILE)))
    _ = (converted[_ToExampleDoFn.NON_FINITE]
         | 'WriteNonFiniteReport' >> _WriteCounts(
             os.path.join(report_dir, NON_FINITE_REPORT_FILE)))
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
    non_finite = read_non_finite_report(examples.uri)
    for name in movie_examples.NON_FINITE_COUNTS:
      examples.set_int_custom_property(name, non_finite.get(name, 0))
    logging.info('MoviesExampleGen dropped rows: %s; NaN or infinite numbers '
                 'written as missing: %s', dropped, non_finite)


def read_drop_report(examples_uri: str) -> Dict[str, int]:
  """Rows dropped per reason, as written by the executor (empty if none)."""
  return _read_counts(os.path.join(examples_uri, DROP_REPORT_FILE))


def read_non_finite_report(examples_uri: str) -> Dict[str, int]:
  """NaN or infinite numbers written as missing, per counter name."""
  return _read_counts(os.path.join(examples_uri, NON_FINITE_REPORT_FILE))


def _read_counts(path: str) -> Dict[str, int]:
  """The {key: count} JSON of ``_WriteCounts`` (empty if absent)."""
  if not tf.io.gfile.exists(path):
    return {}
  with tf.io.gfile.GFile(path) as f:
    text = f.read().strip()
  return {str(k): int(v) for k, v in json.loads(text).items()} if text else {}
