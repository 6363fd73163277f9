"""Adapters to the outside world: Redis, libvirt, child processes."""
