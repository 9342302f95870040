"""The movies demo: Rotten Tomatoes freshness from cast, crew and metadata."""
