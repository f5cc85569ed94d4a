"""Instance changes, once committed, to the event stream (topic `instance`) and to listeners in
this process (batch operations follow their steps through them)."""

from collections.abc import Callable
from typing import Any

from master.db import models
from master.hub import Hub
from master.services.serializers import instance_out
from protocol.rest import InstanceOut


class InstanceFeed:
    def __init__(self, hub: Hub) -> None:
        self.hub = hub
        self.listeners: list[Callable[[InstanceOut], None]] = []

    def publish(self, inst: models.Instance) -> None:
        self.publish_view(instance_out(inst))

    def publish_view(self, out: InstanceOut) -> None:
        # Listeners first: they only take note, and a batch operation they wake publishes its
        # end in the same frame of the event stream as the views that ended it.
        for listener in self.listeners:
            listener(out)
        self.hub.publish("instance", out.model_dump())

    def remote_view(self, data: dict[str, Any]) -> None:
        """An instance change another master published: listeners here follow it too (an
        operation driven here may have steps on nodes another master holds)."""
        if self.listeners:
            out = InstanceOut.model_validate({k: v for k, v in data.items() if k != "deleted"})
            for listener in self.listeners:
                listener(out)

    def publish_gone(self, out: InstanceOut) -> None:
        """A forgotten instance: `deleted` on the stream; listeners get its last view."""
        self.hub.publish("instance", {**out.model_dump(), "deleted": True})
        for listener in self.listeners:
            listener(out)
