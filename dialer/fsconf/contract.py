"""The names shared by the rendered dialplans (dialplans/*.xml) and the engine, so that engine
code imports them instead of repeating strings. docs/freeswitch.md describes each; the tests
check that every one exists in the rendered dialplans.

Usage from the engine:
    api(f"uuid_transfer {uuid} {Destination.SAFE_HARBOR.value} XML {OUTBOUND_CONTEXT}")
    if channel.get(f"variable_{Var.ACTION}") == Action.OPTOUT: ...
"""
from __future__ import annotations

import enum

OUTBOUND_CONTEXT = "dialer_outbound"
INBOUND_CONTEXT = "dialer_inbound"
AGENTS_CONTEXT = "dialer_agents"

# CUSTOM event fired when an opt-out could not be handed to the engine (engine unreachable).
OPTOUT_UNHANDLED_SUBCLASS = "dialer::optout_unhandled"


class Destination(enum.Enum):
    """Extensions the engine sends a leg to: uuid_transfer <uuid> <value> XML <context>."""
    AMD = ("dialer_amd", OUTBOUND_CONTEXT)                   # answered: park for AMD / unicast
    PARK = ("dialer_park", OUTBOUND_CONTEXT)                 # back to park
    SAFE_HARBOR = ("dialer_safe_harbor", OUTBOUND_CONTEXT)   # a person, no agent in time
    VM_DROP = ("dialer_vm_drop", OUTBOUND_CONTEXT)           # a machine, beep heard: message now
    VM_WAIT = ("dialer_vm_wait", OUTBOUND_CONTEXT)           # a machine, FreeSWITCH waits for the beep
    OPTOUT = ("dialer_optout", INBOUND_CONTEXT)              # the opt-out IVR
    TO_ENGINE = ("dialer_to_engine", INBOUND_CONTEXT)        # hand a call to the outbound socket server

    @property
    def extension(self) -> str:
        return self.value[0]

    @property
    def context(self) -> str:
        return self.value[1]

    def transfer_args(self) -> str:
        """`<extension> XML <context>`, as uuid_transfer and originate take it."""
        return f"{self.extension} XML {self.context}"


class Action(str, enum.Enum):
    """dialer_action: why a call reached the engine's outbound socket server."""
    INBOUND = "inbound"                # dialer_campaign set: a campaign's number; unset: a returned call
    OPTOUT = "optout"                  # add dialer_optout_number to the internal do-not-call list


class Role(str, enum.Enum):
    """dialer_role, on CHANNEL_* events as variable_dialer_role."""
    CUSTOMER = "customer"
    AGENT = "agent"


class OptoutSource(str, enum.Enum):
    """dialer_optout_source: where the opt-out request came from."""
    INBOUND = "inbound"                # a caller, through the opt-out IVR
    OUTBOUND = "outbound"              # a customer leg the engine sent to the IVR
    SAFE_HARBOR = "safe_harbor"        # the key pressed during the safe-harbor message


class Var(str, enum.Enum):
    """Channel variables of the contract (events carry them as variable_<name>)."""
    # set by the engine at originate
    CAMPAIGN = "dialer_campaign"
    LEAD = "dialer_lead"
    NUMBER = "dialer_number"
    VM_FILE = "dialer_vm_file"
    SAFE_HARBOR_FILE = "dialer_safe_harbor_file"
    # set by the engine in its outbound socket session
    ENGINE = "dialer_engine"                    # first command of every session: the engine's id
    OPTOUT_RECORDED = "dialer_optout_recorded"  # "true" once the do-not-call entry is committed
    # set by the dialplans
    ROLE = "dialer_role"
    AGENT_ID = "dialer_agent_id"
    ACTION = "dialer_action"
    DID = "dialer_did"
    CALLER = "dialer_caller"
    DISPOSITION = "dialer_disposition"
    OPTOUT_NUMBER = "dialer_optout_number"
    OPTOUT_SOURCE = "dialer_optout_source"
    OPTOUT_DIGITS = "dialer_optout_digits"
    OPTOUT_CONFIRM_FILE = "dialer_optout_confirm_file"
    OPTOUT_FAILED_FILE = "dialer_optout_failed_file"

    def __str__(self) -> str:
        return self.value
