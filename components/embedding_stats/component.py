"""`EmbeddingStatsGen`: id-list statistics and `max_sequence_length` choice."""

import json
from typing import Any, Mapping, Optional, Sequence, Union

from tfx import types
from tfx.dsl.components.base import base_beam_component
from tfx.dsl.components.base import executor_spec

from components.embedding_stats import artifact
from components.embedding_stats import config
from components.embedding_stats import executor
from components.embedding_stats import component_spec


def _as_json(value: Any, config_class: type) -> Optional[str]:
  """A config given as object, dict or JSON -> its JSON (None stays None)."""
  if value is None or isinstance(value, str):
    return value
  if isinstance(value, Mapping):
    value = config_class(**value)
  return config.config_to_json(value)


class EmbeddingStatsGen(base_beam_component.BaseBeamComponent):
  """Measures the id features that feed TPU embedding tables.

  For each split and feature: an exact length histogram with quantiles,
  vocabulary OOV rate and coverage or identity id range; for sequence features
  a recommended `max_sequence_length` chosen on the reference split; with a
  SparseCore topology, per-table SparseCore limits; warnings where a split
  differs from training in ways that cost accuracy. Output:
  an `EmbeddingStatistics` artifact (`embedding_statistics.json`, `report.md`,
  PNGs), read back with `load_embedding_statistics`.
  """

  SPEC_CLASS = component_spec.EmbeddingStatsGenSpec
  EXECUTOR_SPEC = executor_spec.BeamExecutorSpec(executor.Executor)

  def __init__(
      self,
      transformed_examples: types.BaseChannel,
      transform_graph: types.BaseChannel,
      features: Union[str, Sequence[config.FeatureToMeasure]],
      policy: Optional[Union[str, config.TruncationPolicy]] = None,
      splits: Optional[Sequence[str]] = None,
      sparsecore_topology: Optional[
          Union[str, Mapping[str, Any], config.SparseCoreTopology]] = None,
      checks: Optional[Union[str, Mapping[str, Any],
                             config.SplitChecks]] = None):
    """Constructs the component.

    Args:
      transformed_examples: Channel of Transform's `transformed_examples`.
      transform_graph: Channel of Transform's `transform_graph`.
      features: The features to measure, as configs or their JSON.
      policy: How to choose sequence lengths; defaults to
        `TruncationPolicy()`.
      splits: Splits to measure; defaults to all splits of the examples.
      sparsecore_topology: `SparseCoreTopology` (or its dict/JSON, e.g.
        `{'chips': 4, 'sparsecores_per_chip': 4, 'global_batch_size': 1024}`)
        whose SparseCore limits to recommend; None turns them off.
      checks: `SplitChecks` (or its dict/JSON): thresholds of the warnings
        and the training split; None means the defaults.
    """
    if not isinstance(features, str):
      features = config.features_to_json(features)
    config.features_from_json(features)  # Fails fast on a bad config.
    if isinstance(policy, config.TruncationPolicy):
      policy = config.policy_to_json(policy)
    config.policy_from_json(policy)
    sparsecore_topology = _as_json(sparsecore_topology,
                                   config.SparseCoreTopology)
    config.topology_from_json(sparsecore_topology)
    checks = _as_json(checks, config.SplitChecks)
    config.checks_from_json(checks)
    stats_spec = component_spec.EmbeddingStatsGenSpec(
        transformed_examples=transformed_examples,
        transform_graph=transform_graph,
        features=features,
        policy=policy,
        splits=json.dumps(sorted(splits)) if splits is not None else None,
        sparsecore_topology=sparsecore_topology,
        checks=checks,
        statistics=types.Channel(type=artifact.EmbeddingStatistics))
    super().__init__(spec=stats_spec)
