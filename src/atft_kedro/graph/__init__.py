"""Per-date correlation kNN stock graphs and their compact store."""
