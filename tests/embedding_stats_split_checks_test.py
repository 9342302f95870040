"""Warnings from comparing splits with training: fire, stay quiet, thresholds."""

import json

import numpy as np
import pytest

from components.embedding_stats import accumulators
from components.embedding_stats import beam_stats
from components.embedding_stats import config
from components.embedding_stats import features as features_lib
from components.embedding_stats import report
from components.embedding_stats import split_checks
from components.embedding_stats import statistics

# Vocabulary of 10 tokens (ids 0-9) plus 2 OOV buckets (ids 10, 11).
USERS = features_lib.MeasuredFeature(
    name='user', column='user', encoding='varlen', kind='vocabulary',
    is_sequence=False, num_ids=12, vocabulary_size=10, num_oov_buckets=2)
HOUR = features_lib.MeasuredFeature(
    name='hour', column='hour', encoding='varlen', kind='identity',
    is_sequence=False, num_ids=24)
FEATURES = [USERS, HOUR]


def _split(user_ids, hour_ids):
  """SplitStatistics of one id per row."""
  accumulator = accumulators.DatasetAccumulator(
      {f.name: (f.num_ids, f.keeps_id_counts) for f in FEATURES})
  columns = {}
  for name, ids in (('user', user_ids), ('hour', hour_ids)):
    ids = np.asarray(ids, dtype=np.int64)
    columns[name] = (np.ones(ids.size, dtype=np.int64), ids)
  accumulator.add(len(user_ids), columns)
  return statistics.split_statistics(accumulator, FEATURES)


def _clean_splits():
  rng = np.random.default_rng(0)
  train = _split(rng.integers(0, 12, 2000), rng.integers(0, 24, 2000))
  evaluation = _split(rng.integers(0, 12, 500), rng.integers(0, 24, 500))
  return {'train': train, 'eval': evaluation}


def _trap_splits():
  """Train never reaches OOV bucket 11 nor ids 8, 9 (user) and 20-23 (hour).

  Eval: 100 rows; users 40 x id 11 (OOV, untrained bucket), 10 x id 8 (in
  the vocabulary, never in train), 50 x ids 0-4; hours 30 x ids 20-23.
  """
  train = _split(list(range(8)) * 50 + [10] * 4, list(range(20)) * 20 + [0] * 4)
  users = [11] * 40 + [8] * 10 + list(range(5)) * 10
  hours = [20, 21, 22] * 10 + list(range(10)) * 7
  return {'train': train, 'eval': _split(users, hours)}


def _by_check(warnings):
  return {(w.check, w.feature): w for w in warnings}


def test_warnings_fire_on_crafted_data():
  splits = _trap_splits()
  found = _by_check(split_checks.split_warnings(
      splits, FEATURES, 'train', config.SplitChecks()))
  train_oov = 4 / 404
  skew = found[('oov_rate_skew', 'user')]
  assert skew.value == pytest.approx(0.40 - train_oov)
  assert (skew.train_split, skew.split) == ('train', 'eval')
  assert skew.threshold == 0.05
  untrained = found[('untrained_oov_buckets', 'user')]
  assert untrained.value == pytest.approx(0.40)
  assert 'frequency_threshold' in untrained.message
  assert 'mean of the trained rows' in untrained.message
  assert "oov_rows='zero'" in untrained.message
  assert found[('unseen_ids', 'user')].value == pytest.approx(0.10)
  assert found[('unseen_ids', 'hour')].value == pytest.approx(0.30)
  assert ('oov_rate_skew', 'hour') not in found  # Identity: no OOV.
  assert len(found) == 4


def test_clean_data_stays_quiet():
  assert split_checks.split_warnings(
      _clean_splits(), FEATURES, 'train', config.SplitChecks()) == []


def test_thresholds_are_respected():
  splits = _trap_splits()
  just_above = config.SplitChecks(oov_rate_skew=0.40, untrained_oov_share=0.40,
                                  unseen_id_share=0.30)
  assert split_checks.split_warnings(splits, FEATURES, 'train',
                                     just_above) == []
  just_below = config.SplitChecks(oov_rate_skew=0.38, untrained_oov_share=0.39,
                                  unseen_id_share=0.09)
  found = _by_check(split_checks.split_warnings(splits, FEATURES, 'train',
                                                just_below))
  assert set(found) == {('oov_rate_skew', 'user'),
                        ('untrained_oov_buckets', 'user'),
                        ('unseen_ids', 'user'), ('unseen_ids', 'hour')}
  assert found[('unseen_ids', 'hour')].threshold == 0.09
  with pytest.raises(ValueError, match='unseen_id_share'):
    config.SplitChecks(unseen_id_share=1.5)


def test_training_split_is_a_config_value():
  splits = _trap_splits()
  renamed = {'fit': splits['train'], 'holdout': splits['eval']}
  policy = config.TruncationPolicy(reference_split='fit')
  result = beam_stats.build_result(renamed, FEATURES, policy)
  assert {w.train_split for w in result.warnings} == {'fit'}
  assert {w.split for w in result.warnings} == {'holdout'}
  # An explicit train_split overrides the policy's reference split.
  checks = config.SplitChecks(train_split='holdout')
  assert checks.training_split(policy) == 'holdout'
  result = beam_stats.build_result(renamed, FEATURES, policy, checks=checks)
  assert {w.split for w in result.warnings} <= {'fit'}
  with pytest.raises(ValueError, match="'train'"):
    split_checks.split_warnings(renamed, FEATURES, 'train',
                                config.SplitChecks())


def test_warnings_in_json_report_and_summary(tmp_path):
  result = beam_stats.build_result(
      _trap_splits(), FEATURES, config.TruncationPolicy(),
      checks=config.SplitChecks(unseen_id_share=0.2))
  assert {w.check for w in result.warnings} == {
      'oov_rate_skew', 'untrained_oov_buckets', 'unseen_ids'}
  loaded = statistics.EmbeddingStatisticsResult.from_dict(
      json.loads(result.to_json()))
  assert loaded.warnings == result.warnings
  assert loaded.checks.unseen_id_share == 0.2
  assert 'id_counts' not in json.loads(result.to_json())['splits']['train']
  summary = loaded.to_summary()
  assert summary['warnings'] == [w.message for w in result.warnings]
  report.write_report(loaded, str(tmp_path))
  text = (tmp_path / report.REPORT_FILE).read_text()
  assert '## Warnings' in text
  for warning in result.warnings:
    assert warning.message in text


def test_old_files_without_checks_still_load():
  result = beam_stats.build_result(_clean_splits(), FEATURES,
                                   config.TruncationPolicy())
  values = json.loads(result.to_json())
  for key in ('checks', 'warnings', 'sparsecore'):
    del values[key]
  loaded = statistics.EmbeddingStatisticsResult.from_dict(values)
  assert loaded.warnings == [] and loaded.sparsecore is None
  assert loaded.checks == config.SplitChecks()
