"""Tests of the statistics benchmark's data: the demo's examples, repeated."""

import os
import sys

import pytest
import tensorflow as tf
from tfx.components.example_gen import base_example_gen_executor

from benchmarks import embedding_stats_bench
from benchmarks import movies_transformed
from components.embedding_stats import features as features_lib
from pipelines.movies.example_gen import component
from pipelines.movies.example_gen import movie_examples
from pipelines.movies.example_gen import movies_db

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import movies_fixture  # pylint: disable=g-import-not-at-top,wrong-import-position


def _as_dict(example):
  return {key: (feature.WhichOneof('kind'),
                list(getattr(feature, feature.WhichOneof('kind')).value))
          for key, feature in example.features.feature.items()}


def _example_gen_training_examples(db_path):
  """What MoviesExampleGen writes to Split-train, by its own functions."""
  split_config = component.default_output_config().split_config
  examples = []
  for row in movies_db.read_rows(db_path):
    example = movie_examples.convert_row(row).example
    if example is not None and base_example_gen_executor._PartitionFn(  # pylint: disable=protected-access
        example, 2, [4, 5], split_config) == 0:
      examples.append(example)
  return examples


def test_raw_training_records_are_example_gens_training_split(tmp_path):
  films = movies_fixture.FILMS + [
      ((100 + i,) + omdb[1:], tomatoes)
      for i, (omdb, tomatoes) in enumerate(movies_fixture.FILMS * 3)]
  db_path = movies_fixture.build_movies_db(str(tmp_path / 'movies.db'), films)
  records, read = movies_transformed.raw_training_records(
      database_path=db_path)
  expected = _example_gen_training_examples(db_path)
  assert read == len(films)
  assert 0 < len(expected) < len(films) - 4  # Some eval, some dropped films.
  assert [_as_dict(tf.train.Example.FromString(r)) for r in records] == [
      _as_dict(e) for e in expected]


def test_sample_rows_reads_the_first_films(tmp_path):
  db_path = movies_fixture.build_movies_db(str(tmp_path / 'movies.db'))
  _, read = movies_transformed.raw_training_records(3, database_path=db_path)
  assert read == 3


def test_run_fails_when_examples_are_not_all_counted(tmp_path):
  feature = features_lib.MeasuredFeature(
      name='seq', column='seq', encoding='varlen', kind='identity',
      is_sequence=True, num_ids=10)
  path = str(tmp_path / 'examples.gz')
  with tf.io.TFRecordWriter(path, options='GZIP') as writer:
    for ids in ([1, 2], [], [3]):
      example = tf.train.Example()
      example.features.feature['seq'].int64_list.value.extend(ids)
      writer.write(example.SerializeToString())
  result = embedding_stats_bench.time_system(
      embedding_stats_bench.SYSTEM_EMBEDDING_STATS, path, 3, [feature],
      reps=1, warmup=0)
  assert result['num_examples'] == 3
  with pytest.raises(AssertionError, match='3 examples counted, 4 written'):
    embedding_stats_bench.time_system(
        embedding_stats_bench.SYSTEM_EMBEDDING_STATS, path, 4, [feature],
        reps=1, warmup=0)


def test_features_round_trip_through_json(tmp_path):
  measured = [features_lib.MeasuredFeature(
      name='cast_xf', column='cast_xf$ragged_values', encoding='ragged',
      kind='vocabulary', is_sequence=True, num_ids=11, vocabulary_size=10,
      num_oov_buckets=1, table='cast')]
  path = str(tmp_path / 'features.json')
  movies_transformed.write_features(path, measured)
  assert movies_transformed.read_features(path) == measured
