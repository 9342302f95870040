"""A tiny movies database with the shape of bokeh-sampledata's movies.db.

Each row exercises one rule: empty lists, "Jr." names, NULLs, a missing
Meter, Unicode names, the label threshold.
"""

import sqlite3

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
