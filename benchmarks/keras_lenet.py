"""The same LeNet in Keras 3 on TensorFlow-CPU, timed epoch by epoch. Run with the Keras interpreter:

    $KERAS_PYTHON benchmarks/keras_lenet.py DATA.npz --epochs 5 --batch 100 --lr 0.05 --momentum 0.9 --threads 2

DATA.npz holds x_train/y_train/x_val/y_val (uint8 N x 28 x 28, int labels), mean and std, written by
lenet_mnist.py. Same network as deepvision's `lenet` (conv 5x5x20 tanh, max-pool, conv 5x5x50 tanh,
max-pool, dense 500 tanh, dense 10), same normalisation, SGD with momentum, shuffled batches. `--threads`
sets TensorFlow's intra- and inter-op pools (2 = the cores of the benchmark machine). Prints one JSON line:
training samples/s per epoch of one `fit` for all epochs (a callback times each epoch's training
pass; the first epoch includes tracing) and validation accuracy.
"""

import argparse
import json
import time


def main():
    p = argparse.ArgumentParser()
    p.add_argument("data")
    p.add_argument("--epochs", type=int, default=5)
    p.add_argument("--batch", type=int, default=100)
    p.add_argument("--lr", type=float, default=0.05)
    p.add_argument("--momentum", type=float, default=0.9)
    p.add_argument("--threads", type=int, default=0, help="TensorFlow intra/inter-op threads (0: TF's choice)")
    a = p.parse_args()
    import numpy as np

    from keras_peer import keras_setup  # beside this file

    tf, keras = keras_setup(a.threads)
    from keras import layers

    d = np.load(a.data)
    mean, std = float(d["mean"]), float(d["std"])
    x_train = ((d["x_train"].astype(np.float32) / 255 - mean) / std)[..., None]  # N x 28 x 28 x 1 (TF's layout)
    x_val = ((d["x_val"].astype(np.float32) / 255 - mean) / std)[..., None]
    y_train, y_val = d["y_train"].astype(np.int64), d["y_val"].astype(np.int64)
    model = keras.Sequential([
        keras.Input((28, 28, 1)),
        layers.Conv2D(20, 5, activation="tanh"),
        layers.MaxPooling2D(2, 2),
        layers.Conv2D(50, 5, activation="tanh"),
        layers.MaxPooling2D(2, 2),
        layers.Flatten(),
        layers.Dense(500, activation="tanh"),
        layers.Dense(10),
    ])
    model.compile(optimizer=keras.optimizers.SGD(a.lr, momentum=a.momentum),
                  loss=keras.losses.SparseCategoricalCrossentropy(from_logits=True), metrics=["accuracy"])
    speeds, accs = [], []

    class Timer(keras.callbacks.Callback):  # times the training pass of each epoch of the one fit
        def on_epoch_begin(self, epoch, logs=None):
            self.t0 = time.perf_counter()

        def on_test_begin(self, logs=None):  # the epoch's training pass is over, validation starts
            speeds.append(len(y_train) / (time.perf_counter() - self.t0))

        def on_epoch_end(self, epoch, logs=None):
            accs.append(float(logs["val_accuracy"]))

    # one fit for all epochs, as Keras users train (a fit per epoch would re-trace and rebuild the data
    # adapter every time); validation runs after each epoch's timed training pass
    model.fit(x_train, y_train, batch_size=a.batch, epochs=a.epochs, shuffle=True, verbose=0,
              validation_data=(x_val, y_val), callbacks=[Timer()])
    print(json.dumps({"samples_per_s": speeds, "val_acc": accs, "keras": keras.__version__,
                      "tensorflow": tf.__version__}))


if __name__ == "__main__":
    main()
