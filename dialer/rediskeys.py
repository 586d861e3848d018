"""The names of everything the engines keep in Redis, in one place for the engine, the web API,
`dialer status` and `dialer agent` (docs/redis-api.md). No imports: any command may use it."""

EVENTS_STREAM = "dialer:events"                            # capped stream of call, agent, stats events
AGENTS_HASH = "dialer:agents"                              # agent id -> JSON live state
CAMPAIGN_HASH = "dialer:campaign:{campaign}:{engine}"      # live counters, expire after 30 s
CAMPAIGN_HASH_PREFIX = "dialer:campaign:"
COMMANDS_STREAM = "dialer:commands"                        # the web app's commands
ENGINE_STREAM = "dialer:commands:engine:{engine}"          # commands forwarded to one engine
REPLIES_STREAM = "dialer:replies"                          # replies, or dialer:replies:<name>
REQUEST_KEY = "dialer:request:{request_id}"                # a command's state and stored reply
CPS_BUCKET = "dialer:cps:{gateway}"                        # a gateway's shared calls-per-second budget
UNICAST_BLOCK = "dialer:unicast:{low}-{high}"              # the engine holding these AMD ports (lease)
