"""``iotids-replay``: publish flows from an IoTID20 or CICFlowMeter CSV to the broker at a set rate.

Each record carries the CSV's columns (IoTID20 names, or CICFlowMeter names with spaces), plus
``sensor`` and a per-run ``seq`` so the agent can detect gaps. The ground truth (label and category
per ``seq``) is written beside, so a run can be scored against what the agent said.
Standard library + paho only: it runs on a gateway or a laptop without the trainer's dependencies.
"""

from __future__ import annotations

import argparse
import csv
import json
import logging
import math
import random
import sys
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import paho.mqtt.client as mqtt

from ids_core.flowmessage import encode

log = logging.getLogger(__name__)

LABEL_COLUMNS = ("Label", "Cat", "Sub_Cat", "Target")
BENIGN = "Normal"


@dataclass
class ReplayResult:
    published: int
    messages: int
    seconds: float
    truth_path: Path | None

    @property
    def rate(self) -> float:
        return self.published / self.seconds if self.seconds else 0.0


def _number(text: str) -> Any:
    """CSV cell → JSON value: int, float (inf stays inf, written as the JSON literal Infinity), or text."""
    t = text.strip()
    try:
        return int(t)
    except ValueError:
        pass
    try:
        return float(t)
    except ValueError:
        return t


def read_flows(path: str | Path, *, limit: int | None = None, shuffle_seed: int | None = None) -> list[dict[str, Any]]:
    """Rows of the CSV as records (identifiers and labels kept as text, numbers as numbers)."""
    with open(path, newline="") as f:
        reader = csv.DictReader(f)
        text_cols = {"Flow_ID", "Flow ID", "Src_IP", "Src IP", "Dst_IP", "Dst IP", "Timestamp", *LABEL_COLUMNS}
        rows = [
            {k.strip(): (v.strip() if k.strip() in text_cols else _number(v)) for k, v in row.items() if k is not None}
            for row in reader
        ]
    if shuffle_seed is not None:
        random.Random(shuffle_seed).shuffle(rows)
    return rows[:limit] if limit else rows


def truth_of(row: dict[str, Any]) -> dict[str, Any]:
    category = row.get("Cat", row.get("Target", row.get("Label")))
    label = row.get("Label")
    malicious = (label != BENIGN) if label is not None else (category != BENIGN)
    return {"category": category, "malicious": bool(malicious)}


def records(rows: list[dict[str, Any]], sensor: str) -> Iterator[tuple[dict[str, Any], dict[str, Any]]]:
    """(record to publish, ground truth) per row; labels are not sent."""
    for seq, row in enumerate(rows):
        rec = {k: v for k, v in row.items() if k not in LABEL_COLUMNS}
        rec["seq"], rec["sensor"] = seq, sensor
        yield rec, {"seq": seq, "sensor": sensor, "flow_id": row.get("Flow_ID"), **truth_of(row)}


def connect(
    host: str,
    port: int,
    client_id: str = "",
    max_inflight: int = 1000,
    protocol: str = "5",
    *,
    username: str | None = None,
    password_file: Path | None = None,
    ca_file: Path | None = None,
) -> mqtt.Client:
    """A started publisher connection (MQTT 5, or "3.1.1"); TLS when ``ca_file`` is given (the broker's CA)."""
    client = mqtt.Client(
        mqtt.CallbackAPIVersion.VERSION2,
        client_id=client_id,
        protocol=mqtt.MQTTv5 if protocol == "5" else mqtt.MQTTv311,
    )
    if username:
        password = password_file.read_text().strip() if password_file else None
        client.username_pw_set(username, password)
    if ca_file:
        client.tls_set(ca_certs=str(ca_file))
    client.max_inflight_messages_set(max_inflight)
    client.reconnect_delay_set(1, 5)
    client.connect(host, port)
    client.loop_start()
    return client


def replay(
    rows: list[dict[str, Any]],
    *,
    host: str = "127.0.0.1",
    port: int = 1883,
    topic: str,
    rate: float = 0.0,
    per_message: int = 1,
    columnar: bool = False,
    qos: int = 1,
    sensor: str = "replay",
    truth_path: Path | None = None,
    progress: bool = False,
    client: mqtt.Client | None = None,
    wait_timeout: float = 600.0,
) -> ReplayResult:
    """Publish ``rows`` (``per_message`` records per message, as an array or a ``columnar`` batch) at ``rate``
    flows/s (0 = as fast as possible) and wait until the broker acknowledged every message."""
    own = client is None
    client = client or connect(host, port)
    truth_file = open(truth_path, "w") if truth_path else None  # noqa: SIM115
    pending: list[mqtt.MQTTMessageInfo] = []
    start = time.monotonic()
    batch: list[dict[str, Any]] = []
    published = messages = 0
    try:
        for i, (rec, truth) in enumerate(records(rows, sensor), 1):
            batch.append(rec)
            if truth_file:
                truth_file.write(json.dumps(truth) + "\n")
            if len(batch) < per_message and i < len(rows):
                continue
            payload = encode(batch, columnar=columnar)
            pending.append(client.publish(topic, payload, qos=qos))
            published += len(batch)
            messages += 1
            batch = []
            if rate > 0:
                ahead = published / rate - (time.monotonic() - start)
                if ahead > 0:
                    time.sleep(ahead)
            if progress and messages % 200 == 0:
                _progress(published, len(rows), start)
        deadline = time.monotonic() + wait_timeout
        for info in pending:
            while not _acknowledged(info, qos):
                if time.monotonic() > deadline:
                    raise TimeoutError(f"broker did not acknowledge all {messages} messages within {wait_timeout} s")
                time.sleep(0.005)
    finally:
        if truth_file:
            truth_file.close()
        if own:
            client.disconnect()
            client.loop_stop()
    seconds = time.monotonic() - start
    if progress:
        _progress(published, len(rows), start)
        print(file=sys.stderr)
    return ReplayResult(published, messages, seconds, truth_path)


def _acknowledged(info: mqtt.MQTTMessageInfo, qos: int) -> bool:
    """True once the broker acknowledged the message.

    A QoS>0 message published while the broker was away has ``rc == MQTT_ERR_NO_CONN``, yet paho keeps it
    and sends it after reconnecting; ``is_published()`` would raise for it, killing the replay on a broker
    restart. Such a message is waited for like any other (QoS 0 messages sent while away are lost: raise).
    """
    if qos > 0 and info.rc == mqtt.MQTT_ERR_NO_CONN:
        info.rc = mqtt.MQTT_ERR_SUCCESS
    return info.is_published()


def _progress(done: int, total: int, start: float) -> None:
    elapsed = max(time.monotonic() - start, 1e-9)
    width = 30
    filled = math.floor(width * done / max(total, 1))
    print(f"\r[{'#' * filled}{'.' * (width - filled)}] {done:,}/{total:,} flows, {done / elapsed:,.0f} flows/s",
          end="", file=sys.stderr, flush=True)  # fmt: skip


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="iotids-replay", description=__doc__.split("\n\n")[0])
    p.add_argument("csv", type=Path, help="IoTID20 (full or sample) or CICFlowMeter CSV")
    p.add_argument("--host", default="127.0.0.1")
    p.add_argument("--port", type=int, default=1883)
    p.add_argument("--prefix", default="edge-ids", help="topic prefix (agent's mqtt.topic_prefix)")
    p.add_argument("--gateway", default="gateway", help="the agent's gateway_id")
    p.add_argument("--rate", type=float, default=1000.0, help="flows per second (0 = as fast as possible)")
    p.add_argument("--per-message", type=int, default=1, help="flows per MQTT message (a JSON array when > 1)")
    p.add_argument("--columnar", action="store_true", help="send columnar batches: column names once per message")
    p.add_argument("--limit", type=int, help="publish only the first N rows")
    p.add_argument("--shuffle", type=int, metavar="SEED", help="shuffle rows with this seed (files sorted by class)")
    p.add_argument("--sensor", default="replay", help="publisher id carried in every record")
    p.add_argument("--truth", type=Path, help="write the ground truth here (JSON lines: seq, label, category)")
    p.add_argument("--protocol", choices=("5", "3.1.1"), default="5", help="MQTT protocol version")
    p.add_argument("--client-id", default="", help="MQTT client id (the shipped broker binds each account to one)")
    p.add_argument("--username", help="MQTT account (config/mosquitto: publisher-<gateway>)")
    p.add_argument("--password-file", type=Path, help="file holding the account's password")
    p.add_argument("--cafile", type=Path, help="the broker's CA certificate: connect with TLS")
    args = p.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    rows = read_flows(args.csv, limit=args.limit, shuffle_seed=args.shuffle)
    topic = f"{args.prefix}/{args.gateway}/flows"
    client = connect(args.host, args.port, args.client_id, protocol=args.protocol, username=args.username,
                     password_file=args.password_file, ca_file=args.cafile)  # fmt: skip
    result = replay(rows, topic=topic, rate=args.rate, per_message=args.per_message, columnar=args.columnar,
                    sensor=args.sensor, truth_path=args.truth, progress=True, client=client)  # fmt: skip
    client.disconnect()
    client.loop_stop()
    print(f"published {result.published:,} flows in {result.messages:,} messages to {topic} "
          f"in {result.seconds:.1f} s ({result.rate:,.0f} flows/s)")  # fmt: skip
    return 0


if __name__ == "__main__":
    sys.exit(main())
