"""The typed in-process message bus the actors talk over."""

from bus.bus import Bus, NoSubscriberError
from bus.messages import Envelope, Topic

__all__ = ["Bus", "Envelope", "NoSubscriberError", "Topic"]
