"""bnviz: watch Batch Normalization change what a network's layers see while it trains.

The engine (this package) trains, records and saves runs and never imports streamlit; the
web app renders them. Importing the package itself loads nothing heavy (no torch).
"""

__version__ = "0.1.0"
