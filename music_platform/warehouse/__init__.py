"""Warehouse access: one small interface, one implementation per target.

Assets and the service talk to ``Warehouse`` only; ``connect_warehouse(settings)`` is the
one place that turns ``MUSIC_PLATFORM_TARGET`` into an implementation.
"""

from music_platform.warehouse.base import Warehouse, WarehouseError
from music_platform.warehouse.factory import connect_warehouse

__all__ = ["Warehouse", "WarehouseError", "connect_warehouse"]
