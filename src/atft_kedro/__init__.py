"""atft-kedro: cross-sectional stock-return prediction with ATFT-GAT-FAN."""

__version__ = "0.1.0"
