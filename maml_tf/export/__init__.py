"""SavedModel export of a meta-learned initialisation (`python -m maml_tf.export`)."""
from maml_tf.export.saved_model import export_saved_model, read_metadata

__all__ = ["export_saved_model", "read_metadata"]
