"""Wrong shapes give a ValueError that names the expected shape, not torch's internal error."""
import pytest
import torch

import odenets
import solvers


def test_network_rejects_wrong_channels_and_rank():
    model = odenets.create("resnet20", num_classes=10, in_channels=3)
    with pytest.raises(ValueError, match=r"\(N, 3, H, W\).*in_channels=1"):
        model(torch.randn(2, 1, 28, 28))
    with pytest.raises(ValueError, match=r"\(N, 3, H, W\), got \(3, 32, 32\)"):
        model(torch.randn(3, 32, 32))


@pytest.mark.parametrize("scheme", ["euler", "rk4", "lm", "ab2"])
def test_integrate_names_a_field_of_the_wrong_shape(scheme):
    with pytest.raises(ValueError, match=r"shaped like u .*\(3,\).*returned \(2,\)"):
        solvers.integrate(lambda t, u: u[:2], torch.ones(3), 4, scheme)


def test_integrate_keeps_the_fields_own_error():
    def broken(t, u):
        raise RuntimeError("inside the field")
    with pytest.raises(RuntimeError, match="inside the field"):
        solvers.integrate(broken, torch.ones(3), 4)
