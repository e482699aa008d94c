"""The IoTID20 column schema, in one place (see ``../shared/data/iotid20/SCHEMA.md``).

Names, order and dtypes are those of the full ``IoT Network Intrusion Dataset.csv`` (625,783 rows x 86
columns) as ``pandas.read_csv`` reads it: 34 int64, 45 float64, 7 text columns (4 identifiers, 3 labels).
"""

from __future__ import annotations

from types import MappingProxyType

IDENTIFIER_COLUMNS: tuple[str, ...] = ("Flow_ID", "Src_IP", "Dst_IP", "Timestamp")
LABEL_COLUMNS: tuple[str, ...] = ("Label", "Cat", "Sub_Cat")

# The 79 numeric IoTID20 columns in file order (the header of iotid20_2000.csv minus ``Target``).
NUMERIC_COLUMNS: tuple[str, ...] = (
    "Src_Port", "Dst_Port", "Protocol", "Flow_Duration", "Tot_Fwd_Pkts", "Tot_Bwd_Pkts",
    "TotLen_Fwd_Pkts", "TotLen_Bwd_Pkts", "Fwd_Pkt_Len_Max", "Fwd_Pkt_Len_Min", "Fwd_Pkt_Len_Mean",
    "Fwd_Pkt_Len_Std", "Bwd_Pkt_Len_Max", "Bwd_Pkt_Len_Min", "Bwd_Pkt_Len_Mean", "Bwd_Pkt_Len_Std",
    "Flow_Byts/s", "Flow_Pkts/s", "Flow_IAT_Mean", "Flow_IAT_Std", "Flow_IAT_Max", "Flow_IAT_Min",
    "Fwd_IAT_Tot", "Fwd_IAT_Mean", "Fwd_IAT_Std", "Fwd_IAT_Max", "Fwd_IAT_Min", "Bwd_IAT_Tot",
    "Bwd_IAT_Mean", "Bwd_IAT_Std", "Bwd_IAT_Max", "Bwd_IAT_Min", "Fwd_PSH_Flags", "Bwd_PSH_Flags",
    "Fwd_URG_Flags", "Bwd_URG_Flags", "Fwd_Header_Len", "Bwd_Header_Len", "Fwd_Pkts/s", "Bwd_Pkts/s",
    "Pkt_Len_Min", "Pkt_Len_Max", "Pkt_Len_Mean", "Pkt_Len_Std", "Pkt_Len_Var", "FIN_Flag_Cnt",
    "SYN_Flag_Cnt", "RST_Flag_Cnt", "PSH_Flag_Cnt", "ACK_Flag_Cnt", "URG_Flag_Cnt", "CWE_Flag_Count",
    "ECE_Flag_Cnt", "Down/Up_Ratio", "Pkt_Size_Avg", "Fwd_Seg_Size_Avg", "Bwd_Seg_Size_Avg",
    "Fwd_Byts/b_Avg", "Fwd_Pkts/b_Avg", "Fwd_Blk_Rate_Avg", "Bwd_Byts/b_Avg", "Bwd_Pkts/b_Avg",
    "Bwd_Blk_Rate_Avg", "Subflow_Fwd_Pkts", "Subflow_Fwd_Byts", "Subflow_Bwd_Pkts", "Subflow_Bwd_Byts",
    "Init_Fwd_Win_Byts", "Init_Bwd_Win_Byts", "Fwd_Act_Data_Pkts", "Fwd_Seg_Size_Min", "Active_Mean",
    "Active_Std", "Active_Max", "Active_Min", "Idle_Mean", "Idle_Std", "Idle_Max", "Idle_Min",
)  # fmt: skip

# File order: identifiers interleaved with the first numeric columns, then statistics, then labels.
COLUMNS: tuple[str, ...] = (
    "Flow_ID", "Src_IP", NUMERIC_COLUMNS[0], "Dst_IP", *NUMERIC_COLUMNS[1:3], "Timestamp",
    *NUMERIC_COLUMNS[3:], *LABEL_COLUMNS,
)  # fmt: skip

INT_COLUMNS: tuple[str, ...] = (
    "Src_Port", "Dst_Port", "Protocol", "Flow_Duration", "Tot_Fwd_Pkts", "Tot_Bwd_Pkts",
    "Fwd_PSH_Flags", "Bwd_PSH_Flags", "Fwd_URG_Flags", "Bwd_URG_Flags", "Fwd_Header_Len", "Bwd_Header_Len",
    "FIN_Flag_Cnt", "SYN_Flag_Cnt", "RST_Flag_Cnt", "PSH_Flag_Cnt", "ACK_Flag_Cnt", "URG_Flag_Cnt",
    "CWE_Flag_Count", "ECE_Flag_Cnt", "Fwd_Byts/b_Avg", "Fwd_Pkts/b_Avg", "Fwd_Blk_Rate_Avg",
    "Bwd_Byts/b_Avg", "Bwd_Pkts/b_Avg", "Bwd_Blk_Rate_Avg", "Subflow_Fwd_Pkts", "Subflow_Fwd_Byts",
    "Subflow_Bwd_Pkts", "Subflow_Bwd_Byts", "Init_Fwd_Win_Byts", "Init_Bwd_Win_Byts", "Fwd_Act_Data_Pkts",
    "Fwd_Seg_Size_Min",
)  # fmt: skip
FLOAT_COLUMNS: tuple[str, ...] = tuple(c for c in NUMERIC_COLUMNS if c not in INT_COLUMNS)
TEXT_COLUMNS: tuple[str, ...] = IDENTIFIER_COLUMNS + LABEL_COLUMNS

# Columns with one value over the whole file (std 0); most pipelines drop them.
CONSTANT_COLUMNS: MappingProxyType[str, int] = MappingProxyType(
    {
        "Fwd_PSH_Flags": 0,
        "Fwd_URG_Flags": 0,
        "Fwd_Byts/b_Avg": 0,
        "Fwd_Pkts/b_Avg": 0,
        "Fwd_Blk_Rate_Avg": 0,
        "Bwd_Byts/b_Avg": 0,
        "Bwd_Pkts/b_Avg": 0,
        "Bwd_Blk_Rate_Avg": 0,
        "Init_Fwd_Win_Byts": -1,
        "Fwd_Seg_Size_Min": 0,
    }
)
# The two columns that hold +inf in the raw file (both inf in the same rows).
INF_COLUMNS: tuple[str, ...] = ("Flow_Byts/s", "Flow_Pkts/s")

TIMESTAMP_FORMAT = "%d/%m/%Y %I:%M:%S %p"  # e.g. 25/07/2019 03:25:53 AM

LABEL_NORMAL = "Normal"
LABEL_ANOMALY = "Anomaly"
LABEL_VALUES: tuple[str, ...] = (LABEL_ANOMALY, LABEL_NORMAL)

# Sub_Cat -> Cat, spelled exactly as in the file (including "Mirai-Hostbruteforceg").
SUB_CAT_TO_CAT: MappingProxyType[str, str] = MappingProxyType(
    {
        "Mirai-UDP Flooding": "Mirai",
        "Mirai-Hostbruteforceg": "Mirai",
        "DoS-Synflooding": "DoS",
        "Mirai-HTTP Flooding": "Mirai",
        "Mirai-Ackflooding": "Mirai",
        "Scan Port OS": "Scan",
        "Normal": "Normal",
        "MITM ARP Spoofing": "MITM ARP Spoofing",
        "Scan Hostport": "Scan",
    }
)
CAT_VALUES: tuple[str, ...] = ("Mirai", "Scan", "DoS", "Normal", "MITM ARP Spoofing")
SUB_CAT_VALUES: tuple[str, ...] = tuple(SUB_CAT_TO_CAT)

# Row counts per Sub_Cat in the full file (sum 625,783).
SUB_CAT_COUNTS: MappingProxyType[str, int] = MappingProxyType(
    {
        "Mirai-UDP Flooding": 183_554,
        "Mirai-Hostbruteforceg": 121_181,
        "DoS-Synflooding": 59_391,
        "Mirai-HTTP Flooding": 55_818,
        "Mirai-Ackflooding": 55_124,
        "Scan Port OS": 53_073,
        "Normal": 40_073,
        "MITM ARP Spoofing": 35_377,
        "Scan Hostport": 22_192,
    }
)

assert len(COLUMNS) == 86 and len(NUMERIC_COLUMNS) == 79
assert len(INT_COLUMNS) == 34 and len(FLOAT_COLUMNS) == 45
assert sum(SUB_CAT_COUNTS.values()) == 625_783
