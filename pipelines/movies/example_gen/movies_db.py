"""Locating, validating and reading the movies SQLite database.

The demo data is ``movies.db`` from the ``bokeh-sampledata==2026.1`` wheel
(Wikidata-derived, CC0-1.0): table ``omdb`` holds the films, ``tomatoes`` the
Rotten Tomatoes scores, joined on ``ID``. This module knows SQL and files;
turning rows into ``tf.train.Example``s is ``movie_examples``' job.
"""

import contextlib
import hashlib
import importlib.util
import os
import shutil
import sqlite3
import tempfile
from typing import Any, Dict, Iterator, List, Optional

from pipelines.movies import features

# sha256 of bokeh_sampledata/_data/movies.db in bokeh-sampledata 2026.1. Earlier
# releases ship a different, non-commercially licensed file.
BUNDLED_DATABASE_SHA256 = (
    '1d9c6a02e488d0354b2309e16130c58820a91ac2ce417e814c5964f9579a65ac')
_BUNDLED_PACKAGE = 'bokeh_sampledata'
_BUNDLED_RELATIVE_PATH = os.path.join('_data', 'movies.db')

# Output column of the query that carries the raw score the label comes from.
METER_COLUMN = 'meter'

# The tables and columns the default query reads, checked before reading.
REQUIRED_COLUMNS: Dict[str, List[str]] = {
    'omdb': ['ID', 'Cast', 'Writer', 'Director', 'Genre', 'Language',
             'Country', 'Rating', 'Year', 'Runtime'],
    'tomatoes': ['ID', 'Meter', 'Production'],
}

# One row per film; every alias is a feature name from `features`. The label's
# source (Meter) is selected for the label only; Fresh, Rotten, Reviews and
# tomatoes.Rating derive from the same score and are never selected.
DEFAULT_QUERY = f"""
SELECT
  o.ID AS {features.FILM_ID},
  o."Cast" AS {features.CAST},
  o.Writer AS {features.WRITER},
  o.Director AS {features.DIRECTOR},
  o.Genre AS {features.GENRE},
  o.Language AS {features.LANGUAGE},
  o.Country AS {features.COUNTRY},
  t.Production AS {features.PRODUCTION},
  o.Rating AS {features.MPAA_RATING},
  o.Year AS {features.YEAR},
  o.Runtime AS {features.RUNTIME},
  t.Meter AS {METER_COLUMN}
FROM omdb AS o
LEFT JOIN tomatoes AS t ON o.ID = t.ID
ORDER BY o.ID
""".strip()

REQUIRED_OUTPUT_COLUMNS: List[str] = (
    [features.FILM_ID, METER_COLUMN] + features.CATEGORICAL_FEATURES +
    features.NUMERIC_FEATURES)


class MoviesDatabaseError(ValueError):
  """The movies database is missing, corrupt or lacks what the query needs."""


def bundled_database_path() -> str:
  """Path of movies.db inside the installed bokeh-sampledata package.

  The package is located without importing it: importing bokeh_sampledata
  pulls in bokeh, which the pipeline does not need.

  Raises:
    MoviesDatabaseError: the package is not installed.
  """
  spec = importlib.util.find_spec(_BUNDLED_PACKAGE)
  if spec is None or not spec.submodule_search_locations:
    raise MoviesDatabaseError(
        'The demo data package is not installed: run `pip install --no-deps '
        'bokeh-sampledata==2026.1` (the Makefile does), or pass '
        'database_uri= to MoviesExampleGen.')
  package_dir = list(spec.submodule_search_locations)[0]
  return os.path.join(package_dir, _BUNDLED_RELATIVE_PATH)


def file_sha256(path: str) -> str:
  """Hex sha256 of a local file, read in chunks."""
  digest = hashlib.sha256()
  with open(path, 'rb') as f:
    for chunk in iter(lambda: f.read(1 << 20), b''):
      digest.update(chunk)
  return digest.hexdigest()


def verify_bundled_database(path: str) -> None:
  """Checks that ``path`` is the expected bokeh-sampledata 2026.1 file."""
  if not os.path.isfile(path):
    raise MoviesDatabaseError(f'{path}: the movies database does not exist.')
  actual = file_sha256(path)
  if actual != BUNDLED_DATABASE_SHA256:
    raise MoviesDatabaseError(
        f'{path}: sha256 is {actual}, expected {BUNDLED_DATABASE_SHA256} '
        '(bokeh-sampledata 2026.1). Install exactly that version.')


@contextlib.contextmanager
def local_copy(uri: str) -> Iterator[str]:
  """Yields a local path for ``uri``, copying remote files (gs://) to a temp dir.

  SQLite needs a local file; on Dataflow the database may live on GCS.
  """
  if '://' not in uri:
    yield uri
    return
  import tensorflow as tf  # Only needed for remote file systems.
  temp_dir = tempfile.mkdtemp(prefix='movies_db_')
  try:
    local_path = os.path.join(temp_dir, 'movies.db')
    tf.io.gfile.copy(uri, local_path)
    yield local_path
  finally:
    shutil.rmtree(temp_dir, ignore_errors=True)


def _connect_read_only(path: str) -> sqlite3.Connection:
  if not os.path.isfile(path):
    raise MoviesDatabaseError(f'{path}: the movies database does not exist.')
  try:
    connection = sqlite3.connect(f'file:{path}?mode=ro', uri=True)
    connection.execute('SELECT name FROM sqlite_master LIMIT 1').fetchall()
  except sqlite3.DatabaseError as e:
    raise MoviesDatabaseError(
        f'{path}: not a readable SQLite database ({e}).') from e
  return connection


def validate_database(path: str, query: str = DEFAULT_QUERY) -> None:
  """Fails early, naming the file, when ``query`` cannot be answered from it.

  Checks the tables and columns the default query needs, that the query
  compiles and returns every required output column, and that it has rows.
  """
  connection = _connect_read_only(path)
  try:
    if query == DEFAULT_QUERY:
      _check_required_columns(connection, path)
    try:
      cursor = connection.execute(f'SELECT * FROM ({query}) LIMIT 1')
    except sqlite3.Error as e:
      raise MoviesDatabaseError(f'{path}: the query failed: {e}.') from e
    columns = [d[0] for d in cursor.description]
    missing = [c for c in REQUIRED_OUTPUT_COLUMNS if c not in columns]
    if missing:
      raise MoviesDatabaseError(
          f'{path}: the query does not return the columns {missing}; '
          f'it returns {columns}.')
    if cursor.fetchone() is None:
      raise MoviesDatabaseError(f'{path}: the query returned no rows.')
  finally:
    connection.close()


def _check_required_columns(connection: sqlite3.Connection, path: str) -> None:
  tables = {row[0] for row in connection.execute(
      "SELECT name FROM sqlite_master WHERE type = 'table'")}
  for table, required in REQUIRED_COLUMNS.items():
    if table not in tables:
      raise MoviesDatabaseError(
          f'{path}: table {table!r} is missing (tables: {sorted(tables)}).')
    present = {row[1] for row in connection.execute(
        f'PRAGMA table_info("{table}")')}
    missing = [c for c in required if c not in present]
    if missing:
      raise MoviesDatabaseError(
          f'{path}: table {table!r} lacks the columns {missing}.')


def read_rows(path: str, query: str = DEFAULT_QUERY) -> Iterator[Dict[str, Any]]:
  """Yields the query's rows as dicts keyed by output column name."""
  connection = _connect_read_only(path)
  try:
    cursor = connection.execute(query)
    columns = [d[0] for d in cursor.description]
    for row in cursor:
      yield dict(zip(columns, row))
  finally:
    connection.close()


def resolve_database(database_uri: Optional[str]) -> str:
  """The database to read: ``database_uri``, or the verified bundled file."""
  if database_uri:
    return database_uri
  path = bundled_database_path()
  verify_bundled_database(path)
  return path


def numbers_query(query: str = DEFAULT_QUERY) -> str:
  """``query`` reduced to the film id, the score and the numeric columns.

  What ``movie_examples.check_numbers`` reads to find bad numbers before any
  row is converted.
  """
  columns = [features.FILM_ID, METER_COLUMN] + features.NUMERIC_FEATURES
  return f'SELECT {", ".join(columns)} FROM ({query})'


def until_year_query(year: int, query: str = DEFAULT_QUERY) -> str:
  """``query`` restricted to films released up to ``year`` (inclusive)."""
  return f'SELECT * FROM ({query}) WHERE {features.YEAR} <= {int(year)}'


def sample_query(limit: int, query: str = DEFAULT_QUERY) -> str:
  """``query`` restricted to its first ``limit`` rows (in film ID order)."""
  if limit <= 0:
    raise ValueError(f'A sample needs at least one row, got limit={limit}.')
  return f'SELECT * FROM ({query}) LIMIT {int(limit)}'
