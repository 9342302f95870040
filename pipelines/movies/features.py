"""The movies example's feature table: the one source of feature names.

MoviesExampleGen writes these keys; ``preprocessing_fn``, the embedding spec
and the summary read ``TABLE`` (see ``pipelines.feature_table``).
"""

from typing import List

from pipelines import feature_table
from pipelines.feature_table import Feature
from pipelines.feature_table import LIST
from pipelines.feature_table import NUMERIC
from pipelines.feature_table import SCALAR
from pipelines.feature_table import transformed_name

# Raw tf.Example keys written by MoviesExampleGen.
FILM_ID = 'film_id'  # Used for the deterministic train/eval split, never a model input.
LABEL = 'fresh'  # 1 when tomatoes.Meter >= 60.

CAST = 'cast'
WRITER = 'writer'
DIRECTOR = 'director'
GENRE = 'genre'
LANGUAGE = 'language'
COUNTRY = 'country'
PRODUCTION = 'production'
MPAA_RATING = 'mpaa_rating'
YEAR = 'year'
RUNTIME = 'runtime'

# Directors and writers are largely the same people: one vocabulary, one table.
CREW_VOCABULARY = 'crew'

TABLE = feature_table.FeatureTable([
    Feature(CAST, LIST, dimension=32, sequence=True),
    Feature(DIRECTOR, LIST, dimension=32, vocabulary=CREW_VOCABULARY,
            combiner='sqrtn'),
    Feature(WRITER, LIST, dimension=32, vocabulary=CREW_VOCABULARY,
            combiner='sqrtn'),
    Feature(GENRE, LIST, dimension=8),
    Feature(LANGUAGE, LIST, dimension=8),
    Feature(COUNTRY, LIST, dimension=8),
    Feature(PRODUCTION, SCALAR, dimension=16),
    Feature(MPAA_RATING, SCALAR, dimension=4),
    Feature(YEAR, NUMERIC),
    Feature(RUNTIME, NUMERIC),
])

LIST_FEATURES: List[str] = [f.name for f in TABLE.features if f.kind == LIST]
SCALAR_CATEGORICAL_FEATURES: List[str] = [
    f.name for f in TABLE.features if f.kind == SCALAR]
CATEGORICAL_FEATURES: List[str] = TABLE.categorical
NUMERIC_FEATURES: List[str] = TABLE.numeric


def vocabulary_name(feature: str) -> str:
  """Name of the Transform vocabulary file that holds ``feature``'s tokens."""
  return TABLE.by_name[feature].vocabulary_name


def missing_indicator_name(feature: str) -> str:
  """Key of the 0/1 feature that says a numeric value was missing."""
  return f'{feature}_missing_xf'


TRANSFORMED_LABEL = transformed_name(LABEL)
