"""Executor of `EmbeddingStatsGen`: a Beam pass over Transform's examples."""

import json
import os
from typing import Any, Dict, List, Optional

from absl import logging
import tensorflow_transform as tft
from tfx.dsl.components.base import base_beam_executor
from tfx.types import artifact_utils

from components.embedding_stats import beam_stats
from components.embedding_stats import config
from components.embedding_stats import features as features_lib
from components.embedding_stats import report
from components.embedding_stats import component_spec
from components.embedding_stats import statistics


def _select_splits(available: List[str], requested: Optional[str],
                   policy: config.TruncationPolicy,
                   checks: Optional[config.SplitChecks] = None) -> List[str]:
  """The splits to measure: the `splits` parameter, or all of them."""
  checks = checks or config.SplitChecks()
  splits = json.loads(requested) if requested else list(available)
  missing = sorted(set(splits) - set(available))
  if missing:
    raise ValueError(f'Splits {missing} are not in the examples {available}.')
  if policy.reference_split not in splits:
    raise ValueError(
        f'The policy reference split {policy.reference_split!r} must be '
        f'measured; selected splits: {splits}.')
  if checks.training_split(policy) not in splits:
    raise ValueError(
        f'The training split {checks.training_split(policy)!r} of the checks '
        f'must be measured; selected splits: {splits}.')
  return sorted(splits)


class Executor(base_beam_executor.BaseBeamExecutor):
  """Computes embedding statistics and writes JSON, report and plots."""

  def Do(self, input_dict: Dict[str, List[Any]],
         output_dict: Dict[str, List[Any]],
         exec_properties: Dict[str, Any]) -> None:
    self._log_startup(input_dict, output_dict, exec_properties)
    examples = artifact_utils.get_single_instance(
        input_dict[component_spec.TRANSFORMED_EXAMPLES_KEY])
    transform_graph = artifact_utils.get_single_instance(
        input_dict[component_spec.TRANSFORM_GRAPH_KEY])
    output = artifact_utils.get_single_instance(
        output_dict[component_spec.STATISTICS_KEY])

    policy = config.policy_from_json(exec_properties.get(component_spec.POLICY_KEY))
    topology = config.topology_from_json(
        exec_properties.get(component_spec.SPARSECORE_TOPOLOGY_KEY))
    checks = config.checks_from_json(exec_properties.get(component_spec.CHECKS_KEY))
    features = features_lib.resolve_features(
        config.features_from_json(exec_properties[component_spec.FEATURES_KEY]),
        tft.TFTransformOutput(transform_graph.uri))
    splits = _select_splits(
        artifact_utils.decode_split_names(examples.split_names),
        exec_properties.get(component_spec.SPLITS_KEY), policy, checks)
    file_patterns = {
        split: os.path.join(artifact_utils.get_split_uri([examples], split),
                            '*')
        for split in splits}

    with self._make_beam_pipeline() as pipeline:
      _ = (pipeline
           | 'GenerateEmbeddingStatistics'
           >> beam_stats.GenerateEmbeddingStatistics(
               file_patterns, features, policy, output.uri, topology,
               checks))

    # Plots are drawn here, not on workers, so workers need no matplotlib.
    result = statistics.load_embedding_statistics(output.uri)
    report.write_report(result, output.uri)
    output.splits = splits
    logging.info('Embedding statistics written to %s: %s', output.uri,
                 result.to_summary())
    for warning in result.warnings:
      logging.warning('EmbeddingStatsGen: %s', warning.message)
