"""L³Prune Studio compute worker: decoder LLMs as text encoders, pruned by their initial layer-wise loss."""
__version__ = "0.1.0"
