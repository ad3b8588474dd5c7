import pytest
import torch
import torch.nn.functional as F

from hf_distill.apm import accumulate_image_gradient, apm_loss, disagreement, snapshot_epochs
from hf_distill.augment import apply_dsa, sample_dsa
from hf_distill.models import create_model
from hf_distill.training import FitConfig, fit, freeze


def _nets(seed=0, k=3):
    torch.manual_seed(seed)
    teacher = freeze(create_model("convnet3", 4, 1, 8, net_width=16))
    students = [freeze(create_model("convnet3", 4, 1, 8, net_width=16)) for _ in range(k)]
    return teacher, students


def _images(n=10, seed=0):
    g = torch.Generator().manual_seed(seed)
    return torch.randn(n, 1, 8, 8, generator=g).requires_grad_(True), torch.arange(n) % 4


def test_loss_reads_like_the_equation():
    teacher, students = _nets()
    x, y = _images()
    t = teacher(x)
    expected = -sum(F.l1_loss(s(x), t) for s in students) + 0.1 * F.cross_entropy(t, y)
    assert torch.allclose(apm_loss(x, y, teacher, students, 0.1), expected)


def test_image_gradient_is_the_gradient_of_the_loss():
    teacher, students = _nets()
    x, y = _images()
    batch = torch.tensor([9, 2, 5, 0, 7, 3, 8])
    loss = accumulate_image_gradient(x, batch, y, teacher, students, 0.1, segment_size=len(batch))
    expected_x = x.detach().clone().requires_grad_(True)
    expected = apm_loss(expected_x[batch], y[batch], teacher, students, 0.1)
    expected.backward()
    assert loss == pytest.approx(expected.item(), rel=1e-5)
    assert torch.allclose(x.grad, expected_x.grad, atol=1e-7, rtol=1e-4)
    assert expected_x.grad.abs().sum() > 0


@pytest.mark.parametrize("segment_size", [1, 3, 4, 7])
def test_segments_give_the_full_batch_gradient(segment_size):
    teacher, students = _nets()
    x, y = _images()
    batch = torch.tensor([9, 2, 5, 0, 7, 3, 8])
    accumulate_image_gradient(x, batch, y, teacher, students, 0.1, segment_size=len(batch))
    full = x.grad.clone()
    x.grad = None
    accumulate_image_gradient(x, batch, y, teacher, students, 0.1, segment_size=segment_size)
    assert torch.allclose(x.grad, full, atol=1e-6, rtol=1e-4)
    assert x.grad[[1, 4, 6]].abs().sum() == 0  # images outside the batch get no gradient
    assert full.abs().sum() > 0


@pytest.mark.parametrize("op", ["color", "crop", "cutout", "flip", "scale", "rotate"])
@pytest.mark.parametrize("segment_size", [2, 7])
def test_image_dsa_gives_the_gradient_of_the_loss_on_one_augmented_view(op, segment_size):
    teacher, students = _nets()
    x, y = _images()
    batch = torch.tensor([9, 2, 5, 0, 7, 3, 8])
    views = sample_dsa(len(batch), 8, torch.Generator().manual_seed(1), op)
    loss = accumulate_image_gradient(x, batch, y, teacher, students, 0.1, segment_size=segment_size, views=views)
    expected_x = x.detach().clone().requires_grad_(True)
    expected = apm_loss(apply_dsa(expected_x[batch], views), y[batch], teacher, students, 0.1)
    expected.backward()
    assert loss == pytest.approx(expected.item(), rel=1e-5)
    assert torch.allclose(x.grad, expected_x.grad, atol=1e-6, rtol=1e-4)
    plain = x.detach().clone().requires_grad_(True)
    accumulate_image_gradient(plain, batch, y, teacher, students, 0.1, segment_size=segment_size)
    assert not torch.allclose(plain.grad, x.grad)  # the view changed the step


@pytest.mark.parametrize("segment_size", [1, 7])
def test_standardized_logits_give_the_gradient_of_their_loss(segment_size):
    teacher, students = _nets()
    x, y = _images()
    batch = torch.tensor([9, 2, 5, 0, 7, 3, 8])
    loss = accumulate_image_gradient(x, batch, y, teacher, students, 0.1, segment_size=segment_size, standardize=True)
    expected_x = x.detach().clone().requires_grad_(True)
    expected = apm_loss(expected_x[batch], y[batch], teacher, students, 0.1, standardize=True)
    expected.backward()
    assert loss == pytest.approx(expected.item(), rel=1e-5)
    assert torch.allclose(x.grad, expected_x.grad, atol=1e-6, rtol=1e-4)
    assert not torch.allclose(apm_loss(x, y, teacher, students, 0.1), apm_loss(x, y, teacher, students, 0.1, True))


def test_standardized_disagreement_ignores_the_teachers_logit_scale():
    teacher, students = _nets()
    x, _ = _images()
    with torch.no_grad():
        t = teacher(x)
        assert disagreement(x, 3 * t + 1, students, standardize=True).item() == pytest.approx(
            disagreement(x, t, students, standardize=True).item(), rel=1e-4)
        assert disagreement(x, 3 * t, students).item() > disagreement(x, t, students).item() + 0.1  # the paper's grows


def test_process_shards_sum_to_the_full_gradient():
    teacher, students = _nets()
    x, y = _images()
    batch = torch.arange(10)
    accumulate_image_gradient(x, batch, y, teacher, students, 0.1, segment_size=3)
    full, x.grad = x.grad.clone(), None
    shards = []
    for rank in range(2):
        accumulate_image_gradient(x, batch, y, teacher, students, 0.1, segment_size=3, shard=(rank, 2))
        shards.append(x.grad.clone())
        x.grad = None
    assert not torch.allclose(shards[0], full)  # each process really did only part of the work
    assert torch.allclose(shards[0] + shards[1], full, atol=1e-6, rtol=1e-4)


def _disagreement(x, teacher, students):
    with torch.no_grad():
        t = teacher(x)
        return sum(F.l1_loss(s(x), t) for s in students).item()


def test_one_image_step_increases_student_teacher_disagreement():
    torch.manual_seed(0)
    teacher = freeze(create_model("convnet3", 4, 1, 8, net_width=16))
    x, y = _images(16)
    with torch.no_grad():
        targets = teacher(x)
    student = create_model("convnet3", 4, 1, 8, net_width=16)
    students = fit(student, x.detach(), targets, FitConfig(epochs=20, lr=0.01, loss="l1"), torch.Generator().manual_seed(0),
                   snapshot_epochs=snapshot_epochs(20, 4))
    before = _disagreement(x, teacher, students)
    accumulate_image_gradient(x, torch.arange(16), y, teacher, students, ce_weight=0.0, segment_size=16)
    step = 5.0 * x.grad
    with torch.no_grad():
        assert _disagreement(x - step, teacher, students) > before  # the APM step (gradient descent on L)
        assert _disagreement(x + step, teacher, students) < before  # the opposite sign would match instead


def test_snapshot_epochs_are_evenly_spaced():
    assert snapshot_epochs(250, 5) == (50, 100, 150, 200, 250)
    assert snapshot_epochs(10, 3) == (3, 7, 10)
    with pytest.raises(ValueError, match="num_checkpoints"):
        snapshot_epochs(3, 5)
