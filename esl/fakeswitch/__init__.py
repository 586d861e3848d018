"""A simulated FreeSWITCH for tests, benchmarks and the demo: an Event Socket server speaking the
bytes of FreeSWITCH 1.10.12 with a model of called parties behind it (docs/fakeswitch.md)."""
from esl.fakeswitch.model import (SCRIPTED_CODES, Behaviour, CalledPartyModel, FakeSwitchError,
                                  Outcome, Party)
from esl.fakeswitch.switch import FakeSwitch, SwitchConfig

__all__ = ["FakeSwitch", "SwitchConfig", "CalledPartyModel", "Behaviour", "Outcome", "Party",
           "SCRIPTED_CODES", "FakeSwitchError"]
