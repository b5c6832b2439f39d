import os

import pytest

import luban
from luban.runtime import usable_devices

# every device that runs here (opencl needs an OpenCL platform, e.g. PoCL). CI names the
# devices it installs in LUBAN_REQUIRE_DEVICES, so a broken install fails instead of
# quietly testing less.
DEVICES = usable_devices()
_missing = [d for d in os.environ.get("LUBAN_REQUIRE_DEVICES", "").split(",") if d and d not in DEVICES]
if _missing:
    raise RuntimeError(f"LUBAN_REQUIRE_DEVICES names {_missing}, which do not start here; "
                       f"usable devices: {DEVICES}")


@pytest.fixture(params=DEVICES)
def device(request):
    """Runs a test once per device, with that device as the default for new tensors."""
    luban.set_default_device(request.param)
    yield request.param
    luban.set_default_device(None)
