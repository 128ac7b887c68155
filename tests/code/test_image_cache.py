"""The in-memory cache of preprocessed training images: what it keeps, within its budget."""

import torch

from compclip.training.data import PreprocessedImages, shared_images


def test_images_are_kept_up_to_the_budget_and_served_from_memory():
    made = []

    def make(value):
        def _make():
            made.append(value)
            return torch.full((3, 4, 4), float(value))  # 192 bytes
        return _make

    cache = PreprocessedImages(budget_bytes=2 * 192)
    first = cache.get(("t", "a.jpg"), make(1))
    cache.get(("t", "b.jpg"), make(2))
    cache.get(("t", "c.jpg"), make(3))  # over the budget: returned, not kept
    assert cache.used_bytes == 384 and set(cache.tensors) == {("t", "a.jpg"), ("t", "b.jpg")}
    assert cache.get(("t", "a.jpg"), make(9)) is first  # from memory: not made again
    assert cache.get(("t", "c.jpg"), make(3)).eq(3).all()  # not kept: made again
    assert cache.get(("other transform", "a.jpg"), make(4)).eq(4).all()  # the transform is part of the key
    assert made == [1, 2, 3, 3, 4] and (cache.hits, cache.misses) == (1, 5)


def test_the_shared_cache_empties_when_its_budget_shrinks_below_what_it_holds():
    cache = shared_images(1)
    cache.get(("t", "x.jpg"), lambda: torch.zeros(16))
    assert shared_images(1) is cache and ("t", "x.jpg") in cache.tensors  # the same budget keeps it
    shared_images(0)
    assert not cache.tensors and cache.used_bytes == 0
    cache.get(("t", "x.jpg"), lambda: torch.zeros(16))
    assert not cache.tensors  # budget 0: nothing kept
