"""Embedding statistics: id-list lengths, vocabulary use, sequence lengths.

Public API (imported lazily, so that Beam workers that only need the
PTransforms do not import TFX):
  FeatureToMeasure, TruncationPolicy, SparseCoreTopology, SplitChecks:
    configs.
  ComputeEmbeddingStatistics, GenerateEmbeddingStatistics,
    ReadExamplesAsRecordBatches, RecommendSequenceLengths,
    EmbeddingStatsCombineFn: Beam.
  resolve_features, MeasuredFeature: configs completed from a Transform output.
  EmbeddingStatsGen: the TFX component; EmbeddingStatistics: its artifact.
  load_embedding_statistics: reads an artifact into an
    `EmbeddingStatisticsResult` (`recommended_max_sequence_lengths()`,
    `recommended_sparsecore_limits()`, `warnings`, `to_summary()`).
"""

from components import lazy_exports

_EXPORTS = {
    'FeatureToMeasure': 'config',
    'TruncationPolicy': 'config',
    'SparseCoreTopology': 'config',
    'SplitChecks': 'config',
    'ComputeEmbeddingStatistics': 'beam_stats',
    'EmbeddingStatsCombineFn': 'beam_stats',
    'GenerateEmbeddingStatistics': 'beam_stats',
    'ReadExamplesAsRecordBatches': 'beam_stats',
    'RecommendSequenceLengths': 'beam_stats',
    'resolve_features': 'features',
    'MeasuredFeature': 'features',
    'EmbeddingStatsGen': 'component',
    'EmbeddingStatistics': 'artifact',
    'EmbeddingStatisticsResult': 'statistics',
    'load_embedding_statistics': 'statistics',
}

__all__ = sorted(_EXPORTS)

__getattr__, __dir__ = lazy_exports.module_attributes(
    __name__, _EXPORTS, globals())
