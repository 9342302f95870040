"""What the OOV option is worth on cold users (``make bench``, one case).

Builds the interactions example's cold-user variant
(``pipelines.interactions.cold_users``: half of the users only in
evaluation, the user OOV row never trained), then trains it twice with the
same seed and steps, with ``oov_rows='random'`` and ``'zero'``, and reports
the evaluation metrics of both and the statistics' warnings.
"""

import tempfile
from typing import Any, Dict, Mapping

MODES = ('random', 'zero')


def run_case(case: Mapping[str, Any]) -> Dict[str, Any]:
  """Metrics per OOV mode; ``case['train_steps']`` steps each."""
  from pipelines.interactions import cold_users  # pylint: disable=g-import-not-at-top
  with tempfile.TemporaryDirectory(prefix='oov_rows_') as root:
    study = cold_users.ColdUserStudy.build(root)
    metrics = {mode: study.evaluate(mode, case['train_steps']).eval_metrics
               for mode in MODES}
  return {'metrics': metrics, 'train_steps': case['train_steps'],
          'warnings': [f'{w.check} {w.feature}'
                       for w in study.statistics.warnings]}
