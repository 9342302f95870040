"""Tests of the movies preprocessing_fn on a real TensorFlow Transform run."""

import numpy as np
import pytest
import tensorflow as tf

from pipelines.movies import features
from components.embedding import transform_ids

import trainer_fixture

_ROWS = [
    {features.CAST: [b'ann', b'bob', b'bob'], features.WRITER: [b'wes'],
     features.DIRECTOR: [b'wes', b'dee'], features.GENRE: [b'drama'],
     features.LANGUAGE: [], features.COUNTRY: [b'fr'],
     features.PRODUCTION: [], features.MPAA_RATING: [b'R'],
     features.YEAR: [2000.0], features.RUNTIME: [], features.LABEL: [1]},
    {features.CAST: [], features.WRITER: [b'wes'], features.DIRECTOR: [b'dee'],
     features.GENRE: [b'drama'], features.LANGUAGE: [b'fr'],
     features.COUNTRY: [b'fr'], features.PRODUCTION: [b'acme'],
     features.MPAA_RATING: [b'R'], features.YEAR: [2010.0],
     features.RUNTIME: [90.0], features.LABEL: [0]},
    {features.CAST: [b'ann', b'zed'], features.WRITER: [],
     features.DIRECTOR: [b'dee'], features.GENRE: [b'drama'],
     features.LANGUAGE: [b'fr'], features.COUNTRY: [b'fr'],
     features.PRODUCTION: [b'acme'], features.MPAA_RATING: [],
     features.YEAR: [], features.RUNTIME: [110.0], features.LABEL: [0]},
]


@pytest.fixture(scope='module')
def transformed(tmp_path_factory):
  """(transformed rows, TFTransformOutput) of one AnalyzeAndTransform run."""
  return trainer_fixture.analyze_and_transform(
      _ROWS, str(tmp_path_factory.mktemp('tft')))


def _ids(row, name):
  return list(row[f'{features.transformed_name(name)}$ragged_values'])


def test_every_vocabulary_is_named(transformed):
  _, output = transformed
  assert set(output.transformed_feature_spec()) >= {
      features.transformed_name(n) for n in features.CATEGORICAL_FEATURES}
  for name in features.CATEGORICAL_FEATURES:
    assert output.vocabulary_file_by_name(features.vocabulary_name(name))


def test_frequency_threshold_keeps_frequent_tokens(transformed):
  _, output = transformed
  # 'bob' and 'ann' appear twice; 'zed' once, below the default threshold 2.
  assert sorted(output.vocabulary_by_name(features.CAST)) == [b'ann', b'bob']


def test_directors_and_writers_share_one_vocabulary(transformed):
  _, output = transformed
  assert features.vocabulary_name(features.DIRECTOR) == features.CREW_VOCABULARY
  assert sorted(output.vocabulary_by_name(features.CREW_VOCABULARY)) == [
      b'dee', b'wes']


def test_ragged_ids_with_oov_bucket(transformed):
  rows, output = transformed
  vocabulary = [t.decode() for t in output.vocabulary_by_name(features.CAST)]
  oov_id = len(vocabulary)  # The single OOV bucket follows the vocabulary.
  assert _ids(rows[0], features.CAST) == [vocabulary.index('ann'),
                                          vocabulary.index('bob'),
                                          vocabulary.index('bob')]
  assert _ids(rows[1], features.CAST) == []
  assert _ids(rows[2], features.CAST) == [vocabulary.index('ann'), oov_id]
  assert all(i >= 0 for r in rows for i in _ids(r, features.CAST))


def test_missing_scalar_categorical_is_an_empty_row(transformed):
  rows, _ = transformed
  assert _ids(rows[0], features.PRODUCTION) == []
  assert len(_ids(rows[1], features.PRODUCTION)) == 1


def test_numeric_features_are_z_scored_with_missing_indicator(transformed):
  rows, _ = transformed
  years = [r[features.transformed_name(features.YEAR)] for r in rows]
  missing = [r[features.missing_indicator_name(features.YEAR)] for r in rows]
  np.testing.assert_allclose(years, [-1.0, 1.0, 0.0], atol=1e-5)
  assert missing == [0.0, 0.0, 1.0]


def test_label_passes_through(transformed):
  rows, _ = transformed
  assert [r[features.TRANSFORMED_LABEL] for r in rows] == [1, 0, 0]


def test_vocabulary_options_are_validated():
  options = transform_ids.VocabularyOptions.from_custom_config
  with pytest.raises(ValueError, match='num_oov_buckets must be an int >= 1'):
    options({'num_oov_buckets': 0})
  with pytest.raises(ValueError, match='frequency_threshold must be an int'):
    options({'frequency_threshold': '2'})
  assert options(None, frequency_threshold=3) == (
      transform_ids.VocabularyOptions(frequency_threshold=3))
  assert options({'num_oov_buckets': 4}).num_oov_buckets == 4
