"""The default Keras model: the same small CNN as ``digits_cnn`` (PyTorch), for sklearn's 8x8 digits.

``input`` [batch, 8, 8, 1] float32 NHWC in [0, 1] -> ``logits`` [batch, 10].

Layer for layer it mirrors :mod:`pipeline.models.digits_cnn` (conv-BN-ReLU blocks of 64/128/128/128
channels, two 2x2 max-pools, dropout, a dense head), so the Keras and PyTorch default builds compare
two frameworks on one task. Keras is imported inside :func:`build`: importing this module (as recipe
validation does) loads no framework.
"""

from __future__ import annotations

from typing import Any


def build(width: int = 64, num_classes: int = 10, dropout: float = 0.1, input_name: str = "input") -> Any:
    """Factory for recipes: ``_target_: pipeline.models.digits_keras.build``. Returns a keras.Model."""
    import keras
    from keras import layers

    def block(x, channels: int, name: str):
        x = layers.Conv2D(channels, 3, padding="same", use_bias=False, name=f"{name}_conv")(x)
        x = layers.BatchNormalization(momentum=0.9, epsilon=1e-5, name=f"{name}_bn")(x)  # torch defaults
        return layers.ReLU(name=f"{name}_relu")(x)

    w = width
    inp = keras.Input(shape=(8, 8, 1), name=input_name)
    x = block(inp, w, "block1")  # 8x8
    x = block(x, 2 * w, "block2")
    x = layers.MaxPooling2D(2, name="pool1")(x)  # 4x4
    x = block(x, 2 * w, "block3")
    x = block(x, 2 * w, "block4")
    x = layers.MaxPooling2D(2, name="pool2")(x)  # 2x2
    x = layers.Flatten(name="flatten")(x)
    x = layers.Dropout(dropout, name="dropout")(x)
    out = layers.Dense(num_classes, name="logits")(x)
    return keras.Model(inp, out, name="digits_keras")
