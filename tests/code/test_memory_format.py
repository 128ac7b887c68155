"""The image tower in channels_last computes what the contiguous tower computes; files and digests do not
depend on the layout."""

import torch

from compclip.evaluation.encode import model_digest
from compclip.models.checkpoint import load_model_folder, save_model_folder
from compclip.models.factory import create
from compclip.models.memory_format import use_channels_last


def pair(name="compclip-tiny-rn"):
    torch.manual_seed(0)
    plain = create(name, channels_last=False)
    nhwc = create(name)
    nhwc.model.load_state_dict(plain.model.state_dict())
    return plain, nhwc


def test_weights_and_inputs_are_channels_last_and_features_and_gradients_agree():
    plain, nhwc = pair()
    a, b = plain.model.double(), nhwc.model.double()
    convs = [m for m in b.visual.modules() if isinstance(m, torch.nn.Conv2d)]
    assert convs and all(m.weight.is_contiguous(memory_format=torch.channels_last) for m in convs)
    assert all(m.weight.is_contiguous() for m in a.visual.modules() if isinstance(m, torch.nn.Conv2d))
    images = torch.randn(4, 3, 64, 64, dtype=torch.float64, generator=torch.Generator().manual_seed(1))
    seen = []
    hook = b.visual.conv1.register_forward_hook(lambda m, args, out: seen.append(args[0]))  # the first layer
    fa, fb = a.encode_image(images), b.encode_image(images)
    hook.remove()
    assert seen[0].is_contiguous(memory_format=torch.channels_last)  # the input was converted on the way in
    torch.testing.assert_close(fb, fa, rtol=1e-10, atol=1e-10)
    fa.square().sum().backward()
    fb.square().sum().backward()
    for (name, pa), (_, pb) in zip(a.named_parameters(), b.named_parameters()):
        if pa.grad is not None:
            torch.testing.assert_close(pb.grad, pa.grad, rtol=1e-8, atol=1e-10, msg=name)


def test_saved_weights_and_digest_do_not_depend_on_the_layout(tmp_path):
    plain, nhwc = pair()
    assert model_digest(plain) == model_digest(nhwc)
    save_model_folder(nhwc.model, "compclip-tiny-rn", tmp_path)
    name, state = load_model_folder(tmp_path, str(tmp_path))
    assert name == "compclip-tiny-rn" and all(t.is_contiguous() for t in state.values())
    for key, value in plain.model.state_dict().items():
        assert torch.equal(state[key], value), key


def test_a_tower_without_convolutions_is_left_alone():
    model = torch.nn.Module()
    model.visual = torch.nn.Linear(4, 4)
    use_channels_last(model)
    assert not model.visual._forward_pre_hooks
