"""The public API: MAML on any Keras 3 model (`maml_tf.MAML`), and what it needs around it.

    maml = maml_tf.MAML(model, loss, inner_lr=0.4, num_inner_steps=1)
    maml.meta_update((support_x, support_y, query_x, query_y), keras.optimizers.Adam(1e-3))
    fast = maml.adapt(support_x[0], support_y[0]); logits = fast(query_x[0])
"""
from maml_tf.api.batch_norm import ExactBatchNormalization, InexactMomentsWarning, inexact_batch_norm_layers
from maml_tf.api.export import export_maml
from maml_tf.api.maml import MAML, FastWeights

__all__ = ["MAML", "FastWeights", "ExactBatchNormalization", "InexactMomentsWarning", "inexact_batch_norm_layers",
           "export_maml"]
