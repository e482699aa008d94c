"""The broker fixture itself: a real Mosquitto that accepts a connection and keeps QoS 1 sessions."""

import paho.mqtt.client as mqtt


def test_mosquitto_accepts_mqtt5(broker):
    c = mqtt.Client(mqtt.CallbackAPIVersion.VERSION2, protocol=mqtt.MQTTv5)
    rc = c.connect("127.0.0.1", broker.port)
    assert rc == mqtt.MQTT_ERR_SUCCESS
    c.disconnect()
