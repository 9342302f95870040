"""EmbeddingStatsGen: construction, artifact type, and a real Transform run."""

import collections
import json
import os
import re

import apache_beam as beam
import numpy as np
import pytest
import tensorflow as tf
import tensorflow_transform as tft
import tensorflow_transform.beam as tft_beam
from tensorflow_transform.tf_metadata import dataset_metadata
from tensorflow_transform.tf_metadata import schema_utils
from tfx import types
from tfx.types import artifact_utils
from tfx.types import standard_artifacts

from components.embedding_stats import artifact
from components.embedding_stats import component
from components.embedding_stats import config
from components.embedding_stats import executor
from components.embedding_stats import features as features_lib
from components.embedding_stats import report
from components.embedding_stats import component_spec
from components.embedding_stats import statistics

FEATURES = [
    config.FeatureToMeasure('movie_ids', vocabulary_name='movies_vocab',
                            is_sequence=True),
    config.FeatureToMeasure('genre_ids', vocabulary_name='genres_vocab'),
    config.FeatureToMeasure('hour_ids', kind='identity', num_buckets=24,
                            is_sequence=True),
]
POLICY = config.TruncationPolicy(coverage=0.9, multiple_of=4, max_length=12)
TOPOLOGY = config.SparseCoreTopology(chips=2, sparsecores_per_chip=2,
                                     global_batch_size=8)
CHECKS = config.SplitChecks(oov_rate_skew=0.0)
_MOVIE_LENGTHS = (0, 1, 2, 3, 5, 9, 2, 3)


def _raw_rows(num_rows, offset):
  """Synthetic rows; eval rows (offset > 0) also hold unseen tokens."""
  rows = []
  for i in range(offset, offset + num_rows):
    length = 14 if i % 23 == 5 else _MOVIE_LENGTHS[i % len(_MOVIE_LENGTHS)]
    movies = [f'm{(i * 7 + j * j) % 10}' for j in range(length)]
    if offset and i % 3 == 0:
      movies.append('unseen_movie')
    genres = [f'g{(i + j) % 5}' for j in range(i % 3)]
    hours = [str((i * 5 + j) % 24) for j in range(i % 4)]
    if i % 11 == 7:
      hours.append('24')  # Out of range for num_buckets=24.
    rows.append({'movies': ' '.join(movies), 'genres': ' '.join(genres),
                 'hours': ' '.join(hours)})
  return rows


def _preprocessing_fn(inputs):
  movies = tf.strings.split(inputs['movies'])  # Ragged output.
  genres = tf.strings.split(inputs['genres']).to_sparse()  # Sparse output.
  hours = tf.strings.to_number(tf.strings.split(inputs['hours']), tf.int64)
  return {
      'movie_ids': tft.compute_and_apply_vocabulary(
          movies, top_k=6, num_oov_buckets=1, vocab_filename='movies_vocab'),
      'genre_ids': tft.compute_and_apply_vocabulary(
          genres, num_oov_buckets=2, vocab_filename='genres_vocab'),
      'hour_ids': hours,
  }


def _write_transform_output(root, splits):
  """Runs tf.Transform like the Transform component: analyze train only."""
  raw_metadata = dataset_metadata.DatasetMetadata(
      schema_utils.schema_from_feature_spec(
          {k: tf.io.FixedLenFeature([], tf.string)
           for k in ('movies', 'genres', 'hours')}))
  examples_uri = os.path.join(root, 'transformed_examples')
  graph_uri = os.path.join(root, 'transform_graph')
  with beam.Pipeline() as pipeline:
    with tft_beam.Context(temp_dir=os.path.join(root, 'tft_tmp')):
      train = pipeline | 'CreateTrain' >> beam.Create(splits['train'])
      transform_fn = ((train, raw_metadata)
                      | tft_beam.AnalyzeDataset(_preprocessing_fn))
      for name, rows in splits.items():
        data = pipeline | f'Create[{name}]' >> beam.Create(rows)
        transformed, metadata = (
            ((data, raw_metadata), transform_fn)
            | f'Transform[{name}]' >> tft_beam.TransformDataset())
        coder = tft.coders.ExampleProtoCoder(metadata.schema)
        _ = (transformed
             | f'Encode[{name}]' >> beam.Map(coder.encode)
             | f'Write[{name}]' >> beam.io.WriteToTFRecord(
                 os.path.join(examples_uri, f'Split-{name}',
                              'transformed_examples'),
                 file_name_suffix='.gz'))
      _ = transform_fn | tft_beam.WriteTransformFn(graph_uri)
  return examples_uri, graph_uri


@pytest.fixture(scope='module')
def transform_run(tmp_path_factory):
  root = str(tmp_path_factory.mktemp('embedding_stats_e2e'))
  splits = {'train': _raw_rows(48, 0), 'eval': _raw_rows(12, 1000)}
  examples_uri, graph_uri = _write_transform_output(root, splits)

  examples = standard_artifacts.Examples()
  examples.uri = examples_uri
  examples.split_names = artifact_utils.encode_split_names(['train', 'eval'])
  graph = standard_artifacts.TransformGraph()
  graph.uri = graph_uri
  output = artifact.EmbeddingStatistics()
  output.uri = os.path.join(root, 'statistics')
  context = executor.Executor.Context(
      beam_pipeline_args=['--direct_num_workers=1'],
      tmp_dir=os.path.join(root, 'tmp'))
  executor.Executor(context).Do(
      {component_spec.TRANSFORMED_EXAMPLES_KEY: [examples],
       component_spec.TRANSFORM_GRAPH_KEY: [graph]},
      {component_spec.STATISTICS_KEY: [output]},
      {component_spec.FEATURES_KEY: config.features_to_json(FEATURES),
       component_spec.POLICY_KEY: config.policy_to_json(POLICY),
       component_spec.SPARSECORE_TOPOLOGY_KEY: config.config_to_json(TOPOLOGY),
       component_spec.CHECKS_KEY: config.config_to_json(CHECKS)})
  return splits, tft.TFTransformOutput(graph_uri), output


def _tokens(rows, key):
  return [row[key].split() for row in rows]


def _expected_length(lengths):
  covering = int(np.quantile(lengths, POLICY.coverage, method='inverted_cdf'))
  rounded = -(-covering // POLICY.multiple_of) * POLICY.multiple_of
  rounded = min(rounded, max(int(np.max(lengths)), 1))  # The longest row.
  return min(max(rounded, POLICY.min_length), POLICY.max_length)


@pytest.mark.slow
def test_oov_buckets_are_read_from_the_transform_output(transform_run):
  _, tft_output, output = transform_run
  result = statistics.load_embedding_statistics(output.uri)
  resolved = {f.name: f for f in result.features}
  assert resolved['movie_ids'].vocabulary_size == 6  # top_k=6.
  assert resolved['movie_ids'].num_oov_buckets == 1
  assert resolved['movie_ids'].column == 'movie_ids$ragged_values'
  assert resolved['genre_ids'].vocabulary_size == 5
  assert resolved['genre_ids'].num_oov_buckets == 2
  assert resolved['genre_ids'].encoding == features_lib.ENCODING_VARLEN
  with pytest.raises(ValueError, match='no integer domain'):
    features_lib.resolve_feature(
        config.FeatureToMeasure('hour_ids', vocabulary_name='movies_vocab'),
        tft_output)


@pytest.mark.slow
def test_statistics_match_the_raw_data(transform_run):
  splits, tft_output, output = transform_run
  result = statistics.load_embedding_statistics(output)
  assert result.schema_version == statistics.SCHEMA_VERSION
  assert output.splits == ['eval', 'train']
  vocab = set(tft_output.vocabulary_by_name('movies_vocab'))
  for name, rows in splits.items():
    split = result.splits[name]
    assert split.num_examples == len(rows)
    movies = _tokens(rows, 'movies')
    lengths = [len(m) for m in movies]
    movie_stats = split.features['movie_ids']
    assert dict(movie_stats.lengths.histogram) == dict(
        collections.Counter(lengths))
    assert movie_stats.lengths.num_empty_rows == lengths.count(0)
    assert movie_stats.lengths.mean == pytest.approx(np.mean(lengths))
    for key, q in statistics.QUANTILES:
      assert movie_stats.lengths.quantiles[key] == int(
          np.quantile(lengths, q, method='inverted_cdf'))
    flat = [t for m in movies for t in m]
    oov = sum(t.encode() not in vocab for t in flat)
    assert movie_stats.vocabulary.num_ids == len(flat)
    assert movie_stats.vocabulary.oov_ids == oov
    assert movie_stats.vocabulary.oov_rate == pytest.approx(oov / len(flat))
    assert movie_stats.vocabulary.out_of_range_ids == 0
    hours = [int(h) for hs in _tokens(rows, 'hours') for h in hs]
    hour_stats = split.features['hour_ids'].identity
    assert hour_stats.out_of_range_ids == hours.count(24) > 0
    assert (hour_stats.min_id, hour_stats.max_id) == (min(hours), max(hours))
    genre_lengths = [len(g) for g in _tokens(rows, 'genres')]
    assert dict(split.features['genre_ids'].lengths.histogram) == dict(
        collections.Counter(genre_lengths))
  assert result.splits['eval'].features['movie_ids'].vocabulary.oov_ids > 0


@pytest.mark.slow
def test_recommendations(transform_run):
  splits, _, output = transform_run
  result = statistics.load_embedding_statistics(output.uri)
  train_lengths = np.array([len(m) for m in _tokens(splits['train'], 'movies')])
  expected = _expected_length(train_lengths)
  lengths = result.recommended_max_sequence_lengths()
  assert set(lengths) == {'movie_ids', 'hour_ids'}  # Bags get none.
  assert lengths['movie_ids'] == expected
  rec = result.recommendations['movie_ids']
  assert rec.rows_truncated_share == pytest.approx(
      np.mean(train_lengths > expected))
  assert rec.ids_truncated_share == pytest.approx(
      np.maximum(train_lengths - expected, 0).sum() / train_lengths.sum())
  summary = result.to_summary()
  assert summary['max_sequence_length'] == lengths
  assert summary['rows_truncated_share']['movie_ids'] == (
      rec.rows_truncated_share)
  json.dumps(summary)


@pytest.mark.slow
def test_json_report_and_plots_are_written(transform_run):
  _, _, output = transform_run
  files = set(os.listdir(output.uri))
  assert {statistics.STATISTICS_FILE, report.REPORT_FILE,
          'lengths_movie_ids.png', 'lengths_hour_ids.png'} <= files
  assert 'lengths_genre_ids.png' not in files
  with open(os.path.join(output.uri, 'lengths_movie_ids.png'), 'rb') as f:
    assert f.read(8) == b'\x89PNG\r\n\x1a\n'
  with open(os.path.join(output.uri, statistics.STATISTICS_FILE)) as f:
    raw = json.load(f)
  assert raw['schema_version'] == 1
  assert set(raw['recommendations']['movie_ids']) >= {
      'max_sequence_length', 'rows_truncated_share', 'ids_truncated_share'}
  assert set(raw['splits']) == {'train', 'eval'}
  with open(os.path.join(output.uri, report.REPORT_FILE)) as f:
    text = f.read()
  assert '](lengths_movie_ids.png)' in text
  assert 'hour_ids`: ' in text and 'ids out of range' in text


@pytest.mark.slow
def test_sparsecore_limits_and_warnings_from_the_executor(transform_run):
  _, _, output = transform_run
  result = statistics.load_embedding_statistics(output.uri)
  assert result.sparsecore.topology == TOPOLOGY
  assert result.splits['train'].sparsecore.num_batches == 48 // 8
  assert result.splits['eval'].sparsecore.num_batches == 12 // 8
  limits = result.recommended_sparsecore_limits()
  assert set(limits) == {'movie_ids', 'genre_ids', 'hour_ids'}
  for table, values in limits.items():
    observed = result.sparsecore.tables[table]
    assert values['max_ids_per_partition'] >= (
        observed.observed_max_ids_per_partition)
    assert values['max_ids_per_partition'] % TOPOLOGY.multiple_of == 0
  assert result.checks == CHECKS
  movie = {n: result.splits[n].features['movie_ids'].vocabulary.oov_rate
           for n in ('train', 'eval')}
  skews = [w for w in result.warnings
           if (w.check, w.feature) == ('oov_rate_skew', 'movie_ids')]
  assert len(skews) == int(movie['eval'] > movie['train'])
  summary = result.to_summary()
  assert summary['sparsecore']['limits'] == limits
  assert summary['warnings'] == [w.message for w in result.warnings]
  json.dumps(summary)
  with open(os.path.join(output.uri, report.REPORT_FILE)) as f:
    text = f.read()
  assert '## SparseCore limits' in text and '## Warnings' in text


def test_component_construction():
  stats_gen = component.EmbeddingStatsGen(
      transformed_examples=types.Channel(type=standard_artifacts.Examples),
      transform_graph=types.Channel(type=standard_artifacts.TransformGraph),
      features=FEATURES, policy=POLICY, splits=['train', 'eval'],
      sparsecore_topology={'chips': 2, 'sparsecores_per_chip': 2,
                           'global_batch_size': 8},
      checks=CHECKS)
  assert config.topology_from_json(
      stats_gen.exec_properties[component_spec.SPARSECORE_TOPOLOGY_KEY]) == TOPOLOGY
  assert config.checks_from_json(
      stats_gen.exec_properties[component_spec.CHECKS_KEY]) == CHECKS
  assert config.features_from_json(
      stats_gen.exec_properties[component_spec.FEATURES_KEY]) == FEATURES
  assert config.policy_from_json(
      stats_gen.exec_properties[component_spec.POLICY_KEY]) == POLICY
  assert json.loads(stats_gen.exec_properties[component_spec.SPLITS_KEY]) == [
      'eval', 'train']
  assert stats_gen.outputs[component_spec.STATISTICS_KEY].type is (
      artifact.EmbeddingStatistics)


def test_component_rejects_bad_features_early():
  with pytest.raises(ValueError):
    component.EmbeddingStatsGen(
        transformed_examples=types.Channel(type=standard_artifacts.Examples),
        transform_graph=types.Channel(type=standard_artifacts.TransformGraph),
        features='[{"name": "x", "kind": "identity"}]')


def test_component_rejects_bad_topology_and_checks_early():
  channels = dict(
      transformed_examples=types.Channel(type=standard_artifacts.Examples),
      transform_graph=types.Channel(type=standard_artifacts.TransformGraph),
      features=FEATURES)
  with pytest.raises(ValueError, match='divide into 3 chips'):
    component.EmbeddingStatsGen(
        sparsecore_topology={'chips': 3, 'sparsecores_per_chip': 2,
                             'global_batch_size': 8}, **channels)
  with pytest.raises(ValueError, match='oov_rate_skew'):
    component.EmbeddingStatsGen(checks='{"oov_rate_skew": -1}', **channels)
  stats_gen = component.EmbeddingStatsGen(**channels)
  assert stats_gen.exec_properties[component_spec.SPARSECORE_TOPOLOGY_KEY] is None


def test_type_name_is_accepted_by_kubeflow_v2():
  assert re.fullmatch(r'^[a-z][a-z0-9-_]{2,20}[.][A-Z][a-zA-Z0-9-_]{2,49}$',
                      artifact.EmbeddingStatistics.TYPE_NAME)
  compiler_utils = pytest.importorskip(
      'tfx.orchestration.kubeflow.v2.compiler_utils')
  schema = compiler_utils.get_artifact_schema(artifact.EmbeddingStatistics)
  assert artifact.TYPE_NAME in schema


def test_split_selection():
  policy = config.TruncationPolicy()
  assert executor._select_splits(['train', 'eval'], None, policy) == [
      'eval', 'train']
  assert executor._select_splits(['train', 'eval'], '["train"]', policy) == [
      'train']
  with pytest.raises(ValueError, match='not in the examples'):
    executor._select_splits(['train'], '["train", "test"]', policy)
  with pytest.raises(ValueError, match='reference split'):
    executor._select_splits(['train', 'eval'], '["eval"]', policy)
  with pytest.raises(ValueError, match="training split 'fit'"):
    executor._select_splits(['train', 'eval'], None, policy,
                            config.SplitChecks(train_split='fit'))


def test_package_exports_resolve_lazily():
  import components.embedding_stats as embedding_stats  # pylint: disable=g-import-not-at-top
  assert embedding_stats.EmbeddingStatsGen is component.EmbeddingStatsGen
  assert embedding_stats.load_embedding_statistics is (
      statistics.load_embedding_statistics)
  for name in embedding_stats.__all__:
    assert getattr(embedding_stats, name) is not None
  with pytest.raises(AttributeError):
    embedding_stats.not_an_export  # pylint: disable=pointless-statement
