"""Point-in-time panel, features, targets, normalisation and splits."""
