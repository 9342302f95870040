"""MoviesExampleGen: a query-based ExampleGen over the movies SQLite database."""

from typing import Optional

from tfx import types
from tfx.components.example_gen import driver
from tfx.components.example_gen import utils as example_gen_utils
from tfx.dsl.components.base import base_beam_component
from tfx.dsl.components.base import executor_spec
from tfx.proto import example_gen_pb2
from tfx.types import component_spec
from tfx.types import standard_artifacts
from tfx.types import standard_component_specs

from pipelines.movies.example_gen import executor
from pipelines.movies.example_gen import movie_examples
from pipelines.movies.example_gen import movies_db
from pipelines.movies import features


class MoviesExampleGenSpec(standard_component_specs.QueryBasedExampleGenSpec):
  """QueryBasedExampleGen's spec plus the database location."""

  PARAMETERS = {
      **standard_component_specs.QueryBasedExampleGenSpec.PARAMETERS,
      executor.DATABASE_URI_KEY:
          component_spec.ExecutionParameter(type=str, optional=True),
      executor.ON_BAD_VALUE_KEY:
          component_spec.ExecutionParameter(type=str, optional=True),
  }


def default_output_config(train_buckets: int = 4,
                          eval_buckets: int = 1) -> example_gen_pb2.Output:
  """Train/eval split by a hash of the film ID, so reruns give the same split."""
  return example_gen_pb2.Output(
      split_config=example_gen_pb2.SplitConfig(
          splits=[
              example_gen_pb2.SplitConfig.Split(
                  name='train', hash_buckets=train_buckets),
              example_gen_pb2.SplitConfig.Split(
                  name='eval', hash_buckets=eval_buckets),
          ],
          partition_feature_name=features.FILM_ID))


class MoviesExampleGen(base_beam_component.BaseBeamComponent):
  """Reads films, their cast and crew and their Tomatometer into tf.Examples.

  A query-based ExampleGen (like BigQueryExampleGen): the SQL query is the
  input split's pattern. By default it reads ``movies.db`` of the installed
  bokeh-sampledata 2026.1 package (checksum verified); ``database_uri`` names
  another SQLite file, local or on a file system TensorFlow reads (gs://). The
  query must return the feature columns named in ``pipelines.movies.features``
  and the score column ``meter``.

  Numbers: NULL, blank, NaN and infinite values (the texts 'NaN', 'inf',
  '-inf', or beyond float32) are written as missing values, which the
  preprocessing turns into its missing indicator, and counted per feature
  (Beam counter and the Examples' custom property
  ``missing_non_finite_<feature>``). A value that is no number at all (a Year
  of 'nineteen') is handled per ``on_bad_value``:

  - ``'fail'`` (the default): the component fails before converting any row,
    with one line naming the film, the column and the value. The default,
    because such a value means the data or the query is not what the pipeline
    was written for (a shifted column, a unit in the text); dropping those
    films quietly could remove a large, biased part of the data.
  - ``'drop'``: the film is dropped, its id logged, and counted as
    ``dropped_unparseable_<column>``; for data known to hold a few bad rows.
  """

  SPEC_CLASS = MoviesExampleGenSpec
  EXECUTOR_SPEC = executor_spec.BeamExecutorSpec(executor.Executor)
  DRIVER_CLASS = driver.QueryBasedDriver

  def __init__(self,
               query: str = movies_db.DEFAULT_QUERY,
               database_uri: Optional[str] = None,
               output_config: Optional[example_gen_pb2.Output] = None,
               on_bad_value: str = movie_examples.ON_BAD_VALUE_FAIL):
    executor.on_bad_value_option({executor.ON_BAD_VALUE_KEY: on_bad_value})
    spec = MoviesExampleGenSpec(
        input_config=example_gen_utils.make_default_input_config(query),
        output_config=output_config or default_output_config(),
        output_data_format=example_gen_pb2.FORMAT_TF_EXAMPLE,
        output_file_format=example_gen_pb2.FORMAT_TFRECORDS_GZIP,
        database_uri=database_uri,
        on_bad_value=on_bad_value,
        examples=types.Channel(type=standard_artifacts.Examples))
    super().__init__(spec=spec)
