"""Stage 1 of the loop: features. Pure computations (DataFrames in, DataFrames out) and the Feast repository.

Public entry points (import the submodule; nothing here imports Feast):
- features.compute.compute_features(tables, cutoffs) and the four family functions;
- features.labels.compute_labels(orders, pairs, horizons, as_of);
- features.training_set.cutoff_grid / build_training_set / feature_names;
- features.store.apply / build / materialize / push / FeaturePusher;
- features.online.OnlineFeatureReader (the serving hot path) and forget_customers.
"""
