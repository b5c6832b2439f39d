"""Device registry: name -> Device instance, created on first use."""
from __future__ import annotations

import importlib
import os

from .device import Device

_FACTORIES = {"numpy": ("luban.runtime.numpy", "NumpyDevice"), "cpu": ("luban.runtime.cpu", "CPUDevice"),
              "opencl": ("luban.runtime.opencl", "OpenCLDevice")}
_INSTANCES: dict[str, Device] = {}


def register_device(name: str, module: str, cls: str) -> None:
    """Make `name` usable as a device string (a vendor backend calls this)."""
    _FACTORIES[name] = (module, cls)


def available_devices() -> list[str]:
    """Every registered device name, usable here or not (see usable_devices)."""
    return list(_FACTORIES)


def usable_devices() -> list[str]:
    """The registered devices that start on this machine (their drivers are present)."""
    usable = []
    for name in _FACTORIES:
        try:
            get_device(name)
        except Exception:  # noqa: BLE001 - any failure to start means "not here"
            continue
        usable.append(name)
    return usable


def canonical_device(name) -> str:
    name = str(name)
    base = name.split(":")[0]
    if base not in _FACTORIES:
        raise RuntimeError(f"unknown device {name!r}; available devices: {', '.join(_FACTORIES)}")
    return base


def get_device(name: str) -> Device:
    dev = _INSTANCES.get(name)
    if dev is None:
        module, cls = _FACTORIES[canonical_device(name)]
        dev = _INSTANCES[name] = getattr(importlib.import_module(module), cls)()
    return dev


_default: str | None = None


def set_default_device(name) -> None:
    """Device for new tensors (like torch.set_default_device); None restores LUBAN_DEVICE."""
    global _default
    _default = None if name is None else canonical_device(name)


def default_device() -> str:
    return _default or canonical_device(os.environ.get("LUBAN_DEVICE", "cpu"))
