"""The interactions example's feature table: the one source of feature names.

``data`` writes these keys; ``preprocessing_fn``, the embedding spec and the
run summary read ``TABLE``. The item and the user's history share the item
vocabulary, so they share one table: the history is a sequence member of a
shared group.
"""

from pipelines import feature_table
from pipelines.feature_table import Feature
from pipelines.feature_table import LIST
from pipelines.feature_table import SCALAR
from pipelines.feature_table import transformed_name

USER = 'user_id'
ITEM = 'item_id'
CATEGORY = 'category'
HISTORY = 'history'  # The user's earlier items, oldest first.
LABEL = 'rating'  # 1 to 5.
TIMESTAMP = 'timestamp'  # Orders a user's interactions; not a model input.

ITEM_VOCABULARY = 'item'
NUM_RATINGS = 5

TABLE = feature_table.FeatureTable([
    Feature(USER, SCALAR, dimension=16),
    Feature(ITEM, SCALAR, dimension=16, vocabulary=ITEM_VOCABULARY),
    Feature(HISTORY, LIST, dimension=16, vocabulary=ITEM_VOCABULARY,
            sequence=True),
    Feature(CATEGORY, SCALAR, dimension=8),
])

TRANSFORMED_LABEL = transformed_name(LABEL)
