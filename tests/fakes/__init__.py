"""Behavioural fakes: they act like the kernel (or the API server), not like stubs."""

from tests.fakes.dataplane import FakeDataplane, kernel_error

__all__ = ["FakeDataplane", "kernel_error"]
