"""The IoTID20 column schema, in one place (see ``../shared/data/iotid20/SCHEMA.md``).

Names, order and dtypes are those of the full ``IoT Network Intrusion Dataset.csv`` (625,783 rows x 86
columns) as ``pandas.read_csv`` reads it: 34 int64, 45 float64, 7 text columns (4 identifiers, 3 labels).
"""

from __future__ import annotations

from types import MappingProxyType

IDENTIFIER_COLUMNS: tuple[str, ...] = ("Flow_ID", "Src_IP", "Dst_IP", "Timestamp")
LABEL_COLUMNS: tuple[str, ...] = ("Label", "Cat", "Sub_Cat")

# The 79 numeric IoTID20 columns in file order (the header of iotid20_2000.csv minus ``Target``); ":int" marks
# the 34 that the file holds as integers (the rest are floats).
_NUMERIC_TABLE = """
    Src_Port:int Dst_Port:int Protocol:int Flow_Duration:int Tot_Fwd_Pkts:int Tot_Bwd_Pkts:int TotLen_Fwd_Pkts
    TotLen_Bwd_Pkts Fwd_Pkt_Len_Max Fwd_Pkt_Len_Min Fwd_Pkt_Len_Mean Fwd_Pkt_Len_Std Bwd_Pkt_Len_Max
    Bwd_Pkt_Len_Min Bwd_Pkt_Len_Mean Bwd_Pkt_Len_Std Flow_Byts/s Flow_Pkts/s Flow_IAT_Mean Flow_IAT_Std
    Flow_IAT_Max Flow_IAT_Min Fwd_IAT_Tot Fwd_IAT_Mean Fwd_IAT_Std Fwd_IAT_Max Fwd_IAT_Min Bwd_IAT_Tot Bwd_IAT_Mean
    Bwd_IAT_Std Bwd_IAT_Max Bwd_IAT_Min Fwd_PSH_Flags:int Bwd_PSH_Flags:int Fwd_URG_Flags:int Bwd_URG_Flags:int
    Fwd_Header_Len:int Bwd_Header_Len:int Fwd_Pkts/s Bwd_Pkts/s Pkt_Len_Min Pkt_Len_Max Pkt_Len_Mean Pkt_Len_Std
    Pkt_Len_Var FIN_Flag_Cnt:int SYN_Flag_Cnt:int RST_Flag_Cnt:int PSH_Flag_Cnt:int ACK_Flag_Cnt:int
    URG_Flag_Cnt:int CWE_Flag_Count:int ECE_Flag_Cnt:int Down/Up_Ratio Pkt_Size_Avg Fwd_Seg_Size_Avg
    Bwd_Seg_Size_Avg Fwd_Byts/b_Avg:int Fwd_Pkts/b_Avg:int Fwd_Blk_Rate_Avg:int Bwd_Byts/b_Avg:int
    Bwd_Pkts/b_Avg:int Bwd_Blk_Rate_Avg:int Subflow_Fwd_Pkts:int Subflow_Fwd_Byts:int Subflow_Bwd_Pkts:int
    Subflow_Bwd_Byts:int Init_Fwd_Win_Byts:int Init_Bwd_Win_Byts:int Fwd_Act_Data_Pkts:int Fwd_Seg_Size_Min:int
    Active_Mean Active_Std Active_Max Active_Min Idle_Mean Idle_Std Idle_Max Idle_Min
"""
NUMERIC_COLUMNS: tuple[str, ...] = tuple(name.removesuffix(":int") for name in _NUMERIC_TABLE.split())

# File order: identifiers interleaved with the first numeric columns, then statistics, then labels.
COLUMNS: tuple[str, ...] = (
    "Flow_ID", "Src_IP", NUMERIC_COLUMNS[0], "Dst_IP", *NUMERIC_COLUMNS[1:3], "Timestamp",
    *NUMERIC_COLUMNS[3:], *LABEL_COLUMNS,
)  # fmt: skip

INT_COLUMNS: tuple[str, ...] = tuple(name[:-4] for name in _NUMERIC_TABLE.split() if name.endswith(":int"))
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
