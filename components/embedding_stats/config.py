"""Configuration: features to measure, sequence lengths, SparseCore, checks.

All configs are small frozen dataclasses that round-trip through JSON, because
the component receives them as string execution parameters (which keeps the
compiled pipeline free of Python objects).
"""

import dataclasses
import json
from typing import Any, Dict, List, Optional, Sequence

from components.embedding import ids

KIND_VOCABULARY = ids.ROWS_VOCABULARY
KIND_IDENTITY = ids.ROWS_IDENTITY
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
    table: The embedding table the ids look up; features naming the same
      table are counted together for the SparseCore limits. Default: a table
      of its own, named after the feature.
  """
  name: str
  kind: str = KIND_VOCABULARY
  vocabulary_name: Optional[str] = None
  num_buckets: Optional[int] = None
  is_sequence: bool = False
  table: Optional[str] = None

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


def _check_share(owner: str, name: str, value: float) -> None:
  if not 0.0 <= value <= 1.0:
    raise ValueError(f'{owner}.{name} must be in [0, 1], got {value!r}.')


@dataclasses.dataclass(frozen=True)
class SparseCoreTopology:
  """The SparseCore set-up whose id buffers are sized from the data.

  Attributes:
    chips: TPU chips, i.e. replicas (`strategy.num_replicas_in_sync`).
    sparsecores_per_chip: SparseCores per chip (4 on v5p, 2 on v6e; TF reads
      `tpu_hardware_feature.num_embedding_devices_per_chip`).
    global_batch_size: Examples per training step over all chips; must divide
      into `chips` equal per-chip batches, each divisible by
      `sparsecores_per_chip` (TF's preprocessing requires it).
    coverage: Share of measured batches the recommended limits must fit in one
      minibatch (1.0: all of them, i.e. the maximum seen).
    multiple_of: Recommended limits are rounded up to a multiple of this.
  """
  chips: int
  sparsecores_per_chip: int
  global_batch_size: int
  coverage: float = 1.0
  multiple_of: int = 8

  def __post_init__(self):
    for name in ('chips', 'sparsecores_per_chip', 'global_batch_size',
                 'multiple_of'):
      value = getattr(self, name)
      if isinstance(value, bool) or not isinstance(value, int) or value < 1:
        raise ValueError(
            f'SparseCoreTopology.{name} must be an int >= 1, got {value!r}.')
    if not 0.0 < self.coverage <= 1.0:
      raise ValueError(
          f'SparseCoreTopology.coverage must be in (0, 1], got '
          f'{self.coverage!r}.')
    if self.global_batch_size % self.chips:
      raise ValueError(
          f'SparseCoreTopology: global_batch_size {self.global_batch_size} '
          f'does not divide into {self.chips} chips; use a multiple of '
          f'{self.chips}.')
    if self.per_chip_batch_size % self.sparsecores_per_chip:
      raise ValueError(
          f'SparseCoreTopology: the per-chip batch {self.per_chip_batch_size} '
          f'does not divide into {self.sparsecores_per_chip} SparseCores; use '
          f'a global_batch_size that is a multiple of '
          f'{self.chips * self.sparsecores_per_chip}.')

  @property
  def per_chip_batch_size(self) -> int:
    return self.global_batch_size // self.chips

  @property
  def num_partitions(self) -> int:
    """SparseCores in the system; each holds one mod-shard of every table."""
    return self.chips * self.sparsecores_per_chip


@dataclasses.dataclass(frozen=True)
class SplitChecks:
  """Thresholds of the warnings that compare other splits with training.

  Each value is a share in [0, 1]; a warning fires when the measured value is
  strictly above it (1.0 turns a check off).

  Attributes:
    train_split: The split the model trains on. None: the policy's
      `reference_split` (whose default is 'train').
    oov_rate_skew: Fires when a split's OOV rate exceeds the training OOV rate
      by more than this (absolute difference of shares).
    untrained_oov_share: Fires when more than this share of a split's id
      occurrences fall into OOV buckets that training never reaches (rows
      that keep their initial values).
    unseen_id_share: Fires when more than this share of a split's id
      occurrences are in-vocabulary (or identity) ids that never occur in
      training.
  """
  train_split: Optional[str] = None
  oov_rate_skew: float = 0.05
  untrained_oov_share: float = 0.001
  unseen_id_share: float = 0.05

  def __post_init__(self):
    if self.train_split is not None and not self.train_split:
      raise ValueError('SplitChecks.train_split must be None or non-empty.')
    for name in ('oov_rate_skew', 'untrained_oov_share', 'unseen_id_share'):
      _check_share('SplitChecks', name, getattr(self, name))

  def training_split(self, policy: TruncationPolicy) -> str:
    """The training split: `train_split`, else the policy's reference."""
    return self.train_split or policy.reference_split


def config_to_json(value: Any) -> Optional[str]:
  """Serializes a config dataclass for a component parameter (None stays)."""
  if value is None:
    return None
  return json.dumps(dataclasses.asdict(value), sort_keys=True)


def topology_from_json(text: Optional[str]) -> Optional[SparseCoreTopology]:
  """Parses the `sparsecore_topology` parameter; empty means off."""
  return SparseCoreTopology(**json.loads(text)) if text else None


def checks_from_json(text: Optional[str]) -> SplitChecks:
  """Parses the `checks` parameter; empty means the defaults."""
  return SplitChecks(**json.loads(text)) if text else SplitChecks()


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
