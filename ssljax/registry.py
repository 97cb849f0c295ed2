"""Name -> component registries (encoders, objectives, dataset sources).

Components are chosen by name from configs, so every lookup failure must tell the user which names
exist instead of raising a bare KeyError.
"""
from __future__ import annotations

from typing import Callable, Generic, Iterator, TypeVar

from ssljax.errors import UserError

T = TypeVar("T")


class Registry(Generic[T]):
  """A dict of named components with a decorator to fill it and a helpful lookup error."""

  def __init__(self, kind: str):
    self.kind = kind
    self._entries: dict[str, T] = {}

  def register(self, name: str) -> Callable[[T], T]:
    def add(entry: T) -> T:
      if name in self._entries:
        raise ValueError(f"{self.kind} {name!r} is registered twice")
      self._entries[name] = entry
      return entry
    return add

  def __getitem__(self, name: str) -> T:
    if name not in self._entries:
      raise UserError(f"unknown {self.kind} {name!r}; valid names: {', '.join(sorted(self._entries))}")
    return self._entries[name]

  def __contains__(self, name: str) -> bool:
    return name in self._entries

  def __iter__(self) -> Iterator[str]:
    return iter(sorted(self._entries))

  def names(self) -> list[str]:
    return sorted(self._entries)
