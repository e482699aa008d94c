"""The Community ID of alerts against the spec's published test vectors.

Vectors copied from github.com/corelight/community-id-spec at commit c4ec2bc40d65ddbcbdd642582bf5609797a80772:
``baseline/README.md`` ("Default settings" table: seed 0, base64) and ``baseline/baseline_deflt.json`` (the same
settings over the repository's ``pcaps/combined.pcap.gz``). Each flow is checked in both directions.
"""

from __future__ import annotations

import pytest

from agent.documents import alert, community_id

# (protocol, source address, destination address, source port, destination port, Community ID)
VECTORS = [
    # baseline/README.md, default settings
    (6, "1.2.3.4", "5.6.7.8", 1122, 3344, "1:wCb3OG7yAFWelaUydu0D+125CLM="),
    (17, "1.2.3.4", "5.6.7.8", 1122, 3344, "1:0Mu9InQx6z4ZiCZM/7HXi2WMhOg="),
    (132, "1.2.3.4", "5.6.7.8", 1122, 3344, "1:EKt4MsxuyaE6mL+hmrEkQ9csDD8="),
    # baseline/baseline_deflt.json
    (6, "128.232.110.120", "66.35.250.204", 34855, 80, "1:LQU9qZlK+B5F3KDmev6m5PMibrg="),
    (17, "192.168.1.52", "8.8.8.8", 54585, 53, "1:d/FP5EW3wiY1vCndhwleRRKHowQ="),
    (132, "192.168.170.8", "192.168.170.56", 7, 7, "1:MP2EtRCAUIZvTw6MxJHLV7N7JDs="),
    (
        6,
        "2001:470:e5bf:dead:4957:2174:e82c:4887",
        "2607:f8b0:400c:c03::1a",
        63943,
        25,
        "1:/qFaeAR+gFe1KYjMzVDsMv+wgU4=",
    ),
]


def _ident(proto, src, dst, sport, dport):
    return {"protocol": proto, "src_ip": src, "dst_ip": dst, "src_port": sport, "dst_port": dport}


@pytest.mark.parametrize(("proto", "src", "dst", "sport", "dport", "expected"), VECTORS)
def test_published_vectors_both_directions(proto, src, dst, sport, dport, expected):
    assert community_id(_ident(proto, src, dst, sport, dport)) == expected
    assert community_id(_ident(proto, dst, src, dport, sport)) == expected


def test_alert_carries_it_from_csv_style_identifiers():
    """Ports and protocol as a CSV gives them (floats) still hash to the published value."""
    proto, src, dst, sport, dport, expected = VECTORS[3]
    ident = _ident(float(proto), src, dst, float(sport), float(dport))
    doc = alert(gateway="g", ident=ident, score=0.9, threshold=0.5, model={})
    assert doc["community_id"] == expected
