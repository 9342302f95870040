"""The single source of truth for the movies pipeline's feature names.

ExampleGen writes these keys, ``preprocessing_fn`` reads and transforms them,
the embedding specification names their vocabularies, and the tests use them.
Nothing else in the pipeline spells a feature or vocabulary name.
"""

from typing import Dict, List

# Raw tf.Example keys written by MoviesExampleGen.
FILM_ID = 'film_id'  # Used for the deterministic train/eval split, never a model input.
LABEL = 'fresh'  # 1 when tomatoes.Meter >= 60.

# Multi-valued string features: comma-separated lists in movies.db.
CAST = 'cast'
WRITER = 'writer'
DIRECTOR = 'director'
GENRE = 'genre'
LANGUAGE = 'language'
COUNTRY = 'country'
LIST_FEATURES: List[str] = [CAST, WRITER, DIRECTOR, GENRE, LANGUAGE, COUNTRY]

# Single-valued string features (missing when the database has no value).
PRODUCTION = 'production'
MPAA_RATING = 'mpaa_rating'
SCALAR_CATEGORICAL_FEATURES: List[str] = [PRODUCTION, MPAA_RATING]

# Numeric features (missing when the database has no value, never 0).
YEAR = 'year'
RUNTIME = 'runtime'
NUMERIC_FEATURES: List[str] = [YEAR, RUNTIME]

CATEGORICAL_FEATURES: List[str] = LIST_FEATURES + SCALAR_CATEGORICAL_FEATURES

# Features embedded as padded sequences ([batch, max_sequence_length, dim]);
# the other categorical features are reduced by a combiner into one vector.
SEQUENCE_FEATURES: List[str] = [CAST]

# Features that share one vocabulary (and so can share one embedding table):
# directors and writers are largely the same people.
CREW_VOCABULARY = 'crew'
SHARED_VOCABULARIES: Dict[str, List[str]] = {CREW_VOCABULARY: [DIRECTOR, WRITER]}


def vocabulary_name(feature: str) -> str:
  """Name of the Transform vocabulary file that holds ``feature``'s tokens."""
  for vocabulary, members in SHARED_VOCABULARIES.items():
    if feature in members:
      return vocabulary
  return feature


def transformed_name(feature: str) -> str:
  """Key of ``feature`` in the transformed examples (TFX's ``_xf`` convention)."""
  return f'{feature}_xf'


def missing_indicator_name(feature: str) -> str:
  """Key of the 0/1 feature that says a numeric value was missing."""
  return f'{feature}_missing_xf'


TRANSFORMED_LABEL = transformed_name(LABEL)
