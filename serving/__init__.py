"""Stage 3 of the loop: the BentoML prediction service over the champion models and the online store."""
