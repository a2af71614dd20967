"""Register maps of common grid meters (docs/site-meter.md, "Presets").

Each map says where a meter keeps its total active power and its phase currents, taken from
the maker's documentation (cited per preset, with the document's name and version). ``power``
is read in the unit the meter keeps it and scaled to kW; currents to A. All three meters
count import (consumption from the grid) as positive and export as negative, as the
controller does, so no scale is negative. Addresses are the 0-based protocol addresses that
go on the wire (a document's "30053" register is address 52).
"""

from __future__ import annotations

from typing import Final

from controller.config import RegisterConfig, RegisterMap

# Eastron SDM630 Modbus V2: "SDM630 Modbus Protocol" (Eastron / B+G e-tech, SDM630-Modbus
# V2 user manual, section "Modbus Protocol Input Registers"). Input registers (function code
# 04), each value an IEEE 754 float32 in two registers, high word first. 30007/30009/30011:
# phase 1-3 current in A (addresses 0x0006, 0x0008, 0x000A); 30053: total system power in W
# (address 0x0034), signed: negative when the site exports.
EASTRON_SDM630: Final = RegisterMap(
    power=RegisterConfig(address=0x0034, table="input", type="float32", scale=0.001),
    current=(
        RegisterConfig(address=0x0006, table="input", type="float32"),
        RegisterConfig(address=0x0008, table="input", type="float32"),
        RegisterConfig(address=0x000A, table="input", type="float32"),
    ),
)

# Carlo Gavazzi EM24-DIN: "EM24-DIN Communication Protocol, Version 3 Revision 1", table
# "Instantaneous variables and meters". Read with function code 03 (or 04); 32-bit values are
# signed INT32 sent least significant word first ("LSW->MSW"), so word order "little".
# 000Ch/000Eh/0010h: A L1-L3, weight A*1000 (1 unit = 0.001 A); 0028h: W sys, weight W*10
# (1 unit = 0.1 W = 0.0001 kW), negative when exporting.
CARLO_GAVAZZI_EM24: Final = RegisterMap(
    power=RegisterConfig(
        address=0x0028, table="holding", type="int32", scale=0.0001, word_order="little"
    ),
    current=(
        RegisterConfig(
            address=0x000C, table="holding", type="int32", scale=0.001, word_order="little"
        ),
        RegisterConfig(
            address=0x000E, table="holding", type="int32", scale=0.001, word_order="little"
        ),
        RegisterConfig(
            address=0x0010, table="holding", type="int32", scale=0.001, word_order="little"
        ),
    ),
)

# Janitza UMG 96-PA: "Power Analyser UMG 96-PA, Modbus-address list and Formulary" (Janitza
# doc. no. 2.061.029.1, 08/2018, up to firmware 1.12), table "Frequently required readings".
# Holding registers (function code 03), IEEE 754 float32, high byte and high word first.
# 19012/19014/19016: current L1-L3 in A; 19026: real power sum L1..L3 in W, positive for
# consumption (import), negative for supply (export). Janitza numbers addresses from 0 as
# sent, so they are used as they stand.
JANITZA_UMG96PA: Final = RegisterMap(
    power=RegisterConfig(address=19026, table="holding", type="float32", scale=0.001),
    current=(
        RegisterConfig(address=19012, table="holding", type="float32"),
        RegisterConfig(address=19014, table="holding", type="float32"),
        RegisterConfig(address=19016, table="holding", type="float32"),
    ),
)

PRESETS: Final[dict[str, RegisterMap]] = {
    "eastron-sdm630": EASTRON_SDM630,
    "carlo-gavazzi-em24": CARLO_GAVAZZI_EM24,
    "janitza-umg96pa": JANITZA_UMG96PA,
}
