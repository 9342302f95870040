"""`EmbeddingStatsGen`: id-list statistics and `max_sequence_length` choice."""

import json
from typing import Optional, Sequence, Union

from tfx import types
from tfx.dsl.components.base import base_beam_component
from tfx.dsl.components.base import executor_spec

from components.embedding_stats import artifact
from components.embedding_stats import config
from components.embedding_stats import executor
from components.embedding_stats import spec


class EmbeddingStatsGen(base_beam_component.BaseBeamComponent):
  """Measures the id features that feed TPU embedding tables.

  For each split and feature: an exact length histogram with quantiles,
  vocabulary OOV rate and coverage or identity id range; for sequence features
  a recommended `max_sequence_length` chosen on the reference split. Output:
  an `EmbeddingStatistics` artifact (`embedding_statistics.json`, `report.md`,
  PNGs), read back with `load_embedding_statistics`.
  """

  SPEC_CLASS = spec.EmbeddingStatsGenSpec
  EXECUTOR_SPEC = executor_spec.BeamExecutorSpec(executor.Executor)

  def __init__(
      self,
      transformed_examples: types.BaseChannel,
      transform_graph: types.BaseChannel,
      features: Union[str, Sequence[config.FeatureToMeasure]],
      policy: Optional[Union[str, config.TruncationPolicy]] = None,
      splits: Optional[Sequence[str]] = None):
    """Constructs the component.

    Args:
      transformed_examples: Channel of Transform's `transformed_examples`.
      transform_graph: Channel of Transform's `transform_graph`.
      features: The features to measure, as configs or their JSON.
      policy: How to choose sequence lengths; defaults to
        `TruncationPolicy()`.
      splits: Splits to measure; defaults to all splits of the examples.
    """
    if not isinstance(features, str):
      features = config.features_to_json(features)
    config.features_from_json(features)  # Fails fast on a bad config.
    if isinstance(policy, config.TruncationPolicy):
      policy = config.policy_to_json(policy)
    config.policy_from_json(policy)
    component_spec = spec.EmbeddingStatsGenSpec(
        transformed_examples=transformed_examples,
        transform_graph=transform_graph,
        features=features,
        policy=policy,
        splits=json.dumps(sorted(splits)) if splits is not None else None,
        statistics=types.Channel(type=artifact.EmbeddingStatistics))
    super().__init__(spec=component_spec)
