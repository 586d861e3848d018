"""Dialplan applications the dialer's templates may use, with the module that registers each
(SWITCH_ADD_APP in the module's load function) and where that was checked. The tests refuse a
template action whose application is not listed here, or whose module is not in the rendered
modules.conf.xml: FreeSWITCH would log "Invalid Application" and hang the call up."""
from __future__ import annotations

_DPTOOLS = "src/mod/applications/mod_dptools/mod_dptools.c, mod_dptools_load (SWITCH_ADD_APP)"
_DPTOOLS_DOCS = "https://developer.signalwire.com/freeswitch/FreeSWITCH-Explained/Modules/mod-dptools/"

# application -> (module, source)
APPLICATIONS: dict[str, tuple[str, str]] = {
    "answer": ("mod_dptools", _DPTOOLS),
    "set": ("mod_dptools", _DPTOOLS),
    "unset": ("mod_dptools", _DPTOOLS),
    "export": ("mod_dptools", _DPTOOLS),
    "park": ("mod_dptools", _DPTOOLS),
    "playback": ("mod_dptools", _DPTOOLS),
    "transfer": ("mod_dptools", _DPTOOLS),
    "hangup": ("mod_dptools", _DPTOOLS),
    "sleep": ("mod_dptools", _DPTOOLS),
    "log": ("mod_dptools", _DPTOOLS),
    "event": ("mod_dptools", _DPTOOLS),
    "bridge": ("mod_dptools", _DPTOOLS),
    "play_and_get_digits": ("mod_dptools", _DPTOOLS_DOCS + "6586933 (play_and_get_digits)"),
    "wait_for_silence": ("mod_dptools", _DPTOOLS_DOCS + "6586879 (wait_for_silence)"),
    "socket": ("mod_event_socket", "src/mod/event_handlers/mod_event_socket/mod_event_socket.c, "
                                   "SWITCH_ADD_APP(app_interface, \"socket\", ...) in mod_event_socket_load"),
    "avmd_start": ("mod_avmd", "src/mod/applications/mod_avmd/mod_avmd.c; capture 40_avmd_machine_7701"),
}
