"""Warnings from comparing each split with the training split, per feature.

Three traps that silently cost accuracy (see the README for the defaults):
  oov_rate_skew: a split is far more often out of vocabulary than training.
  untrained_oov_buckets: a split's ids land in OOV buckets that training
    never reaches, so their rows keep their random initial values.
  unseen_ids: a split's in-vocabulary (or identity) ids never occur in
    training, so their rows never train.
The last two need exact per-id counts, kept for vocabulary features and for
identity features of up to `features.MAX_COUNTED_IDENTITY_BUCKETS` ids.
"""

from typing import List, Mapping, Optional, Sequence

import numpy as np

from components.embedding_stats import config
from components.embedding_stats import features as features_lib
from components.embedding_stats import statistics

CHECK_OOV_RATE_SKEW = 'oov_rate_skew'
CHECK_UNTRAINED_OOV_BUCKETS = 'untrained_oov_buckets'
CHECK_UNSEEN_IDS = 'unseen_ids'

_OOV_ROW_ADVICE = (
    'set frequency_threshold > 1 (or top_k) in compute_and_apply_vocabulary '
    'so that rare training tokens train the OOV rows, or start the OOV rows '
    'at zero / set them after training to the mean of the trained rows '
    "(EmbeddingSpec oov_rows='zero' / 'mean_after_training'; see "
    'docs/tuning_embeddings.md)')


def _pct(share: float) -> str:
  return f'{100 * share:.2f}%'


def _id_total(feature: statistics.FeatureStatistics) -> int:
  return (feature.vocabulary or feature.identity).num_ids


def _oov_rate_skew(name, train_split, split, train, other, threshold
                   ) -> Optional[statistics.SplitWarning]:
  if train.vocabulary is None or not other.vocabulary.num_ids:
    return None
  skew = other.vocabulary.oov_rate - train.vocabulary.oov_rate
  if skew <= threshold:
    return None
  return statistics.SplitWarning(
      check=CHECK_OOV_RATE_SKEW, feature=name, train_split=train_split,
      split=split, value=skew, threshold=threshold,
      message=(
          f'{name}: OOV rate {_pct(other.vocabulary.oov_rate)} in {split!r} '
          f'against {_pct(train.vocabulary.oov_rate)} in {train_split!r} '
          f'(skew {_pct(skew)} > {_pct(threshold)}). These ids share the OOV '
          f'rows; check that {split!r} comes from the population training '
          f'sees, and how the OOV rows train: {_OOV_ROW_ADVICE}.'))


def _untrained_oov_buckets(name, resolved, train_split, split, train_counts,
                           other_counts, other, threshold
                           ) -> Optional[statistics.SplitWarning]:
  size = resolved.vocabulary_size
  untrained = train_counts[size:] == 0
  reached = other_counts[size:][untrained]
  share = int(reached.sum()) / _id_total(other) if _id_total(other) else 0.0
  if share <= threshold:
    return None
  buckets = int(np.count_nonzero(reached))
  return statistics.SplitWarning(
      check=CHECK_UNTRAINED_OOV_BUCKETS, feature=name,
      train_split=train_split, split=split, value=share, threshold=threshold,
      message=(
          f'{name}: {_pct(share)} of {split!r} ids fall into {buckets} OOV '
          f'bucket(s) that {train_split!r} never reaches (> '
          f'{_pct(threshold)}); those rows never train and keep their random '
          f'initial values. To fix: {_OOV_ROW_ADVICE}.'))


def _unseen_ids(name, resolved, train_split, split, train_counts,
                other_counts, other, threshold
                ) -> Optional[statistics.SplitWarning]:
  size = (resolved.vocabulary_size if resolved.kind == config.KIND_VOCABULARY
          else resolved.num_ids)
  unseen = int(other_counts[:size][train_counts[:size] == 0].sum())
  share = unseen / _id_total(other) if _id_total(other) else 0.0
  if share <= threshold:
    return None
  what = ('in-vocabulary ids' if resolved.kind == config.KIND_VOCABULARY
          else 'ids')
  advice = ('build the vocabulary from the training split only, so that '
            'unseen tokens map to the OOV buckets' if
            resolved.kind == config.KIND_VOCABULARY else
            'map ids unseen in training to shared OOV ids (a vocabulary with '
            'OOV buckets, or hashing)')
  return statistics.SplitWarning(
      check=CHECK_UNSEEN_IDS, feature=name, train_split=train_split,
      split=split, value=share, threshold=threshold,
      message=(
          f'{name}: {_pct(share)} of {split!r} ids are {what} that never '
          f'occur in {train_split!r} (> {_pct(threshold)}); their rows never '
          f'train. To fix: {advice}.'))


def split_warnings(splits: Mapping[str, statistics.SplitStatistics],
                   features: Sequence[features_lib.MeasuredFeature],
                   train_split: str, checks: config.SplitChecks
                   ) -> List[statistics.SplitWarning]:
  """All warnings, by feature, split and check.

  Raises:
    ValueError: if `train_split` was not measured.
  """
  if train_split not in splits:
    raise ValueError(
        f'The training split {train_split!r} (SplitChecks.train_split, or the '
        f'policy reference_split) was not measured; measured splits: '
        f'{sorted(splits)}.')
  train = splits[train_split]
  found = []
  for resolved in features:
    name = resolved.name
    for split_name, split in sorted(splits.items()):
      if split_name == train_split:
        continue
      other = split.features[name]
      found.append(_oov_rate_skew(name, train_split, split_name,
                                  train.features[name], other,
                                  checks.oov_rate_skew))
      train_counts = train.id_counts.get(name)
      other_counts = split.id_counts.get(name)
      if train_counts is None or other_counts is None:
        continue  # Loaded from JSON, or no per-id counts kept.
      if resolved.kind == config.KIND_VOCABULARY:
        found.append(_untrained_oov_buckets(
            name, resolved, train_split, split_name, train_counts,
            other_counts, other, checks.untrained_oov_share))
      found.append(_unseen_ids(name, resolved, train_split, split_name,
                               train_counts, other_counts, other,
                               checks.unseen_id_share))
  return [w for w in found if w is not None]
