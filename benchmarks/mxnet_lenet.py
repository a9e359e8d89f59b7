"""The reference tutorial's LeNet (T2) in MXNet 1.9.1, timed. Run with MXNet's own interpreter:

    $MXNET_PYTHON benchmarks/mxnet_lenet.py DATA.npz --epochs 5 --batch 100 --lr 0.05 --momentum 0.9

DATA.npz holds x_train/y_train/x_val/y_val (uint8 N x 28 x 28, int labels), written by lenet_mnist.py.
Prints one JSON line: training samples/s per epoch and the final validation accuracy.
"""

import argparse
import json
import time

import mxnet as mx
import numpy as np


def lenet():
    data = mx.sym.var("data")
    conv1 = mx.sym.Convolution(data=data, kernel=(5, 5), num_filter=20)
    tanh1 = mx.sym.Activation(data=conv1, act_type="tanh")
    pool1 = mx.sym.Pooling(data=tanh1, pool_type="max", kernel=(2, 2), stride=(2, 2))
    conv2 = mx.sym.Convolution(data=pool1, kernel=(5, 5), num_filter=50)
    tanh2 = mx.sym.Activation(data=conv2, act_type="tanh")
    pool2 = mx.sym.Pooling(data=tanh2, pool_type="max", kernel=(2, 2), stride=(2, 2))
    flatten = mx.sym.flatten(data=pool2)
    fc1 = mx.symbol.FullyConnected(data=flatten, num_hidden=500)
    tanh3 = mx.sym.Activation(data=fc1, act_type="tanh")
    fc2 = mx.symbol.FullyConnected(data=tanh3, num_hidden=10)
    return mx.sym.SoftmaxOutput(data=fc2, name="softmax")


def main():
    p = argparse.ArgumentParser()
    p.add_argument("data")
    p.add_argument("--epochs", type=int, default=5)
    p.add_argument("--batch", type=int, default=100)
    p.add_argument("--lr", type=float, default=0.05)
    p.add_argument("--momentum", type=float, default=0.9)
    a = p.parse_args()
    d = np.load(a.data)
    # the tutorial's loader: N x 1 x 28 x 28 float32 scaled to [0, 1] (then the same normalisation as ours)
    mean, std = float(d["mean"]), float(d["std"])
    x_train = (d["x_train"].reshape(-1, 1, 28, 28).astype(np.float32) / 255 - mean) / std
    x_val = (d["x_val"].reshape(-1, 1, 28, 28).astype(np.float32) / 255 - mean) / std
    train_iter = mx.io.NDArrayIter(x_train, d["y_train"], a.batch, shuffle=True)
    val_iter = mx.io.NDArrayIter(x_val, d["y_val"], a.batch)
    mod = mx.mod.Module(symbol=lenet(), context=mx.cpu())
    mod.bind(data_shapes=train_iter.provide_data, label_shapes=train_iter.provide_label)
    mod.init_params(initializer=mx.init.Uniform(0.01))
    mod.init_optimizer(optimizer="sgd", optimizer_params={"learning_rate": a.lr, "momentum": a.momentum})
    metric = mx.metric.create("acc")
    speeds, accs = [], []
    for _ in range(a.epochs):
        train_iter.reset()
        metric.reset()
        seen = 0
        t0 = time.perf_counter()
        for batch in train_iter:
            mod.forward_backward(batch)
            mod.update()
            mod.update_metric(metric, batch.label)
            seen += a.batch - batch.pad
        mx.nd.waitall()
        speeds.append(seen / (time.perf_counter() - t0))
        accs.append(mod.score(val_iter, "acc")[0][1])
    print(json.dumps({"samples_per_s": speeds, "val_acc": accs, "mxnet": mx.__version__}))


if __name__ == "__main__":
    main()
