"""The `EmbeddingStatistics` artifact type.

Kubeflow Pipelines v2 compilation only accepts custom type names matching
`^[a-z][a-z0-9-_]{2,20}[.][A-Z][a-zA-Z0-9-_]{2,49}$`, hence the
`tpu_embedding_tfx.` namespace (underscores are allowed there). At run time
it imports the title as a class path, hence the top-level `tpu_embedding_tfx`
module. It also rejects custom types that declare `PROPERTIES`, so the split
names are a custom property.
"""

from tfx.types import artifact as artifact_lib
from tfx.types import artifact_utils

TYPE_NAME = 'tpu_embedding_tfx.EmbeddingStatistics'
_SPLIT_NAMES = 'split_names'


class EmbeddingStatistics(artifact_lib.Artifact):
  """A directory with `embedding_statistics.json`, `report.md` and PNGs."""

  TYPE_NAME = TYPE_NAME

  @property
  def splits(self):
    """The measured split names."""
    return artifact_utils.decode_split_names(
        self.get_string_custom_property(_SPLIT_NAMES))

  @splits.setter
  def splits(self, splits) -> None:
    self.set_string_custom_property(
        _SPLIT_NAMES, artifact_utils.encode_split_names(list(splits)))
