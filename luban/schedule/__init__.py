from .fusion import ScheduleItem, create_schedule
from .run import from_numpy, realize, to_numpy

__all__ = ["ScheduleItem", "create_schedule", "realize", "to_numpy", "from_numpy"]
