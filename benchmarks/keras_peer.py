"""The reference's Keras networks trained the way Keras users train them: one `model.fit` for all epochs.

Run with the Keras interpreter (Keras 3 on TensorFlow-CPU), normally by `reference_nets.py`:

    $KERAS_PYTHON benchmarks/keras_peer.py NET --samples 4096 --epochs 4 --threads 2

NET is lenet (28x28x1, batch 100, SGD momentum 0.9), minivgg (32x32x3, batch 64, SGD Nesterov 0.9) or
emotion_vgg (48x48x1, batch 128, Adam 1e-3, ELU + BN), built layer for layer like deepvision's models
of the same names (the trainable-parameter count is printed for checking). Data: random uint8 images
of that shape scaled to 0..1 in memory, random labels, shuffled every epoch. A callback times every
epoch of the single `fit`; the first epoch (tracing, graph building) is the warm-up. Prints one JSON
line: samples/s of every epoch, the trainable parameters, Keras' and TensorFlow's versions.
"""

import argparse
import json
import os
import time

NETS = {"lenet": ((28, 28, 1), 10, 100), "minivgg": ((32, 32, 3), 10, 64), "emotion_vgg": ((48, 48, 1), 6, 128)}


def build(name, keras, layers):
    shape, classes, _ = NETS[name]
    if name == "lenet":
        body = [layers.Conv2D(20, 5, activation="tanh"), layers.MaxPooling2D(2, 2),
                layers.Conv2D(50, 5, activation="tanh"), layers.MaxPooling2D(2, 2), layers.Flatten(),
                layers.Dense(500, activation="tanh"), layers.Dense(classes)]
        opt = keras.optimizers.SGD(0.05, momentum=0.9)
    elif name == "minivgg":
        body = []
        for width in (32, 64):
            for _ in range(2):
                body += [layers.Conv2D(width, 3, padding="same", activation="relu"), layers.BatchNormalization()]
            body += [layers.MaxPooling2D(2, 2), layers.Dropout(0.25)]
        body += [layers.Flatten(), layers.Dense(512, activation="relu"), layers.BatchNormalization(),
                 layers.Dropout(0.5), layers.Dense(classes)]
        opt = keras.optimizers.SGD(0.01, momentum=0.9, nesterov=True)
    else:
        body = []
        for width in (32, 64, 128):
            for _ in range(2):
                body += [layers.Conv2D(width, 3, padding="same", kernel_initializer="he_normal"), layers.ELU(),
                         layers.BatchNormalization()]
            body += [layers.MaxPooling2D(2, 2), layers.Dropout(0.25)]
        body.append(layers.Flatten())
        for _ in range(2):
            body += [layers.Dense(64, kernel_initializer="he_normal"), layers.ELU(), layers.BatchNormalization(),
                     layers.Dropout(0.5)]
        body.append(layers.Dense(classes, kernel_initializer="he_normal"))
        opt = keras.optimizers.Adam(1e-3)
    model = keras.Sequential([keras.Input(shape), *body])
    model.compile(optimizer=opt, loss=keras.losses.SparseCategoricalCrossentropy(from_logits=True),
                  metrics=["accuracy"])
    return model


def keras_setup(threads):
    """TensorFlow quiet, its thread pools set (0: its own choice), Keras seeded: (tensorflow, keras)."""
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
    os.environ.setdefault("KERAS_BACKEND", "tensorflow")
    import tensorflow as tf

    if threads:
        tf.config.threading.set_intra_op_parallelism_threads(threads)
        tf.config.threading.set_inter_op_parallelism_threads(threads)
    import keras

    keras.utils.set_random_seed(0)
    return tf, keras


def main():
    p = argparse.ArgumentParser()
    p.add_argument("net", choices=sorted(NETS))
    p.add_argument("--samples", type=int, default=4096)
    p.add_argument("--epochs", type=int, default=4, help="epochs of the one fit, the first is the warm-up")
    p.add_argument("--threads", type=int, default=0, help="TensorFlow intra/inter-op threads (0: TF's choice)")
    a = p.parse_args()
    import numpy as np

    tf, keras = keras_setup(a.threads)
    from keras import layers

    shape, classes, batch = NETS[a.net]
    rng = np.random.default_rng(0)
    x = rng.integers(0, 256, (a.samples, *shape), dtype=np.uint8).astype(np.float32) / 255
    y = rng.integers(0, classes, a.samples).astype(np.int64)
    model = build(a.net, keras, layers)
    times = []

    class Timer(keras.callbacks.Callback):
        def on_epoch_begin(self, epoch, logs=None):
            self.t0 = time.perf_counter()

        def on_epoch_end(self, epoch, logs=None):
            times.append(time.perf_counter() - self.t0)

    model.fit(x, y, batch_size=batch, epochs=a.epochs, shuffle=True, verbose=0, callbacks=[Timer()])
    params = int(sum(np.prod(w.shape) for w in model.trainable_weights))
    print(json.dumps({"net": a.net, "samples_per_s": [a.samples / t for t in times], "params": params,
                      "keras": keras.__version__, "tensorflow": tf.__version__}))


if __name__ == "__main__":
    main()
