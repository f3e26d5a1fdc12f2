"""Hydra launcher plugin ``hydra/launcher=engine``: a whole sweep in one event loop."""
