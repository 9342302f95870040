"""The local movies pipeline end to end on a small sample of the real data."""

import json
import os

import pytest

from pipelines.movies import local_runner
from pipelines import summary
from pipelines.movies import features
from pipelines.movies import summary as movies_summary

_SAMPLE_ROWS = 150


@pytest.fixture(scope='module')
def first_run(tmp_path_factory):
  output_dir = str(tmp_path_factory.mktemp('pipeline'))
  args = local_runner.parse_args(
      ['--output-dir', output_dir, '--sample-rows', str(_SAMPLE_ROWS),
       '--train-steps', '20'])
  return args, local_runner.run(args)


@pytest.mark.slow
@pytest.mark.e2e
def test_summary_describes_the_run(first_run):
  _, result = first_run
  with open(result['summary_path']) as f:
    saved = json.load(f)
  assert saved['rows_per_split'].keys() == {'train', 'eval'}
  total = sum(saved['rows_per_split'].values()) + sum(
      saved['dropped_rows'].values())
  assert total == _SAMPLE_ROWS
  assert saved['rows_per_split']['train'] > saved['rows_per_split']['eval'] > 0
  assert set(saved['vocabulary_sizes']) == set(features.TABLE.vocabulary_members())
  assert saved['vocabulary_sizes']['genre'] > 5
  states = {c['name']: c['state'] for c in saved['components']}
  assert states == {'MoviesExampleGen': 'COMPLETE', 'StatisticsGen': 'COMPLETE',
                    'SchemaGen': 'COMPLETE', 'Transform': 'COMPLETE',
                    'EmbeddingStatsGen': 'COMPLETE',
                    'TpuEmbeddingTrainer': 'COMPLETE'}
  assert os.path.isdir(saved['artifacts']['Transform.transform_graph'])
  cast = 'cast_xf'
  length = saved['embedding_statistics']['max_sequence_length'][cast]
  # A multiple of 8, or capped at the longest row (then nothing is cut).
  assert length % 8 == 0 or (
      saved['embedding_statistics']['rows_truncated_share'][cast] == 0)
  assert saved['training']['steps'] == 20
  assert 0.0 <= saved['training']['eval_metrics']['auc'] <= 1.0
  assert os.path.isdir(saved['training']['serving_model'])
  text = summary.format_summary(saved, movies_summary.dropped_rows_lines)
  assert 'Examples per split' in text and 'crew' in text
  assert 'max_sequence_length' in text and 'eval accuracy' in text
  assert ', auc ' in text
  assert 'Rows dropped' in text


@pytest.mark.slow
@pytest.mark.e2e
def test_rerun_takes_every_component_from_cache(first_run):
  args, result = first_run
  rerun = local_runner.run(args)
  assert {c['state'] for c in rerun['components']} == {'CACHED'}
  assert rerun['rows_per_split'] == result['rows_per_split']
