"""Epoch orders (reshuffle, DDP sharding, last-batch policies) and the in-memory tensor loader."""

import pytest
import torch

from deepvision.config.schema import AugmentConfig
from deepvision.data.loader import BatchLoader
from deepvision.data.sampling import epoch_indices
from deepvision.data.tensor_loader import BatchAugment, TensorSource


def flat(batches):
    return torch.cat(batches).tolist() if batches else []


def test_reshuffled_every_epoch_and_reproducible():
    e0 = flat(epoch_indices(50, 8, seed=3, epoch=0, shuffle=True))
    e1 = flat(epoch_indices(50, 8, seed=3, epoch=1, shuffle=True))
    assert sorted(e0) == list(range(50)) and e0 != e1
    assert e0 == flat(epoch_indices(50, 8, seed=3, epoch=0, shuffle=True))
    assert flat(epoch_indices(50, 8, seed=3, epoch=0, shuffle=False)) == list(range(50))


@pytest.mark.parametrize("last_batch", ["keep", "drop", "pad", "rollover"])
def test_ddp_shards_union_to_the_global_batch(last_batch):
    n, bs, world = 53, 4, 2
    single = epoch_indices(n, bs * world, seed=1, epoch=0, shuffle=True, last_batch=last_batch)
    ranks = [epoch_indices(n, bs, seed=1, epoch=0, shuffle=True, rank=r, world=world, last_batch=last_batch)
             for r in range(world)]
    assert len(ranks[0]) == len(ranks[1])  # ranks stay in step (no DDP hang)
    if last_batch != "keep":
        for k, global_batch in enumerate(single):
            assert sorted(torch.cat([ranks[0][k], ranks[1][k]]).tolist()) == sorted(global_batch.tolist())


def test_last_batch_policies():
    n, bs = 10, 4
    keep = epoch_indices(n, bs, seed=0, epoch=0, shuffle=False, last_batch="keep")
    assert [len(b) for b in keep] == [4, 4, 2]
    assert [len(b) for b in epoch_indices(n, bs, seed=0, epoch=0, shuffle=False, last_batch="drop")] == [4, 4]
    pad = epoch_indices(n, bs, seed=0, epoch=0, shuffle=False, last_batch="pad")
    assert flat(pad) == list(range(10)) + [0, 1]  # wraps round to the start (round_batch)
    e0 = epoch_indices(n, bs, seed=0, epoch=0, shuffle=False, last_batch="rollover")
    e1 = epoch_indices(n, bs, seed=0, epoch=1, shuffle=False, last_batch="rollover")
    assert flat(e0) == list(range(8))
    assert flat(e1)[:2] == [8, 9] and len(flat(e1)) == 12  # the two left over open the next epoch


def test_evaluation_never_pads_and_covers_every_sample_once():
    for world in (1, 2, 3):
        seen = []
        for r in range(world):
            seen += flat(epoch_indices(11, 4, seed=0, epoch=0, shuffle=True, rank=r, world=world, training=False))
        assert sorted(seen) == list(range(11))


def test_tensor_loader_batches_by_indexing():
    images = torch.arange(20, dtype=torch.uint8).view(20, 1, 1, 1).expand(20, 1, 2, 2).contiguous()
    labels = torch.arange(20)
    loader = BatchLoader(TensorSource(images, labels), 6, training=True, seed=0)
    batches = list(loader)
    assert len(loader) == 4 and [len(y) for _, y in batches] == [6, 6, 6, 2]
    for x, y in batches:
        assert torch.equal(x[:, 0, 0, 0].long(), y)  # images travel with their labels
    loader.set_epoch(1)
    assert [y.tolist() for _, y in loader] != [y.tolist() for _, y in batches]
    assert loader.num_samples == 20


def test_batch_augment_crop_mirror_and_centre():
    x = torch.arange(2 * 1 * 6 * 6, dtype=torch.uint8).view(2, 1, 6, 6)
    aug = BatchAugment(AugmentConfig(rand_crop=True, rand_mirror=True), (4, 4))
    out = aug.apply(x, aug.plans_for([0, 1], (6, 6), seed=0, epoch=0))
    assert out.shape == (2, 1, 4, 4)
    for i in range(2):  # every output is a (possibly mirrored) window of its own input
        windows = [x[i, 0, t : t + 4, c : c + 4] for t in range(3) for c in range(3)]
        assert any(torch.equal(out[i, 0], w) or torch.equal(out[i, 0], w.flip(-1)) for w in windows)
    assert torch.equal(aug.center(x), x[..., 1:5, 1:5])


def test_batch_augment_fixed_rotation_is_exact_for_quarter_turns():
    x = torch.zeros(1, 1, 5, 5, dtype=torch.uint8)
    x[0, 0, 0, 4] = 200  # top-right corner
    aug = BatchAugment(AugmentConfig(rotate=90, rotation_mode="fixed", fill=0), (5, 5))
    out = aug.apply(x, aug.plans_for([0], (5, 5), seed=0, epoch=0))
    assert out[0, 0, 0, 0] == 200  # counter-clockwise: top-right moves to top-left


def test_an_in_memory_split_resized_past_the_read_ceiling_is_refused(monkeypatch):
    """Resizing a whole in-memory split to a size the schema allows can ask for hundreds of GB: the
    planned bytes are checked first, naming the key; below the ceiling it resizes in chunks."""
    import torch

    from deepvision.data.tensors import TensorSplit, adapt_tensor_split
    from deepvision.errors import UserError

    split = TensorSplit(torch.randint(0, 256, (300, 1, 8, 8), dtype=torch.uint8), torch.zeros(300, dtype=torch.int64))
    monkeypatch.setenv("DEEPVISION_MAX_READ_GB", "0.001")  # 1 MB
    with pytest.raises(UserError, match=r"^data.image_size for this in-memory split \(300 images at 64x64\) "
                                        r"declares 1.2 MB, above the 1.0 MB one read may take"):
        adapt_tensor_split(split, 1, (64, 64), None)
    with pytest.raises(UserError, match=r"^data.resize for this in-memory split"):
        adapt_tensor_split(split, 1, None, 64)
    monkeypatch.delenv("DEEPVISION_MAX_READ_GB")
    chunked = adapt_tensor_split(split, 1, (32, 32), None).images
    whole = torch.nn.functional.interpolate(split.images.float(), size=(32, 32), mode="bilinear", antialias=True,
                                            align_corners=False).round().clamp(0, 255).to(torch.uint8)
    assert torch.equal(chunked, whole)
