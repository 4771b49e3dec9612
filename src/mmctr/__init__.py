"""mmctr: multimodal click-through-rate prediction for the MicroLens-1M MMCTR format."""

__version__ = "0.1.0"
