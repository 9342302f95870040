"""Renders `report.md` and one length-histogram PNG per sequence feature."""

import io
import os
import re
from typing import Dict, List, Optional

from matplotlib import figure as figure_lib
import tensorflow as tf

from components.embedding_stats import sparsecore
from components.embedding_stats import statistics

REPORT_FILE = 'report.md'


def plot_file_name(feature: str) -> str:
  """A file-system-safe PNG name for a feature's length histogram."""
  return 'lengths_' + re.sub(r'[^A-Za-z0-9_.-]', '_', feature) + '.png'


def _fmt(value: Optional[float], percent: bool = False) -> str:
  if value is None:
    return '-'
  if percent:
    return f'{100 * value:.2f}%'
  if isinstance(value, float):
    return f'{value:.2f}'
  return str(value)


def _table(header: List[str], rows: List[List[str]]) -> List[str]:
  lines = ['| ' + ' | '.join(header) + ' |',
           '|' + '---|' * len(header)]
  lines += ['| ' + ' | '.join(row) + ' |' for row in rows]
  return lines + ['']


def _write_bytes(path: str, data: bytes) -> None:
  with tf.io.gfile.GFile(path, 'wb') as f:
    f.write(data)


def plot_lengths(result: statistics.EmbeddingStatisticsResult, feature: str,
                 path: str) -> None:
  """Plots the length histogram of every split with the chosen cut marked."""
  # A bare Figure renders with the Agg canvas and leaves pyplot's global
  # backend and figure registry alone.
  figure = figure_lib.Figure(figsize=(7, 4))
  axes = figure.subplots()
  reference = result.policy.reference_split
  ordered = sorted(result.splits.items(), key=lambda kv: kv[0] != reference)
  for split, split_stats in ordered:  # The reference split is drawn first.
    lengths = split_stats.features[feature].lengths
    if not lengths.histogram:
      continue
    xs, counts = zip(*lengths.histogram)
    shares = [c / lengths.num_rows for c in counts]
    axes.bar(xs, shares, width=1.0, alpha=0.5, label=split)
  cut = result.recommendations[feature].max_sequence_length
  axes.axvline(cut + 0.5, color='red', linestyle='--',
               label=f'max_sequence_length = {cut}')
  axes.set_xlabel('ids per row')
  axes.set_ylabel('share of rows')
  axes.set_title(f'{feature}: sequence lengths')
  axes.legend()
  buffer = io.BytesIO()
  figure.savefig(buffer, format='png', dpi=80, bbox_inches='tight')
  _write_bytes(path, buffer.getvalue())


def _recommendation_lines(result: statistics.EmbeddingStatisticsResult
                          ) -> List[str]:
  policy = result.policy
  lines = ['## Recommended max_sequence_length', '',
           f'Smallest length keeping at least {_fmt(policy.coverage, True)} of '
           f'`{policy.reference_split}` rows whole, rounded up to a multiple '
           f'of {policy.multiple_of}, within [{policy.min_length}, '
           f'{policy.max_length}].', '']
  reference = result.splits[policy.reference_split]
  rows = []
  for name, rec in sorted(result.recommendations.items()):
    lengths = reference.features[name].lengths
    rows.append([f'`{name}`', str(rec.max_sequence_length),
                 _fmt(rec.rows_truncated_share, True),
                 _fmt(rec.ids_truncated_share, True),
                 _fmt(lengths.quantiles['p99']), _fmt(lengths.max)])
  if not rows:
    return lines + ['No sequence features were measured.', '']
  return lines + _table(['feature', 'max_sequence_length', 'rows truncated',
                         'ids truncated', 'p99', 'max'], rows)


def _warning_lines(result: statistics.EmbeddingStatisticsResult
                   ) -> List[str]:
  checks = result.checks
  train = checks.training_split(result.policy)
  lines = ['## Warnings', '',
           f'Each split against the training split `{train}`; thresholds: OOV '
           f'rate skew {_fmt(checks.oov_rate_skew, True)}, ids in untrained '
           f'OOV buckets {_fmt(checks.untrained_oov_share, True)}, ids unseen '
           f'in training {_fmt(checks.unseen_id_share, True)}.', '']
  if not result.warnings:
    return lines + ['No warnings.', '']
  return lines + [f'- **{w.check}** {w.message}' for w in result.warnings] + [
      '']


def _sparsecore_lines(result: statistics.EmbeddingStatisticsResult
                      ) -> List[str]:
  recommendation = result.sparsecore
  if recommendation is None:
    return []
  topology = recommendation.topology
  lines = [
      '## SparseCore limits', '',
      f'{topology.chips} chips x {topology.sparsecores_per_chip} SparseCores '
      f'= {topology.num_partitions} partitions, global batch '
      f'{topology.global_batch_size}: consecutive batches of each split in '
      'the order the examples were read (the last partial batch dropped), '
      f'all splits together. Limits cover {_fmt(topology.coverage, True)} '
      f'of the batches in one minibatch, rounded up to a multiple of '
      f'{topology.multiple_of}. `max_ids_per_chip_per_sample` (all tables): '
      f'**{recommendation.max_ids_per_chip_per_sample}** (TF 2.16 fixes it '
      f'at {sparsecore.TF216_MAX_IDS_PER_CHIP_PER_SAMPLE}).', '']
  rows = []
  for table, limits in sorted(recommendation.tables.items()):
    rows.append([
        f'`{table}`', str(limits.num_batches),
        str(limits.max_ids_per_partition),
        str(limits.observed_max_ids_per_partition),
        str(limits.max_unique_ids_per_partition),
        str(limits.observed_max_unique_ids_per_partition),
        str(limits.max_ids_per_chip_per_sample),
        _fmt(limits.ids_over_tf216_default_share, True)])
  return lines + _table(
      ['table', 'batches', 'max_ids_per_partition', 'max seen',
       'max_unique_ids_per_partition', 'max seen',
       'max_ids_per_chip_per_sample', 'ids over TF 2.16 default'], rows)


def _split_lines(name: str, split: statistics.SplitStatistics) -> List[str]:
  lines = [f'## Split `{name}` ({split.num_examples} examples)', '',
           '### Lengths (ids per row)', '']
  length_rows, vocab_rows, identity_rows, warnings = [], [], [], []
  for feature in split.features.values():
    lengths = feature.lengths
    length_rows.append(
        [f'`{feature.name}`', 'sequence' if feature.is_sequence else 'bag',
         str(lengths.num_rows), str(lengths.num_empty_rows), _fmt(lengths.min),
         _fmt(lengths.mean)]
        + [_fmt(lengths.quantiles[k]) for k, _ in statistics.QUANTILES]
        + [_fmt(lengths.max),
           _fmt(feature.truncation.rows_truncated_share, True)
           if feature.truncation else '-'])
    ids = feature.vocabulary or feature.identity
    if ids.out_of_range_ids:
      warnings.append(
          f'- **`{feature.name}`: {ids.out_of_range_ids} ids out of range** '
          f'(min {ids.min_id}, max {ids.max_id}); they fail on CPU and are '
          'clamped on TPU.')
    if feature.vocabulary:
      v = feature.vocabulary
      vocab_rows.append(
          [f'`{feature.name}`', str(v.vocabulary_size), str(v.num_oov_buckets),
           str(v.num_ids), _fmt(v.oov_rate, True), str(v.out_of_range_ids),
           str(v.distinct_vocabulary_ids)]
          + [_fmt(v.top_coverage[k], True)
             for k, _ in statistics.COVERAGE_FRACTIONS])
    else:
      i = feature.identity
      identity_rows.append(
          [f'`{feature.name}`', str(i.num_buckets), str(i.num_ids),
           _fmt(i.min_id), _fmt(i.max_id), str(i.out_of_range_ids)])
  lines += _table(['feature', 'type', 'rows', 'empty', 'min', 'mean']
                  + [k for k, _ in statistics.QUANTILES]
                  + ['max', 'rows truncated'], length_rows)
  if vocab_rows:
    lines += ['### Vocabulary features', '']
    lines += _table(['feature', 'vocabulary', 'OOV buckets', 'ids', 'OOV rate',
                     'out of range', 'distinct seen']
                    + [k for k, _ in statistics.COVERAGE_FRACTIONS], vocab_rows)
  if identity_rows:
    lines += ['### Identity features', '']
    lines += _table(['feature', 'num_buckets', 'ids', 'min id', 'max id',
                     'out of range'], identity_rows)
  return lines + warnings + ([''] if warnings else [])


def write_report(result: statistics.EmbeddingStatisticsResult,
                 uri: str) -> Dict[str, str]:
  """Writes `report.md` and the PNGs under `uri`; returns name -> path."""
  tf.io.gfile.makedirs(uri)
  written = {}
  lines = ['# Embedding statistics', '']
  lines += _recommendation_lines(result)
  lines += _warning_lines(result)
  lines += _sparsecore_lines(result)
  for name in sorted(result.recommendations):
    file_name = plot_file_name(name)
    plot_lengths(result, name, os.path.join(uri, file_name))
    written[file_name] = os.path.join(uri, file_name)
    lines += [f'![{name} lengths]({file_name})', '']
  for split_name, split in sorted(result.splits.items()):
    lines += _split_lines(split_name, split)
  path = os.path.join(uri, REPORT_FILE)
  _write_bytes(path, '\n'.join(lines).encode('utf-8'))
  written[REPORT_FILE] = path
  return written
