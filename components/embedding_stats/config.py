"""Configuration: which features to measure and how to pick a sequence length.

Both configs are small frozen dataclasses that round-trip through JSON, because
the component receives them as string execution parameters (which keeps the
compiled pipeline free of Python objects).
"""

import dataclasses
import json
from typing import Any, Dict, List, Optional, Sequence

KIND_VOCABULARY = 'vocabulary'
KIND_IDENTITY = 'identity'
_KINDS = (KIND_VOCABULARY, KIND_IDENTITY)


@dataclasses.dataclass(frozen=True)
class FeatureToMeasure:
  """One transformed feature whose ids and lengths are measured.

  Attributes:
    name: The transformed feature name (a key of `transformed_feature_spec()`).
    kind: 'vocabulary' for ids from `tft.compute_and_apply_vocabulary`, whose
      vocabulary size and OOV buckets are read from the Transform output;
      'identity' for ids used as-is, valid in `[0, num_buckets)`.
    vocabulary_name: The `vocab_filename` given to Transform. Required for
      'vocabulary' features.
    num_buckets: Size of the id space. Required for 'identity' features.
    is_sequence: Whether the ids form a sequence that is padded or truncated to
      a `max_sequence_length` (as opposed to a bag reduced by a combiner); only
      sequences get a recommended length.
  """
  name: str
  kind: str = KIND_VOCABULARY
  vocabulary_name: Optional[str] = None
  num_buckets: Optional[int] = None
  is_sequence: bool = False

  def __post_init__(self):
    if not self.name:
      raise ValueError('FeatureToMeasure.name must be non-empty.')
    if self.kind not in _KINDS:
      raise ValueError(
          f'Feature {self.name!r}: kind must be one of {_KINDS}, got '
          f'{self.kind!r}.')
    if self.kind == KIND_VOCABULARY and not self.vocabulary_name:
      raise ValueError(
          f'Feature {self.name!r}: a vocabulary feature needs vocabulary_name.')
    if self.kind == KIND_IDENTITY and (
        self.num_buckets is None or self.num_buckets < 1):
      raise ValueError(
          f'Feature {self.name!r}: an identity feature needs num_buckets >= 1.')


@dataclasses.dataclass(frozen=True)
class TruncationPolicy:
  """How a `max_sequence_length` is chosen from a length histogram.

  The recommendation is the smallest length that keeps at least `coverage` of
  the rows of `reference_split` whole, rounded up to a multiple of
  `multiple_of` (TPU-friendly shapes), then clipped to
  `[min_length, max_length]`.
  """
  coverage: float = 0.99
  multiple_of: int = 8
  max_length: int = 512
  min_length: int = 1
  reference_split: str = 'train'

  def __post_init__(self):
    if not 0.0 < self.coverage <= 1.0:
      raise ValueError(f'coverage must be in (0, 1], got {self.coverage}.')
    if self.multiple_of < 1:
      raise ValueError(f'multiple_of must be >= 1, got {self.multiple_of}.')
    if self.min_length < 1:
      raise ValueError(f'min_length must be >= 1, got {self.min_length}.')
    if self.max_length < self.min_length:
      raise ValueError(
          f'max_length ({self.max_length}) must be >= min_length '
          f'({self.min_length}).')


def features_to_json(features: Sequence[FeatureToMeasure]) -> str:
  """Serializes feature configs for the component's `features` parameter."""
  return json.dumps([dataclasses.asdict(f) for f in features], sort_keys=True)


def features_from_json(text: str) -> List[FeatureToMeasure]:
  """Parses the `features` parameter; rejects unknown keys and duplicates."""
  features = [FeatureToMeasure(**item) for item in json.loads(text)]
  names = [f.name for f in features]
  if len(set(names)) != len(names):
    raise ValueError(f'Duplicate feature names in {names}.')
  if not features:
    raise ValueError('At least one feature to measure is required.')
  return features


def policy_to_json(policy: TruncationPolicy) -> str:
  """Serializes a policy for the component's `policy` parameter."""
  return json.dumps(dataclasses.asdict(policy), sort_keys=True)


def policy_from_json(text: Optional[str]) -> TruncationPolicy:
  """Parses the `policy` parameter; an empty value means the defaults."""
  if not text:
    return TruncationPolicy()
  return policy_from_dict(json.loads(text))


def policy_from_dict(values: Dict[str, Any]) -> TruncationPolicy:
  return TruncationPolicy(**values)
