import pytest

import luban

DEVICES = ["numpy", "cpu"]


@pytest.fixture(params=DEVICES)
def device(request):
    """Runs a test once per device, with that device as the default for new tensors."""
    luban.set_default_device(request.param)
    yield request.param
    luban.set_default_device(None)
