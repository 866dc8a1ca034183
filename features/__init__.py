"""Stage 1 of the loop: features. Pure computations (DataFrames in, DataFrames out) and the Feast repository."""
