"""Bad data, tried on purpose: what each bad input becomes.

One test (or a few) per case:
- NaN and infinite numbers in movies.db: missing values, counted.
- NaN and infinite numbers in Transform and in serving requests: exactly the
  missing value (indicator 1, z-score 0), never seen by the analyzers.
- A number that is no number ('nineteen'): fails naming the film, column and
  value, or (on_bad_value='drop') dropped, logged with the film id, counted.
- Bytes that are no tf.Example sent to serving: one InvalidArgumentError.
"""

import logging
import math
import os

import apache_beam as beam
import numpy as np
import pytest
import tensorflow as tf
from apache_beam.metrics.metric import MetricsFilter

from pipelines.movies import features
from pipelines.movies.example_gen import MoviesExampleGen
from pipelines.movies.example_gen import executor
from pipelines.movies.example_gen import movie_examples
from pipelines.movies.example_gen import movies_db

import movies_fixture
import trainer_fixture

_YEAR_XF = features.transformed_name(features.YEAR)
_YEAR_MISSING = features.missing_indicator_name(features.YEAR)
_RUNTIME_XF = features.transformed_name(features.RUNTIME)
_RUNTIME_MISSING = features.missing_indicator_name(features.RUNTIME)
_NON_FINITE = [math.nan, math.inf, -math.inf]


def _films(*replacements):
  """The fixture films with (film id, column, value) replacements."""
  films = movies_fixture.FILMS
  for film_id, column, value in replacements:
    films = movies_fixture.with_omdb_value(film_id, column, value, films)
  return films


def _db(tmp_path, *replacements):
  return movies_fixture.build_movies_db(str(tmp_path / 'movies.db'),
                                        _films(*replacements))


def _written(examples):
  """film id -> example, over both splits."""
  return {movies_fixture.feature_values(e, features.FILM_ID)[0]: e
          for split in ('train', 'eval')
          for e in movies_fixture.read_split(examples.uri, split)}


# --- NaN and infinity in movies.db ------------------------------------------

# Texts SQLite keeps as text, and a REAL infinity (SQLite stores a NaN
# parameter as NULL, which is an ordinary missing value).
_NON_FINITE_FILMS = ((1, 'Year', 'NaN'), (5, 'Year', '-inf'),
                     (2, 'Runtime', 'inf'), (6, 'Runtime', math.inf),
                     (3, 'Year', '1e39'))  # Beyond float32: infinite there.


@pytest.mark.parametrize('text', ['NaN', 'nan', 'inf', '-inf', 'Infinity',
                                  float('nan'), 1e39, b'inf'])
def test_non_finite_numbers_parse_as_missing(text):
  assert movie_examples.parse_number(text) is None


@pytest.mark.parametrize('value,number', [(' 1960 ', 1960.0), (1960, 1960.0),
                                          (b'95.5', 95.5), ('', None),
                                          (None, None)])
def test_numbers_and_missing_values_parse(value, number):
  assert movie_examples.parse_number(value) == number


def test_movies_db_non_finite_numbers_become_counted_missing_values(tmp_path):
  examples = movies_fixture.run_example_gen(
      _db(tmp_path, *_NON_FINITE_FILMS), str(tmp_path / 'out'))
  written = _written(examples)
  assert sorted(written) == [1, 2, 3, 5, 6]  # Film 4 has no label, as before.
  values = movies_fixture.feature_values
  for film_id in (1, 3, 5):
    assert values(written[film_id], features.YEAR) == [], film_id
  for film_id in (2, 6):
    assert values(written[film_id], features.RUNTIME) == [], film_id
  assert values(written[1], features.RUNTIME) == [127.0]  # Others are kept.
  assert examples.get_int_custom_property('missing_non_finite_year') == 3
  assert examples.get_int_custom_property('missing_non_finite_runtime') == 2
  assert executor.read_drop_report(examples.uri) == {'missing_label': 1}


def test_non_finite_numbers_are_beam_counters(tmp_path):
  rows = list(movies_db.read_rows(_db(tmp_path, *_NON_FINITE_FILMS)))
  pipeline = beam.Pipeline(runner='DirectRunner')
  _ = (pipeline | beam.Create(rows)
       | beam.ParDo(executor._ToExampleDoFn('fail')).with_outputs(  # pylint: disable=protected-access
           'dropped', 'non_finite', main='examples'))
  result = pipeline.run()
  result.wait_until_finish()

  def counter(name):
    found = result.metrics().query(MetricsFilter().with_name(name))['counters']
    return sum(c.committed for c in found)

  assert counter('missing_non_finite_year') == 3
  assert counter('missing_non_finite_runtime') == 2
  assert counter('examples_written') == 5


# --- NaN and infinity in Transform (training and serving) ---------------------

def _raw_row(year, runtime):
  """A raw movies row with only the numbers set (and the label)."""
  row = {name: [] for name in features.CATEGORICAL_FEATURES}
  row.update({features.YEAR: year, features.RUNTIME: runtime,
              features.LABEL: [1]})
  return row


_TRANSFORM_ROWS = [
    _raw_row([2000.0], [90.0]), _raw_row([2010.0], [110.0]),
    _raw_row([], []),  # The missing case the others must equal.
] + [_raw_row([value], [value]) for value in _NON_FINITE]


@pytest.fixture(scope='module')
def transform_run(tmp_path_factory):
  """(transformed rows, TFTransformOutput) of the rows above."""
  return trainer_fixture.analyze_and_transform(
      _TRANSFORM_ROWS, str(tmp_path_factory.mktemp('tft')))


def _numeric_outputs(row):
  return [float(row[key]) for key in
          (_YEAR_XF, _YEAR_MISSING, _RUNTIME_XF, _RUNTIME_MISSING)]


def test_transform_treats_non_finite_numbers_as_missing(transform_run):
  rows, _ = transform_run
  missing = _numeric_outputs(rows[2])
  assert missing == [0.0, 1.0, 0.0, 1.0]
  for value, row in zip(_NON_FINITE, rows[3:]):
    assert _numeric_outputs(row) == missing, value


def test_z_score_analyzers_see_only_finite_numbers(transform_run):
  rows, _ = transform_run
  # Mean 2005 and standard deviation 5 of the two finite years alone.
  np.testing.assert_allclose([rows[0][_YEAR_XF], rows[1][_YEAR_XF]],
                             [-1.0, 1.0], atol=1e-5)
  np.testing.assert_allclose([rows[0][_RUNTIME_XF], rows[1][_RUNTIME_XF]],
                             [-1.0, 1.0], atol=1e-5)


def test_serving_transform_layer_treats_non_finite_numbers_as_missing(
    transform_run):
  _, output = transform_run
  requests = [_raw_row([], [])] + [_raw_row([v], [v]) for v in _NON_FINITE]
  for request in requests:
    request.pop(features.LABEL)
  raw_spec = trainer_fixture.raw_feature_spec()
  raw_spec.pop(features.LABEL)
  parsed = tf.io.parse_example(
      [trainer_fixture.raw_example(r) for r in requests], raw_spec)
  transformed = output.transform_features_layer()(parsed)
  for key in (_YEAR_XF, _YEAR_MISSING, _RUNTIME_XF, _RUNTIME_MISSING):
    values = transformed[key].numpy()
    assert np.all(np.isfinite(values)), key
    assert np.all(values == values[0]), (key, values)


# --- A number that is no number -----------------------------------------------

def test_unparseable_number_fails_naming_film_column_and_value(tmp_path):
  out = tmp_path / 'out'
  with pytest.raises(movie_examples.BadValueError) as error:
    movies_fixture.run_example_gen(_db(tmp_path, (2, 'Year', 'nineteen')),
                                   str(out))
  message = str(error.value)
  assert message.startswith("Film 2: column 'year' holds 'nineteen', which "
                            'is not a number.')
  assert "on_bad_value='drop'" in message and '\n' not in message
  assert not os.path.exists(out / 'Split-train')  # Failed before writing.


def test_unparseable_number_of_an_unlabelled_film_is_only_a_label_drop(
    tmp_path):
  # Film 4 has no Meter: it is dropped for that reason, its Year unread.
  examples = movies_fixture.run_example_gen(
      _db(tmp_path, (4, 'Year', 'nineteen')), str(tmp_path / 'out'))
  assert executor.read_drop_report(examples.uri) == {'missing_label': 1}


def test_unparseable_number_is_dropped_and_counted_on_request(tmp_path):
  examples = movies_fixture.run_example_gen(
      _db(tmp_path, (2, 'Year', 'nineteen'), (6, 'Runtime', 'two hours')),
      str(tmp_path / 'out'), on_bad_value='drop')
  assert sorted(_written(examples)) == [1, 3, 5]
  assert examples.get_int_custom_property('dropped_unparseable_year') == 1
  assert examples.get_int_custom_property('dropped_unparseable_runtime') == 1
  assert examples.get_int_custom_property('dropped_missing_label') == 1


def test_dropped_film_is_logged_with_its_id(tmp_path, caplog):
  row = next(r for r in movies_db.read_rows(
      _db(tmp_path, (2, 'Year', 'nineteen'))) if r[features.FILM_ID] == 2)
  with caplog.at_level(logging.WARNING):
    conversion = movie_examples.convert_row(row, 'drop')
  assert conversion == (None, 'unparseable_year', ())
  assert "drops film 2: column 'year' holds 'nineteen'" in caplog.text


def test_on_bad_value_choices_are_checked_at_definition():
  with pytest.raises(ValueError, match=r"on_bad_value must be one of "
                     r"\['fail', 'drop'\], got 'skip'"):
    MoviesExampleGen(on_bad_value='skip')
  assert MoviesExampleGen().exec_properties['on_bad_value'] == 'fail'


# --- Serving: NaN and infinity, and bytes that are no tf.Example -------------

@pytest.fixture(scope='module')
def serving(tmp_path_factory, movies_transform):
  """A briefly trained movies serving model (raw tf.Examples in)."""
  root = str(tmp_path_factory.mktemp('serving'))
  examples_dir, transform_dir = movies_transform
  serving_dir = trainer_fixture.train_serving_model(examples_dir,
                                                    transform_dir, root)
  return tf.saved_model.load(serving_dir).signatures['serving_default']


def _request(year):
  row = trainer_fixture.synthetic_rows(1, seed=5)[0]
  row.pop(features.LABEL)
  row[features.YEAR] = year
  return trainer_fixture.raw_example(row)


def _probabilities(serving, requests):
  return serving(examples=tf.constant(requests))['probabilities'].numpy()


@pytest.mark.slow
def test_serving_non_finite_numbers_equal_missing(serving):
  probabilities = _probabilities(
      serving, [_request([])] + [_request([v]) for v in _NON_FINITE] +
      [_request([1950.0])]).reshape(-1)
  assert np.all(np.isfinite(probabilities))
  np.testing.assert_allclose(probabilities[1:4], probabilities[0], atol=1e-6)
  assert probabilities[4] != pytest.approx(probabilities[0], abs=1e-6)


@pytest.mark.slow
@pytest.mark.parametrize('seed', range(3))
def test_serving_refuses_bytes_that_are_no_example(serving, seed):
  garbage = np.random.default_rng(seed).bytes(64)
  good = _request([1990.0])
  with pytest.raises(tf.errors.InvalidArgumentError,
                     match=r'examples\[1\] is not a serialized tf.Example '
                     r'\(of 3 inputs\)'):
    _probabilities(serving, [good, garbage, good])
  assert _probabilities(serving, [good]).shape == (1, 1)  # Still serves.


@pytest.mark.slow
def test_serving_refuses_text_that_is_no_example(serving):
  with pytest.raises(tf.errors.InvalidArgumentError,
                     match=r'examples\[0\] is not a serialized tf.Example'):
    _probabilities(serving, [b'hello'])
