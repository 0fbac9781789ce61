import torch

from ilo.solvers.optim import Adam


def test_adam_equals_torch_adam_bitwise():
    """Same iterates as torch.optim.Adam (single-tensor path on CPU) with a changing lr and a
    parameter that gets no gradient at some steps."""
    g = torch.Generator().manual_seed(0)
    a0, b0 = torch.randn(3, 5, generator=g), torch.randn(4, generator=g)
    target = torch.randn(3, 5, generator=g)
    ours = [a0.clone().requires_grad_(True), b0.clone().requires_grad_(True)]
    ref = [a0.clone().requires_grad_(True), b0.clone().requires_grad_(True)]
    opt, topt = Adam(ours, lr=0.1), torch.optim.Adam(ref, lr=0.1, foreach=False)
    for t in range(25):
        lr = 0.1 * (1 - t / 25)
        opt.lr = lr
        for group in topt.param_groups:
            group["lr"] = lr
        for params, o in ((ours, opt), (ref, topt)):
            o.zero_grad()
            loss = (params[0] - target).pow(2).sum() + torch.sin(params[0]).sum()
            if t % 3:
                loss = loss + params[1].abs().sum()
            loss.backward()
            o.step()
    assert torch.equal(ours[0], ref[0]) and torch.equal(ours[1], ref[1])
    assert not torch.equal(ours[0], a0)  # it moved


def test_adam_does_not_import_dynamo():
    import subprocess
    import sys

    code = ("import sys, torch; from ilo.solvers.optim import Adam; x = torch.ones(2, requires_grad=True); o = Adam([x], 0.1); "
            "x.sum().backward(); o.step(); print('torch._dynamo' in sys.modules)")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout.strip()
    assert out == "False"
