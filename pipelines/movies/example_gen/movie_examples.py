"""Turns a movies-database row into a ``tf.train.Example``.

Plain Python with no Beam, so that every rule (list splitting, name-suffix
merging, missing values, the label) is unit-testable on its own.
"""

import math
from typing import Any, Dict, List, Mapping, NamedTuple, Optional, Tuple

import numpy as np
import tensorflow as tf
from absl import logging

from pipelines.movies.example_gen import movies_db
from pipelines.movies import features

# A film is "fresh" when its Tomatometer is at least this.
FRESH_METER_THRESHOLD = 60

# Tokens that are the tail of the previous name ("Sammy Davis, Jr."), not names.
NAME_SUFFIXES = frozenset({'Jr.', 'Sr.', 'Jr', 'Sr'})

# What to do with a row whose numeric column holds text that is no number
# (a Year of 'nineteen'): fail naming the film, or drop the row and count it.
ON_BAD_VALUE_FAIL = 'fail'
ON_BAD_VALUE_DROP = 'drop'
ON_BAD_VALUE_CHOICES = (ON_BAD_VALUE_FAIL, ON_BAD_VALUE_DROP)


def unparseable_reason(feature: str) -> str:
  """Drop reason of a row whose numeric ``feature`` is not a number."""
  return f'unparseable_{feature}'


def non_finite_count_name(feature: str) -> str:
  """Counter of rows whose numeric ``feature`` was NaN or infinite (missing)."""
  return f'missing_non_finite_{feature}'


# Reasons a row becomes no example; counted, never dropped silently.
DROP_MISSING_LABEL = 'missing_label'
DROP_INVALID_LABEL = 'invalid_label'
DROP_REASONS = (DROP_MISSING_LABEL, DROP_INVALID_LABEL) + tuple(
    unparseable_reason(name) for name in features.NUMERIC_FEATURES)

# Counters of values written as missing because they were not finite.
NON_FINITE_COUNTS = tuple(
    non_finite_count_name(name) for name in features.NUMERIC_FEATURES)

# The largest finite float32: tf.Example stores numbers as float32, so a
# larger magnitude would arrive as infinity.
_FLOAT32_MAX = float(np.finfo(np.float32).max)


class BadValueError(ValueError):
  """A numeric column holds a value that is not a number; names the film."""

  def __init__(self, film_id: Any, column: str, value: Any):
    super().__init__(
        f'Film {film_id}: column {column!r} holds {value!r}, which is not a '
        'number. Fix the data or the query, or build MoviesExampleGen with '
        f"on_bad_value='{ON_BAD_VALUE_DROP}' to drop such films (they are "
        f"counted as dropped_{unparseable_reason(column)}).")
    self.film_id = film_id
    self.column = column
    self.value = value


class Conversion(NamedTuple):
  """What became of one row.

  Attributes:
    example: the tf.Example, or None when the row is dropped.
    drop_reason: why the row is dropped (one of ``DROP_REASONS``), or None.
    non_finite: numeric features whose NaN or infinite value was written as
      missing (counted as ``non_finite_count_name``).
  """

  example: Optional[tf.train.Example]
  drop_reason: Optional[str]
  non_finite: Tuple[str, ...] = ()


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


def _is_blank(value: Any) -> bool:
  """NULL or blank text: a missing value, not a bad one."""
  return value is None or (isinstance(value, (str, bytes)) and
                           not value.strip())


def parse_number(value: Any) -> Optional[float]:
  """A finite number, or None when missing (NULL, blank, NaN or infinite).

  NaN and infinities (the texts 'NaN', 'inf', '-inf' or values beyond
  float32) are missing values: the model's missing indicator handles them, in
  training as in serving, where a z-score of them would poison every value.

  Raises:
    ValueError: ``value`` is text (or bytes) that is not a number.
  """
  if _is_blank(value):
    return None
  number = float(value)
  if not math.isfinite(number) or abs(number) > _FLOAT32_MAX:
    return None
  return number


def _numbers(row: Mapping[str, Any], on_bad_value: str
            ) -> Tuple[Dict[str, List[float]], Tuple[str, ...], Optional[str]]:
  """(feature -> 0/1-element list, non-finite features, drop reason or None).

  Raises:
    BadValueError: a value is not a number and ``on_bad_value`` is 'fail'.
  """
  values, non_finite = {}, []
  for name in features.NUMERIC_FEATURES:
    try:
      number = parse_number(row[name])
    except (TypeError, ValueError):
      if on_bad_value == ON_BAD_VALUE_FAIL:
        raise BadValueError(row[features.FILM_ID], name, row[name]) from None
      logging.warning('MoviesExampleGen drops film %s: column %r holds %r, '
                      'which is not a number.', row[features.FILM_ID], name,
                      row[name])
      return {}, (), unparseable_reason(name)
    if number is None and not _is_blank(row[name]):
      non_finite.append(name)
    values[name] = [] if number is None else [number]
  return values, tuple(non_finite), None


def check_numbers(row: Mapping[str, Any]) -> None:
  """Raises ``BadValueError`` when a kept row has a number that is no number.

  Rows that are dropped anyway for their label are not checked, as in
  ``convert_row``.
  """
  if label_from_meter(row[movies_db.METER_COLUMN])[1] is None:
    _numbers(row, ON_BAD_VALUE_FAIL)


class RowValues(NamedTuple):
  """What becomes of one row, as plain Python values.

  Attributes:
    values: feature name -> list of values (ints for the film id and the
      label, strings for categorical features, floats for numbers), or None
      when the row is dropped.
    drop_reason: why the row is dropped (one of ``DROP_REASONS``), or None.
    non_finite: as in ``Conversion``.
  """

  values: Optional[Dict[str, List[Any]]]
  drop_reason: Optional[str]
  non_finite: Tuple[str, ...] = ()


def row_values(row: Mapping[str, Any],
               on_bad_value: str = ON_BAD_VALUE_FAIL) -> RowValues:
  """The values ``convert_row`` writes, without building a proto.

  For callers that encode many rows at once (a batch encoder, with no proto
  object per row); see ``convert_row`` for the arguments and errors.
  """
  label, reason = label_from_meter(row[movies_db.METER_COLUMN])
  if reason:
    return RowValues(None, reason)
  numbers, non_finite, reason = _numbers(row, on_bad_value)
  if reason:
    return RowValues(None, reason)
  values: Dict[str, List[Any]] = {
      features.FILM_ID: [int(row[features.FILM_ID])],
      features.LABEL: [label],
  }
  for name in features.LIST_FEATURES:
    values[name] = split_list(row[name])
  for name in features.SCALAR_CATEGORICAL_FEATURES:
    values[name] = _optional_text(row[name])
  values.update(numbers)
  return RowValues(values, None, non_finite)


def _as_example(values: Mapping[str, List[Any]]) -> tf.train.Example:
  feature = {}
  for name, items in values.items():
    if name in (features.FILM_ID, features.LABEL):
      feature[name] = _int64_feature(items)
    elif name in features.NUMERIC_FEATURES:
      feature[name] = _float_feature(items)
    else:
      feature[name] = _bytes_feature(items)
  return tf.train.Example(features=tf.train.Features(feature=feature))


def convert_row(row: Mapping[str, Any],
                on_bad_value: str = ON_BAD_VALUE_FAIL) -> Conversion:
  """Converts one query row into an example, or says why it is dropped.

  Args:
    row: the query's output columns by name.
    on_bad_value: 'fail' raises ``BadValueError`` for a numeric column that
      is not a number; 'drop' drops the row (reason ``unparseable_<column>``)
      and logs its film id.

  Raises:
    BadValueError: see ``on_bad_value``.
  """
  converted = row_values(row, on_bad_value)
  if converted.drop_reason:
    return Conversion(None, converted.drop_reason)
  return Conversion(_as_example(converted.values), None, converted.non_finite)


def row_to_example(
    row: Mapping[str, Any]) -> Tuple[Optional[tf.train.Example], Optional[str]]:
  """(example, None) or (None, drop reason); a bad number raises (see ``convert_row``)."""
  conversion = convert_row(row)
  return conversion.example, conversion.drop_reason
