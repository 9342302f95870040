"""The `EmbeddingStatistics` artifact type.

Kubeflow Pipelines v2 compilation only accepts custom type names matching
`^[a-z][a-z0-9-_]{2,20}[.][A-Z][a-zA-Z0-9-_]{2,49}$`, hence the
`tpu_embedding_tfx.` namespace (underscores are allowed there).
"""

from tfx.types import artifact as artifact_lib
from tfx.types import artifact_utils

TYPE_NAME = 'tpu_embedding_tfx.EmbeddingStatistics'


class EmbeddingStatistics(artifact_lib.Artifact):
  """A directory with `embedding_statistics.json`, `report.md` and PNGs."""

  TYPE_NAME = TYPE_NAME
  PROPERTIES = {
      'span': artifact_lib.Property(type=artifact_lib.PropertyType.INT),
      'split_names': artifact_lib.Property(
          type=artifact_lib.PropertyType.STRING),
  }

  @property
  def splits(self):
    """The measured split names."""
    return artifact_utils.decode_split_names(self.split_names)

  @splits.setter
  def splits(self, splits) -> None:
    self.split_names = artifact_utils.encode_split_names(list(splits))
