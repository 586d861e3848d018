"""FreeSWITCH configuration and dialplans for the dialer: the site file (site.py), the renderer
(render.py), the dialplan applications the templates may use (applications.py) and the
`dialer freeswitch` command group (cli.py). Guide: docs/freeswitch.md."""
