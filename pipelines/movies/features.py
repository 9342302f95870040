"""The movies example's feature table: the one source of feature names.

ExampleGen writes these keys; ``preprocessing_fn`` reads the table to build
one Transform vocabulary per ``vocabulary`` name; the embedding spec declares
one column per embedded feature from the same rows (features that share a
vocabulary share a table); the summary lists the vocabularies from it.
"""

import dataclasses
from typing import Dict, List, Optional

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

LIST = 'list'  # Comma-separated lists in movies.db: BytesList, maybe empty.
SCALAR = 'scalar'  # One string, missing when the database has no value.
NUMERIC = 'numeric'  # One float, missing when the database has no value.


@dataclasses.dataclass(frozen=True)
class Feature:
  """One raw feature and, for categorical ones, how it is embedded.

  Attributes:
    name: the raw tf.Example key.
    kind: LIST, SCALAR or NUMERIC.
    dimension: embedding width (categorical features).
    vocabulary: the Transform vocabulary; defaults to ``name``.
    sequence: embedded as a padded sequence instead of a combined bag.
    combiner: how a bag's embeddings are reduced.
  """

  name: str
  kind: str
  dimension: int = 0
  vocabulary: Optional[str] = None
  sequence: bool = False
  combiner: str = 'mean'

  @property
  def vocabulary_name(self) -> str:
    return self.vocabulary or self.name

  @property
  def transformed_name(self) -> str:
    return transformed_name(self.name)


FEATURES: List[Feature] = [
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
]
FEATURES_BY_NAME: Dict[str, Feature] = {f.name: f for f in FEATURES}

LIST_FEATURES: List[str] = [f.name for f in FEATURES if f.kind == LIST]
SCALAR_CATEGORICAL_FEATURES: List[str] = [
    f.name for f in FEATURES if f.kind == SCALAR]
CATEGORICAL_FEATURES: List[str] = [
    f.name for f in FEATURES if f.kind in (LIST, SCALAR)]
NUMERIC_FEATURES: List[str] = [f.name for f in FEATURES if f.kind == NUMERIC]


def vocabulary_name(feature: str) -> str:
  """Name of the Transform vocabulary file that holds ``feature``'s tokens."""
  return FEATURES_BY_NAME[feature].vocabulary_name


def vocabulary_members() -> Dict[str, List[str]]:
  """Each vocabulary and the categorical features it holds, in table order."""
  members: Dict[str, List[str]] = {}
  for name in CATEGORICAL_FEATURES:
    members.setdefault(vocabulary_name(name), []).append(name)
  return members


def transformed_name(feature: str) -> str:
  """Key of ``feature`` in the transformed examples (TFX's ``_xf`` convention)."""
  return f'{feature}_xf'


def missing_indicator_name(feature: str) -> str:
  """Key of the 0/1 feature that says a numeric value was missing."""
  return f'{feature}_missing_xf'


TRANSFORMED_LABEL = transformed_name(LABEL)
