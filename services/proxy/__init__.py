"""HAProxy in front of the legacy stand-in and the Rune service: reads and writes routed apart.

``haproxy_config`` renders the configuration, ``haproxy_process`` runs Debian's haproxy as a
real process, ``runtime_client`` switches routes through the runtime API.
"""
