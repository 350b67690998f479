"""bertforge: pretrain and fine-tune BERT on your own text, as a DVC pipeline tracked in MLflow."""

from bertforge.errors import BertforgeError

__version__ = "0.1.0"
__all__ = ["BertforgeError", "__version__"]
