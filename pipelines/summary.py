"""The end-of-run summary of any pipeline built by ``pipelines.builder``.

Built from what the metadata store says the latest run produced, so it
describes the artifacts that exist, whether computed now or taken from cache.
Each section reads one component's outputs; a section whose component did not
run is left out. An example adds its own sections (``extra_sections``) and
lines (``extra_lines``), as the movies example does for its dropped rows.
"""

import json
import os
from typing import Any, Callable, Dict, List, Mapping, Optional

import tensorflow as tf
import tensorflow_transform as tft
from tfx.types import artifact_utils
from tfx.types import standard_artifacts

from pipelines import builder
from pipelines import run_summary

SUMMARY_FILE = 'summary.json'
Section = Callable[[run_summary.NodeRun], Dict[str, Any]]
Lines = Callable[[Dict[str, Any]], List[str]]


def count_records(split_dir: str) -> int:
  """Number of records in a split folder of gzipped TFRecords."""
  files = tf.io.gfile.glob(os.path.join(split_dir, '*'))
  dataset = tf.data.TFRecordDataset(files, compression_type='GZIP')
  return int(dataset.reduce(0, lambda count, _: count + 1).numpy())


def rows_per_split(artifact_proto: Any) -> Dict[str, int]:
  """Records per split of an Examples artifact (as read from the store)."""
  examples = standard_artifacts.Examples()
  examples.set_mlmd_artifact(artifact_proto)
  return {split: count_records(
              artifact_utils.get_split_uri([examples], split))
          for split in artifact_utils.decode_split_names(examples.split_names)}


def _examples_section(node: run_summary.NodeRun) -> Dict[str, Any]:
  return {'rows_per_split': rows_per_split(node.outputs['examples'][0])}


def vocabulary_sizes(transform_graph_uri: str) -> Dict[str, int]:
  """Size of every named vocabulary Transform wrote, by name."""
  output = tft.TFTransformOutput(transform_graph_uri)
  assets = os.path.join(output.transform_savedmodel_dir, 'assets')
  names = sorted(tf.io.gfile.listdir(assets)) if tf.io.gfile.isdir(
      assets) else []
  return {name: int(output.vocabulary_size_by_name(name)) for name in names}


def _transform_section(node: run_summary.NodeRun) -> Dict[str, Any]:
  return {'vocabulary_sizes': vocabulary_sizes(
      node.outputs['transform_graph'][0].uri)}


def _embedding_stats_section(node: run_summary.NodeRun) -> Dict[str, Any]:
  from components.embedding_stats import statistics  # pylint: disable=g-import-not-at-top
  uri = node.outputs['statistics'][0].uri
  section = statistics.load_embedding_statistics(uri).to_summary()
  section['report'] = os.path.join(uri, 'report.md')
  return {'embedding_statistics': section}


def _trainer_section(node: run_summary.NodeRun) -> Dict[str, Any]:
  from components.trainer import training  # pylint: disable=g-import-not-at-top
  result = training.TrainingResult.load(node.outputs['model_run'][0].uri)
  return {'training': json.loads(result.to_json())}


SECTIONS: Dict[str, Section] = {
    builder.TRANSFORM: _transform_section,
    builder.EMBEDDING_STATS_GEN: _embedding_stats_section,
    builder.TRAINER: _trainer_section,
}


def _is_example_gen(node: run_summary.NodeRun) -> bool:
  return 'examples' in node.outputs and node.node_id not in SECTIONS


def build_summary(nodes: List[run_summary.NodeRun],
                  extra_sections: Optional[Mapping[str, Section]] = None
                 ) -> Dict[str, Any]:
  """A JSON-serialisable description of a run."""
  summary: Dict[str, Any] = {
      'components': [{
          'name': n.node_id,
          'state': n.state,
          'seconds': round(n.seconds, 1),
      } for n in nodes],
      'artifacts': {
          f'{n.node_id}.{key}': artifacts[0].uri
          for n in nodes for key, artifacts in n.outputs.items() if artifacts
      },
  }
  sections = {**SECTIONS, **(extra_sections or {})}
  for node in nodes:
    if not node.outputs:
      continue
    if _is_example_gen(node):
      summary.update(_examples_section(node))
    section = sections.get(node.node_id)
    if section:
      summary.update(section(node))
  return summary


def write_summary(summary: Dict[str, Any], output_dir: str) -> str:
  """Writes summary.json into ``output_dir``; returns its path."""
  path = os.path.join(output_dir, SUMMARY_FILE)
  with tf.io.gfile.GFile(path, 'w') as f:
    json.dump(summary, f, indent=2, sort_keys=True)
  return path


def _table(title: str, values: Mapping[str, Any]) -> List[str]:
  return [title] + [f'  {k:<24} {v:>8,}' for k, v in values.items()]


def format_summary(summary: Dict[str, Any],
                   extra_lines: Optional[Lines] = None) -> str:
  """The summary as the lines a person reads at the end of a run."""
  lines = ['', 'Pipeline run summary', '====================']
  for c in summary['components']:
    lines.append(f"  {c['name']:<24} {c['state']:<9} {c['seconds']:>8.1f} s")
  if 'rows_per_split' in summary:
    lines += _table('Examples per split:', summary['rows_per_split'])
  if extra_lines:
    lines += extra_lines(summary)
  if 'vocabulary_sizes' in summary:
    lines += _table('Vocabulary size (before OOV buckets):',
                    summary['vocabulary_sizes'])
  if 'embedding_statistics' in summary:
    lines += _format_lengths(summary['embedding_statistics'])
  if 'training' in summary:
    lines += _format_training(summary['training'])
  return '\n'.join(lines)


def _format_lengths(stats: Dict[str, Any]) -> List[str]:
  lines = ['Sequence lengths chosen from the data:']
  for feature, length in sorted(stats['max_sequence_length'].items()):
    lines.append(
        f"  {feature:<24} max_sequence_length {length:>4}  truncates "
        f"{stats['rows_truncated_share'][feature]:.2%} of rows, "
        f"{stats['ids_truncated_share'][feature]:.2%} of ids")
  lines.append(f"  report with histograms: {stats['report']}")
  warnings = stats.get('warnings', [])
  if warnings:
    lines.append(f'Embedding statistics warnings ({len(warnings)}):')
    lines += [f'  - {w}' for w in warnings]
  return lines


def _format_training(training: Dict[str, Any]) -> List[str]:
  metrics = dict(training['eval_metrics'])
  examples = metrics.pop('examples', 0)
  shown = ', '.join(f'{name} {value:.4f}' for name, value in metrics.items())
  return [
      f"Training ({training['task']}) on {training['device']}, engine "
      f"{training['engine']}: "
      f"{training['steps']} steps, "
      f"{training['examples_per_second']:,.0f} examples/s",
      f'  eval {shown} on {examples:,.0f} examples',
      f"  serving model: {training['serving_model']}",
  ] + _format_warm_start(training.get('warm_start') or {})


def _format_warm_start(warm: Dict[str, Any]) -> List[str]:
  """Per table rows kept / new / dropped and the warm share of ids."""
  if not warm:
    return []
  lines = [f"  warm start from {warm['base_model']} (dense model: "
           f"{warm['dense']}):"]
  for name, table in warm['tables'].items():
    lines.append(
        f"    {name:<14} {table['status']:<5} kept {table['rows_kept']:>7,} "
        f"new {table['rows_new']:>7,} dropped {table['rows_dropped']:>7,} "
        f"OOV {table['oov_buckets']:<13} "
        f"{100 * table['warm_id_share']:5.1f}% of ids warm")
  return lines
