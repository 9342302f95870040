"""Tests of MoviesExampleGen: row rules, database validation, the Beam executor."""

import sqlite3

import pytest
from tfx.proto import example_gen_pb2
from tfx.utils import proto_utils

from pipelines.movies.example_gen import MoviesExampleGen
from pipelines.movies.example_gen import executor
from pipelines.movies.example_gen import movie_examples
from pipelines.movies.example_gen import movies_db
from pipelines.movies import features

import movies_fixture


@pytest.fixture
def db_path(tmp_path):
  return movies_fixture.build_movies_db(str(tmp_path / 'movies.db'))


_values = movies_fixture.feature_values


class TestSplitList:

  def test_empty_and_null_are_empty_lists(self):
    assert movie_examples.split_list('') == []
    assert movie_examples.split_list(None) == []
    assert movie_examples.split_list(' , ') == []

  def test_suffix_fragments_merge_into_previous_name(self):
    assert movie_examples.split_list(
        'Dean Martin, Sammy Davis, Jr., Jim Smith, Sr., Peter Lawford') == [
            'Dean Martin', 'Sammy Davis, Jr.', 'Jim Smith, Sr.',
            'Peter Lawford'
        ]

  def test_leading_suffix_is_kept_as_a_name(self):
    assert movie_examples.split_list('Jr., Frank') == ['Jr.', 'Frank']

  def test_unicode_kept_exactly(self):
    assert movie_examples.split_list('黒澤 明, Amélie Poulain') == [
        '黒澤 明', 'Amélie Poulain'
    ]


class TestLabel:

  @pytest.mark.parametrize('meter,label', [(60, 1), (59, 0), (100, 1), (0, 0)])
  def test_threshold(self, meter, label):
    assert movie_examples.label_from_meter(meter) == (label, None)

  @pytest.mark.parametrize('meter,reason', [
      (None, movie_examples.DROP_MISSING_LABEL),
      (101, movie_examples.DROP_INVALID_LABEL),
      ('n/a', movie_examples.DROP_INVALID_LABEL),
  ])
  def test_unusable_scores_are_dropped_with_a_reason(self, meter, reason):
    assert movie_examples.label_from_meter(meter) == (None, reason)


class TestRowToExample:

  def _rows(self, db_path):
    return {r[features.FILM_ID]: r for r in movies_db.read_rows(db_path)}

  def test_lists_scalars_and_label(self, db_path):
    example, reason = movie_examples.row_to_example(self._rows(db_path)[1])
    assert reason is None
    assert _values(example, features.CAST) == [
        'Dean Martin', 'Frank Sinatra', 'Sammy Davis, Jr.', 'Peter Lawford'
    ]
    assert _values(example, features.WRITER) == ['Harry Brown',
                                                 'Charles Lederer']
    assert _values(example, features.PRODUCTION) == ['Warner Bros.']
    assert _values(example, features.MPAA_RATING) == ['PG']
    assert _values(example, features.YEAR) == [1960.0]
    assert _values(example, features.LABEL) == [0]
    assert _values(example, features.FILM_ID) == [1]

  def test_missing_values_stay_missing(self, db_path):
    example, _ = movie_examples.row_to_example(self._rows(db_path)[3])
    for name in (features.CAST, features.WRITER, features.GENRE,
                 features.PRODUCTION, features.MPAA_RATING, features.YEAR,
                 features.RUNTIME):
      assert _values(example, name) == [], name
    assert _values(example, features.LABEL) == [1]

  def test_unicode_names(self, db_path):
    example, _ = movie_examples.row_to_example(self._rows(db_path)[5])
    assert _values(example, features.DIRECTOR) == ['黒澤 明']
    assert _values(example, features.CAST) == ['三船 敏郎', '志村 喬']

  def test_missing_meter_is_dropped(self, db_path):
    example, reason = movie_examples.row_to_example(self._rows(db_path)[4])
    assert example is None
    assert reason == movie_examples.DROP_MISSING_LABEL

  def test_score_columns_are_never_features(self, db_path):
    example, _ = movie_examples.row_to_example(self._rows(db_path)[2])
    keys = set(example.features.feature)
    assert keys == set(features.CATEGORICAL_FEATURES + features.NUMERIC_FEATURES
                       + [features.LABEL, features.FILM_ID])


class TestDatabaseValidation:

  def test_fixture_is_valid(self, db_path):
    movies_db.validate_database(db_path)  # Raises on any problem.
    rows = list(movies_db.read_rows(db_path))
    assert len(rows) == len(movies_fixture.FILMS)

  def test_missing_file(self, tmp_path):
    path = str(tmp_path / 'nope.db')
    with pytest.raises(movies_db.MoviesDatabaseError, match='does not exist'):
      movies_db.validate_database(path)

  def test_corrupt_file(self, tmp_path):
    path = tmp_path / 'corrupt.db'
    path.write_bytes(b'this is not sqlite' * 100)
    with pytest.raises(movies_db.MoviesDatabaseError,
                       match='corrupt.db: not a readable SQLite'):
      movies_db.validate_database(str(path))

  def test_missing_table(self, tmp_path):
    path = movies_fixture.build_movies_db(str(tmp_path / 'm.db'),
                                          with_tomatoes=False)
    with pytest.raises(movies_db.MoviesDatabaseError,
                       match="table 'tomatoes' is missing"):
      movies_db.validate_database(path)

  def test_missing_column(self, db_path):
    connection = sqlite3.connect(db_path)
    connection.execute('ALTER TABLE omdb DROP COLUMN Writer')
    connection.commit()
    connection.close()
    with pytest.raises(movies_db.MoviesDatabaseError,
                       match=r"'omdb' lacks the columns \['Writer'\]"):
      movies_db.validate_database(db_path)

  def test_empty_result(self, db_path):
    query = movies_db.DEFAULT_QUERY.replace('ORDER BY', 'WHERE o.ID < 0 ORDER BY')
    with pytest.raises(movies_db.MoviesDatabaseError, match='no rows'):
      movies_db.validate_database(db_path, query)

  def test_query_without_required_columns(self, db_path):
    with pytest.raises(movies_db.MoviesDatabaseError,
                       match='does not return the columns'):
      movies_db.validate_database(db_path, 'SELECT ID AS film_id FROM omdb')

  def test_wrong_checksum_names_the_file(self, db_path):
    with pytest.raises(movies_db.MoviesDatabaseError, match='sha256'):
      movies_db.verify_bundled_database(db_path)

  def test_bundled_database_is_the_pinned_file(self):
    path = movies_db.bundled_database_path()
    movies_db.verify_bundled_database(path)
    movies_db.validate_database(path)

  def test_sample_query_limits_rows(self, db_path):
    rows = list(movies_db.read_rows(db_path, movies_db.sample_query(2)))
    assert [r[features.FILM_ID] for r in rows] == [1, 2]


_run_executor = movies_fixture.run_example_gen
_read_split = movies_fixture.read_split


class TestExecutor:

  def test_writes_examples_and_counts_drops(self, db_path, tmp_path):
    examples = _run_executor(db_path, str(tmp_path / 'out'))
    train = _read_split(examples.uri, 'train')
    evaluation = _read_split(examples.uri, 'eval')
    ids = sorted(_values(e, features.FILM_ID)[0] for e in train + evaluation)
    assert ids == [1, 2, 3, 5, 6]  # Film 4 has no Meter.
    assert examples.get_int_custom_property('dropped_missing_label') == 1
    assert examples.get_int_custom_property('dropped_invalid_label') == 0
    assert executor.read_drop_report(examples.uri) == {'missing_label': 1}

  def test_split_is_deterministic_by_film_id(self, db_path, tmp_path):
    first = _run_executor(db_path, str(tmp_path / 'a'))
    second = _run_executor(db_path, str(tmp_path / 'b'))
    for split in ('train', 'eval'):
      ids_a = sorted(_values(e, features.FILM_ID)[0]
                     for e in _read_split(first.uri, split))
      ids_b = sorted(_values(e, features.FILM_ID)[0]
                     for e in _read_split(second.uri, split))
      assert ids_a == ids_b

  def test_bad_database_fails_before_writing(self, tmp_path):
    with pytest.raises(movies_db.MoviesDatabaseError, match='does not exist'):
      _run_executor(str(tmp_path / 'missing.db'), str(tmp_path / 'out'))


def test_component_records_database_uri_and_split():
  example_gen = MoviesExampleGen(database_uri='gs://bucket/movies.db')
  assert example_gen.exec_properties['database_uri'] == 'gs://bucket/movies.db'
  output_config = proto_utils.json_to_proto(
      example_gen.exec_properties['output_config'], example_gen_pb2.Output())
  assert output_config.split_config.partition_feature_name == features.FILM_ID
  assert [s.hash_buckets for s in output_config.split_config.splits] == [4, 1]
