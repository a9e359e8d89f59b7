"""Epoch plans: the last-batch policy never hands training a batch BatchNorm cannot train on."""

from __future__ import annotations

import torch

from deepvision.data.sampling import epoch_indices


def test_keep_merges_a_lone_last_training_sample_into_the_batch_before():
    batches = epoch_indices(9, 4, seed=0, epoch=0, shuffle=True, last_batch="keep")
    assert [len(b) for b in batches] == [4, 5]
    assert sorted(torch.cat(batches).tolist()) == list(range(9))  # every sample still read once


def test_keep_merges_per_rank_and_ranks_stay_in_step():
    # 2 ranks, 18 samples: 9 each, batches of 4 -> [4, 5] on both ranks
    plans = [epoch_indices(18, 4, seed=1, epoch=2, shuffle=True, rank=r, world=2) for r in (0, 1)]
    assert [[len(b) for b in p] for p in plans] == [[4, 5], [4, 5]]
    assert sorted(torch.cat([torch.cat(p) for p in plans]).tolist()) == list(range(18))


def test_evaluation_and_single_batch_epochs_keep_their_sizes():
    assert [len(b) for b in epoch_indices(9, 4, seed=0, epoch=0, shuffle=False, training=False)] == [4, 4, 1]
    assert [len(b) for b in epoch_indices(1, 4, seed=0, epoch=0, shuffle=True)] == [1]
    assert [len(b) for b in epoch_indices(10, 4, seed=0, epoch=0, shuffle=True)] == [4, 4, 2]
