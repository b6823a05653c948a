"""The nurses' side: what a ward runs to look at the beds, never installed on the appliance.

- ``bedside station``: a central-station web page (static files in ``station/web/``) that
  connects straight to the broker's MQTT-over-WebSocket listener;
- ``bedside watch`` / ``bedside ack``: the same in a terminal, and acknowledging from a shell;
- ``bedside export --fhir``: vitals as a FHIR R4 Bundle for charting systems.

The appliance (``device``) never imports this package.
"""
