"""The dialer engine: campaigns' call flow on FreeSWITCH, joining the Event Socket layer, the
compliance gate, pacing and AMD."""
