"""The Feast repository: definitions here, `feature_store.yaml` generated per data directory (features.store)."""
