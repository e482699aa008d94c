"""The publisher side: packets → IoTID20 flow records (the flow meter) and CSV replay, out to MQTT or CSV."""
