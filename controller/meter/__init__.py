"""The site's grid meter (docs/site.md): what it measures at the connection point, read over
Modbus TCP (``controller.meter.modbus``) or pushed over REST."""
