"""Turns a movies-database row into a ``tf.train.Example``.

Plain Python with no Beam, so that every rule (list splitting, name-suffix
merging, missing values, the label) is unit-testable on its own.
"""

from typing import Any, List, Mapping, Optional, Tuple

import tensorflow as tf

from pipelines.movies.example_gen import movies_db
from pipelines.movies import features

# A film is "fresh" when its Tomatometer is at least this.
FRESH_METER_THRESHOLD = 60

# Tokens that are the tail of the previous name ("Sammy Davis, Jr."), not names.
NAME_SUFFIXES = frozenset({'Jr.', 'Sr.', 'Jr', 'Sr'})

# Reasons a row becomes no example; counted, never dropped silently.
DROP_MISSING_LABEL = 'missing_label'
DROP_INVALID_LABEL = 'invalid_label'
DROP_REASONS = (DROP_MISSING_LABEL, DROP_INVALID_LABEL)


def split_list(text: Optional[str]) -> List[str]:
  """Splits a comma-separated list; empty text or NULL is an empty list.

  A "Jr."/"Sr." fragment is merged back into the name before it, so
  "Sammy Davis, Jr., Frank Sinatra" gives ["Sammy Davis, Jr.", "Frank Sinatra"].
  Names are otherwise kept exactly, Unicode included.
  """
  if not text:
    return []
  names: List[str] = []
  for token in (t.strip() for t in text.split(',')):
    if not token:
      continue
    if token in NAME_SUFFIXES and names:
      names[-1] = f'{names[-1]}, {token}'
    else:
      names.append(token)
  return names


def label_from_meter(meter: Any) -> Tuple[Optional[int], Optional[str]]:
  """Returns (label, None), or (None, drop reason) when there is no usable score."""
  if meter is None:
    return None, DROP_MISSING_LABEL
  try:
    value = float(meter)
  except (TypeError, ValueError):
    return None, DROP_INVALID_LABEL
  if not 0 <= value <= 100:
    return None, DROP_INVALID_LABEL
  return int(value >= FRESH_METER_THRESHOLD), None


def _bytes_feature(values: List[str]) -> tf.train.Feature:
  return tf.train.Feature(
      bytes_list=tf.train.BytesList(value=[v.encode('utf-8') for v in values]))


def _int64_feature(values: List[int]) -> tf.train.Feature:
  return tf.train.Feature(int64_list=tf.train.Int64List(value=values))


def _float_feature(values: List[float]) -> tf.train.Feature:
  return tf.train.Feature(float_list=tf.train.FloatList(value=values))


def _optional_text(value: Any) -> List[str]:
  """A scalar string as a 0- or 1-element list (NULL or blank is missing)."""
  if value is None:
    return []
  text = str(value).strip()
  return [text] if text else []


def _optional_number(value: Any) -> List[float]:
  """A scalar number as a 0- or 1-element list (NULL stays missing, not 0)."""
  if value is None or value == '':
    return []
  return [float(value)]


def row_to_example(
    row: Mapping[str, Any]) -> Tuple[Optional[tf.train.Example], Optional[str]]:
  """Converts one query row; returns (example, None) or (None, drop reason)."""
  label, reason = label_from_meter(row[movies_db.METER_COLUMN])
  if reason:
    return None, reason
  feature = {
      features.FILM_ID: _int64_feature([int(row[features.FILM_ID])]),
      features.LABEL: _int64_feature([label]),
  }
  for name in features.LIST_FEATURES:
    feature[name] = _bytes_feature(split_list(row[name]))
  for name in features.SCALAR_CATEGORICAL_FEATURES:
    feature[name] = _bytes_feature(_optional_text(row[name]))
  for name in features.NUMERIC_FEATURES:
    feature[name] = _float_feature(_optional_number(row[name]))
  return tf.train.Example(features=tf.train.Features(feature=feature)), None
