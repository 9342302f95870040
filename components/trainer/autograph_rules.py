"""AutoGraph leaves tf_keras's own code alone, as TensorFlow does for keras.

AutoGraph converts every function a traced function calls unless its module
is on TensorFlow's do-not-convert list. The list names ``keras`` but not
``tf_keras``, where Keras 2 lives since TensorFlow 2.16, so each trace of a
training, evaluation or serving function converted tf_keras's layer,
optimizer and metric code: seconds per trace (the demo's first training step
took about 7.5 s; with this rule about 2 s). That code has no tensor-dependent
Python control flow; it ran unconverted for years as ``keras``. User models
keep AutoGraph: tf_keras's ``Layer.__call__`` converts the user's ``call``
itself.
"""

from absl import logging

try:
  # The list is not public API; TensorFlow's own converter tests extend it
  # the same way (seen in TensorFlow 2.16 and 2.21).
  from tensorflow.python.autograph.core import config  # pylint: disable=g-direct-tensorflow-import
except ImportError:  # A TensorFlow that moved it: traces are only slower.
  config = None

SKIPPED_PACKAGE = 'tf_keras'


def _is_skipped(rule) -> bool:
  return (isinstance(rule, config.DoNotConvert) and
          rule.matches(SKIPPED_PACKAGE))


def skip_tf_keras() -> bool:
  """Adds tf_keras to AutoGraph's do-not-convert rules; returns whether set.

  Idempotent. Where a TensorFlow version has no such list, nothing changes
  (traces are then only slower) and a line is logged.
  """
  rules = getattr(config, 'CONVERSION_RULES', None)
  if rules is None or not hasattr(config, 'DoNotConvert'):
    logging.info('AutoGraph has no conversion rules here; tf_keras is traced '
                 'with AutoGraph.')
    return False
  if not any(_is_skipped(rule) for rule in rules):
    config.CONVERSION_RULES = (
        config.DoNotConvert(SKIPPED_PACKAGE),) + tuple(rules)
  return True
