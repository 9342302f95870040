"""Every Python block of the guides runs as written.

The blocks of a document run in order in one namespace, as a reader would
paste them; names a block needs from outside (a Transform output) are given.
"""

import os
import re

import pytest

_ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
_BLOCK = re.compile(r'^```python\n(.*?)^```', re.S | re.M)


def python_blocks(path: str):
  with open(os.path.join(_ROOT, path), encoding='utf-8') as f:
    return _BLOCK.findall(f.read())


def _run(path: str, namespace: dict) -> dict:
  blocks = python_blocks(path)
  assert blocks, f'{path} has no Python block'
  for index, block in enumerate(blocks):
    exec(compile(block, f'{path} block {index + 1}', 'exec'), namespace)  # pylint: disable=exec-used
  return namespace


def test_readme_guide_runs():
  namespace = _run('README.md', {})
  pipeline = namespace['pipeline']
  ids = {component.id for component in pipeline.components}
  assert ids == {'ImportExampleGen', 'StatisticsGen', 'SchemaGen',
                 'Transform', 'EmbeddingStatsGen', 'TpuEmbeddingTrainer'}
  # The block itself asserts that the table-derived spec equals the
  # hand-written one.
  assert len(namespace['spec'].columns) == 3


@pytest.mark.slow
def test_embedding_readme_runs(movies_transform):
  namespace = _run('components/embedding/README.md',
                   {'TRANSFORM_GRAPH_URI': movies_transform[1]})
  assert set(namespace['feature_config']) == {'cast_xf', 'director_xf',
                                              'writer_xf'}


@pytest.mark.slow
def test_trainer_readme_runs(movies_transform, tmp_path):
  namespace = _run('components/trainer/README.md', {
      'EXAMPLES_URI': movies_transform[0],
      'TRANSFORM_GRAPH_URI': movies_transform[1],
      'OUTPUT_DIR': str(tmp_path)})
  assert namespace['result'].serving_model == str(tmp_path / 'serving')


def test_preprocessing_fn_of_the_guide_transforms(tmp_path, monkeypatch):
  """The guide's preprocessing_fn runs under Transform on a few rows."""
  import tensorflow as tf  # pylint: disable=g-import-not-at-top
  import tensorflow_transform as tft  # pylint: disable=g-import-not-at-top
  import tensorflow_transform.beam as tft_beam  # pylint: disable=g-import-not-at-top
  # Beam pickles the function by reference: the blocks become a module.
  (tmp_path / 'readme_guide.py').write_text('\n'.join(
      python_blocks('README.md')))
  monkeypatch.syspath_prepend(str(tmp_path))
  import readme_guide  # pylint: disable=g-import-not-at-top,import-error
  spec = {name: tf.io.VarLenFeature(tf.string)
          for name in ('user_id', 'item_id', 'history')}
  spec['clicked'] = tf.io.VarLenFeature(tf.int64)
  rows = [{'user_id': [b'u1'], 'item_id': [b'i1'], 'history': [],
           'clicked': [1]},
          {'user_id': [b'u2'], 'item_id': [b'i2'], 'history': [b'i1', b'i3'],
           'clicked': [0]}]
  with tft_beam.Context(temp_dir=str(tmp_path / 'tft')):
    (outputs, _), _ = ((rows, tft.DatasetMetadata.from_feature_spec(spec))
                       | tft_beam.AnalyzeAndTransformDataset(
                           readme_guide.preprocessing_fn))
  assert [r['clicked_xf'] for r in outputs] == [1, 0]
  histories = [list(r.get('history_xf$ragged_values', r.get('history_xf', [])))
               for r in outputs]
  assert [len(h) for h in histories] == [0, 2], outputs
  assert sorted(outputs[0]) == [
      'clicked_xf', 'history_xf$ragged_values', 'item_id_xf$ragged_values',
      'user_id_xf$ragged_values'], outputs
