"""Raw data sources (synthetic market, the user's files, J-Quants), validation and schema mapping."""
