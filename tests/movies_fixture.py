"""A tiny movies database with the shape of bokeh-sampledata's movies.db.

Each row exercises one rule: empty lists, "Jr." names, NULLs, a missing
Meter, Unicode names, the label threshold.
"""

import os
import sqlite3
from typing import Any, Optional

import tensorflow as tf
from tfx.components.example_gen import utils as example_gen_utils
from tfx.dsl.components.base import base_beam_executor
from tfx.proto import example_gen_pb2
from tfx.types import standard_artifacts
from tfx.utils import proto_utils

from pipelines.movies.example_gen import component
from pipelines.movies.example_gen import executor
from pipelines.movies.example_gen import movies_db

OMDB_COLUMNS = ('ID', 'Title', 'Year', 'Rating', 'Runtime', 'Genre', 'Director',
                'Writer', '"Cast"', 'Language', 'Country')
TOMATOES_COLUMNS = ('ID', 'Meter', 'Rating', 'Fresh', 'Rotten', 'Reviews',
                    'Production')

# (ID, Title, Year, MPAA, Runtime, Genre, Director, Writer, Cast, Language,
#  Country), (Meter, tomatoes.Rating, Fresh, Rotten, Reviews, Production)
FILMS = [
    ((1, 'Ocean', 1960, 'PG', 127.0, 'Crime, Comedy', 'Lewis Milestone',
      'Harry Brown, Charles Lederer',
      'Dean Martin, Frank Sinatra, Sammy Davis, Jr., Peter Lawford',
      'English', 'United States'), (48, 5.0, 12, 13, 25, 'Warner Bros.')),
    ((2, 'Amélie', 2001, 'R', 122.0, 'Comedy, Romance', 'Jean-Pierre Jeunet',
      'Guillaume Laurant, Jean-Pierre Jeunet',
      'Audrey Tautou, Mathieu Kassovitz, Rufus', 'French', 'France, Germany'),
     (89, 8.0, 140, 17, 157, 'Miramax')),
    ((3, 'Silent', None, None, None, '', 'Anonymous', '', '', '', ''),
     (60, 6.0, 3, 2, 5, None)),
    ((4, 'Unrated', 1999, 'PG-13', 90.0, 'Drama', 'Anonymous', 'Someone',
      'Frank Sinatra', 'English', 'United States'),
     (None, None, None, None, None, None)),
    ((5, 'Shichinin', 1954, None, 207.0, 'Action, Drama', '黒澤 明',
      '黒澤 明, 橋本 忍', '三船 敏郎, 志村 喬', 'Japanese', 'Japan'),
     (100, 9.0, 60, 0, 60, 'Toho')),
    ((6, 'Family', 2005, 'G', 95.0, 'Family', 'Jim Smith, Sr.',
      'Jim Smith, Sr., Jim Smith, Jr.', 'Jim Smith, Jr.', 'English',
      'United States'), (59, 5.9, 10, 7, 17, 'Disney')),
]


def build_movies_db(path: str, films=FILMS, with_tomatoes: bool = True) -> str:
  """Writes the fixture database to ``path`` and returns the path."""
  connection = sqlite3.connect(path)
  try:
    connection.execute(
        'CREATE TABLE omdb (ID INTEGER, Title TEXT, Year INTEGER, Rating TEXT, '
        'Runtime REAL, Genre TEXT, Director TEXT, Writer TEXT, "Cast" TEXT, '
        'Language TEXT, Country TEXT)')
    if with_tomatoes:
      connection.execute(
          'CREATE TABLE tomatoes (ID INTEGER, Meter INTEGER, Rating REAL, '
          'Fresh INTEGER, Rotten INTEGER, Reviews INTEGER, Production TEXT)')
    for omdb, tomatoes in films:
      connection.execute(
          f'INSERT INTO omdb ({", ".join(OMDB_COLUMNS)}) VALUES '
          f'({", ".join("?" * len(omdb))})', omdb)
      if with_tomatoes:
        connection.execute(
            f'INSERT INTO tomatoes ({", ".join(TOMATOES_COLUMNS)}) VALUES '
            f'(?, {", ".join("?" * len(tomatoes))})', (omdb[0],) + tomatoes)
    connection.commit()
  finally:
    connection.close()
  return path


def with_omdb_value(film_id: int, column: str, value: Any, films=FILMS):
  """``films`` with one omdb ``column`` (e.g. 'Year') of ``film_id`` replaced."""
  index = OMDB_COLUMNS.index(column)
  return [((omdb[:index] + (value,) + omdb[index + 1:]), tomatoes)
          if omdb[0] == film_id else (omdb, tomatoes)
          for omdb, tomatoes in films]


def run_example_gen(db_path: str, output_uri: str, output_config=None,
                    on_bad_value: Optional[str] = None):
  """Runs the MoviesExampleGen executor on ``db_path``; returns the Examples."""
  examples = standard_artifacts.Examples()
  examples.uri = output_uri
  exec_properties = {
      'input_config': proto_utils.proto_to_json(
          example_gen_utils.make_default_input_config(
              movies_db.DEFAULT_QUERY)),
      'output_config': proto_utils.proto_to_json(
          output_config or component.default_output_config()),
      'output_data_format': example_gen_pb2.FORMAT_TF_EXAMPLE,
      'output_file_format': example_gen_pb2.FORMAT_TFRECORDS_GZIP,
      executor.DATABASE_URI_KEY: db_path,
      executor.ON_BAD_VALUE_KEY: on_bad_value,
  }
  context = base_beam_executor.BaseBeamExecutor.Context(
      beam_pipeline_args=['--runner=DirectRunner'])
  executor.Executor(context).Do({}, {'examples': [examples]}, exec_properties)
  return examples


def read_split(uri: str, split: str):
  """The tf.Examples of one split written by ``run_example_gen``."""
  files = tf.io.gfile.glob(os.path.join(uri, f'Split-{split}', '*'))
  return [
      tf.train.Example.FromString(r.numpy())
      for r in tf.data.TFRecordDataset(files, compression_type='GZIP')
  ]


def feature_values(example, name):
  """A feature's values as a list (strings decoded)."""
  feature = example.features.feature[name]
  kind = feature.WhichOneof('kind')
  values = list(getattr(feature, kind).value) if kind else []
  return [v.decode('utf-8') if isinstance(v, bytes) else v for v in values]
