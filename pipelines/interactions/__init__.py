"""The interactions example: rating prediction from a user-item log.

A synthetic log the project generates itself (users, items, item categories,
the user's earlier items as a sequence, a 1-5 rating), written as TFRecords
and read with TFX's ImportExampleGen; a multiclass task over the ratings.
"""
