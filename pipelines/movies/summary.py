"""The end-of-run summary of the movies pipeline: printed and saved as JSON.

Built from what the metadata store says the latest run produced, so it
describes the artifacts that exist, whether computed now or taken from cache.
Each section reads one component's outputs; a section whose component did not
run is left out.
"""

import json
import os
from typing import Any, Callable, Dict, List

import tensorflow as tf
import tensorflow_transform as tft

from components.movies_example_gen import movie_examples
from pipelines import run_summary
from pipelines.movies import features

SUMMARY_FILE = 'summary.json'


def _split_dirs(uri: str) -> Dict[str, str]:
  return {
      name[len('Split-'):]: os.path.join(uri, name)
      for name in sorted(tf.io.gfile.listdir(uri))
      if name.rstrip('/').startswith('Split-')
  }


def count_records(split_dir: str) -> int:
  """Number of records in a split folder of gzipped TFRecords."""
  files = tf.io.gfile.glob(os.path.join(split_dir, '*'))
  dataset = tf.data.TFRecordDataset(files, compression_type='GZIP')
  return int(dataset.reduce(0, lambda count, _: count + 1).numpy())


def _examples_section(node: run_summary.NodeRun) -> Dict[str, Any]:
  examples = node.outputs['examples'][0]
  dropped = {
      reason: examples.custom_properties[f'dropped_{reason}'].int_value
      for reason in movie_examples.DROP_REASONS
      if f'dropped_{reason}' in examples.custom_properties
  }
  rows = {split: count_records(path.rstrip('/'))
          for split, path in _split_dirs(examples.uri).items()}
  return {'rows_per_split': rows, 'dropped_rows': dropped}


def vocabulary_names() -> List[str]:
  """The vocabularies the preprocessing_fn writes, one per name, in order."""
  return list(dict.fromkeys(
      features.vocabulary_name(f) for f in features.CATEGORICAL_FEATURES))


def _transform_section(node: run_summary.NodeRun) -> Dict[str, Any]:
  graph = tft.TFTransformOutput(node.outputs['transform_graph'][0].uri)
  return {
      'vocabulary_sizes': {
          name: int(graph.vocabulary_size_by_name(name))
          for name in vocabulary_names()
      }
  }


def _embedding_stats_section(node: run_summary.NodeRun) -> Dict[str, Any]:
  from components.embedding_stats import statistics  # pylint: disable=g-import-not-at-top
  uri = node.outputs['statistics'][0].uri
  section = statistics.load_embedding_statistics(uri).to_summary()
  section['report'] = os.path.join(uri, 'report.md')
  return {'embedding_statistics': section}


def _trainer_section(node: run_summary.NodeRun) -> Dict[str, Any]:
  from components.trainer import executor  # pylint: disable=g-import-not-at-top
  path = os.path.join(node.outputs['model_run'][0].uri,
                      executor.TRAINING_RESULT_FILE)
  with tf.io.gfile.GFile(path) as f:
    return {'training': json.load(f)}


# Node id -> the section it contributes. Later components add theirs here.
SECTIONS: Dict[str, Callable[[run_summary.NodeRun], Dict[str, Any]]] = {
    'MoviesExampleGen': _examples_section,
    'Transform': _transform_section,
    'EmbeddingStatsGen': _embedding_stats_section,
    'TpuEmbeddingTrainer': _trainer_section,
}


def build_summary(nodes: List[run_summary.NodeRun]) -> Dict[str, Any]:
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
  for node in nodes:
    section = SECTIONS.get(node.node_id)
    if section and node.outputs:
      summary.update(section(node))
  return summary


def write_summary(summary: Dict[str, Any], output_dir: str) -> str:
  """Writes summary.json into ``output_dir``; returns its path."""
  path = os.path.join(output_dir, SUMMARY_FILE)
  with tf.io.gfile.GFile(path, 'w') as f:
    json.dump(summary, f, indent=2, sort_keys=True)
  return path


def format_summary(summary: Dict[str, Any]) -> str:
  """The summary as the lines a person reads at the end of `make demo`."""
  lines = ['', 'Pipeline run summary', '====================']
  for c in summary['components']:
    lines.append(f"  {c['name']:<24} {c['state']:<9} {c['seconds']:>8.1f} s")
  if 'rows_per_split' in summary:
    lines.append('Examples per split:')
    lines += [f'  {k:<24} {v:>8,}' for k, v in summary['rows_per_split'].items()]
    lines.append('Rows dropped:')
    lines += [f'  {k:<24} {v:>8,}' for k, v in summary['dropped_rows'].items()]
  if 'vocabulary_sizes' in summary:
    lines.append('Vocabulary size (before OOV buckets):')
    lines += [f'  {k:<24} {v:>8,}'
              for k, v in summary['vocabulary_sizes'].items()]
  if 'embedding_statistics' in summary:
    lines += _format_lengths(summary['embedding_statistics'])
  if 'training' in summary:
    training = summary['training']
    lines.append(f"Training on {training['device']}: {training['steps']} steps, "
                 f"{training['examples_per_second']:,.0f} examples/s")
    lines.append(f"  eval AUC {training['eval_metrics']['auc']:.4f}, log loss "
                 f"{training['eval_metrics']['log_loss']:.4f} on "
                 f"{training['eval_metrics']['examples']:,.0f} examples")
    lines.append(f"  serving model: {training['serving_model']}")
  return '\n'.join(lines)


def _format_lengths(stats: Dict[str, Any]) -> List[str]:
  lines = ['Sequence lengths chosen from the data:']
  for feature, length in sorted(stats['max_sequence_length'].items()):
    lines.append(
        f"  {feature:<24} max_sequence_length {length:>4}  truncates "
        f"{stats['rows_truncated_share'][feature]:.2%} of rows, "
        f"{stats['ids_truncated_share'][feature]:.2%} of ids")
  lines.append(f"  report with histograms: {stats['report']}")
  return lines
