import pytest
import torch

from dept_vl.models.buckets import bucket_labels, bucket_length, bucket_text, pad_to_length


@pytest.mark.parametrize("n, multiple, cap, expected", [
    (1, 8, None, 1), (2, 8, None, 2), (3, 8, None, 4), (5, 8, None, 8), (8, 8, None, 8), (9, 8, None, 16),
    (17, 8, None, 24), (17, 16, None, 32), (3, 1, None, 3), (20, 8, 22, 22), (23, 8, 20, 23), (0, 8, None, 0),
])
def test_bucket_length(n, multiple, cap, expected):
    assert bucket_length(n, multiple, cap) == expected


def test_every_length_up_to_the_cap_falls_in_a_few_buckets():
    buckets = {bucket_length(n, 8, 64) for n in range(1, 65)}
    assert buckets == {1, 2, 4, 8, 16, 24, 32, 40, 48, 56, 64}
    assert all(bucket_length(n, 8, 64) >= n for n in range(1, 65))


def test_padding_is_masked_and_ignored():
    batch = {"input_ids": torch.tensor([[5, 6, 7], [5, 0, 0]]), "attention_mask": torch.tensor([[1, 1, 1], [1, 0, 0]])}
    out = bucket_text(batch, 8, 16, pad_id=0)
    assert out["input_ids"].tolist() == [[5, 6, 7, 0], [5, 0, 0, 0]]
    assert out["attention_mask"].tolist() == [[1, 1, 1, 0], [1, 0, 0, 0]]
    labels = bucket_labels(torch.tensor([[3, 4, 1]]), 8, 8)
    assert labels.tolist() == [[3, 4, 1, -100]]
    assert pad_to_length(labels, 2, 0) is labels  # never shortened
