"""The `EmbeddingStatsGen` component spec and its channel/parameter keys."""

from tfx.types import component_spec
from tfx.types import standard_artifacts

from components.embedding_stats import artifact

TRANSFORMED_EXAMPLES_KEY = 'transformed_examples'
TRANSFORM_GRAPH_KEY = 'transform_graph'
STATISTICS_KEY = 'statistics'
FEATURES_KEY = 'features'
POLICY_KEY = 'policy'
SPLITS_KEY = 'splits'
SPARSECORE_TOPOLOGY_KEY = 'sparsecore_topology'
CHECKS_KEY = 'checks'


class EmbeddingStatsGenSpec(component_spec.ComponentSpec):
  """Inputs: Transform's examples and graph; output: EmbeddingStatistics.

  Parameters are JSON strings: `features` a list of `FeatureToMeasure`,
  `policy` a `TruncationPolicy` (optional), `splits` a list of split names
  (optional, default all), `sparsecore_topology` a `SparseCoreTopology`
  (optional, default off), `checks` a `SplitChecks` (optional, defaults).
  """

  PARAMETERS = {
      FEATURES_KEY: component_spec.ExecutionParameter(type=str),
      POLICY_KEY: component_spec.ExecutionParameter(type=str, optional=True),
      SPLITS_KEY: component_spec.ExecutionParameter(type=str, optional=True),
      SPARSECORE_TOPOLOGY_KEY: component_spec.ExecutionParameter(
          type=str, optional=True),
      CHECKS_KEY: component_spec.ExecutionParameter(type=str, optional=True),
  }
  INPUTS = {
      TRANSFORMED_EXAMPLES_KEY: component_spec.ChannelParameter(
          type=standard_artifacts.Examples),
      TRANSFORM_GRAPH_KEY: component_spec.ChannelParameter(
          type=standard_artifacts.TransformGraph),
  }
  OUTPUTS = {
      STATISTICS_KEY: component_spec.ChannelParameter(
          type=artifact.EmbeddingStatistics),
  }
