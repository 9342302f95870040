"""Pipeline definitions, runners and the movies demo pipeline."""
