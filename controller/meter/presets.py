"""Register maps of common grid meters (docs/site.md, "Meter presets").

Each map says where a meter keeps its total active power and its phase currents, taken from
the maker's documentation (cited per preset). ``power`` is read in W or kW as the meter
keeps it and scaled to kW; currents in A; import is positive.
"""

from __future__ import annotations

from typing import Final

from controller.config import RegisterConfig, RegisterMap

# Eastron SDM630 Modbus (V2): "Modbus Protocol" document of the SDM630 series, input
# registers (function code 04), IEEE 754 float32, high word first. 30007/30009/30011 are the
# phase 1-3 currents in A (addresses 0x0006, 0x0008, 0x000A); 30053 is the total system
# power in W (address 0x0034).
EASTRON_SDM630: Final = RegisterMap(
    power=RegisterConfig(address=0x0034, table="input", type="float32", scale=0.001),
    current=(
        RegisterConfig(address=0x0006, table="input", type="float32"),
        RegisterConfig(address=0x0008, table="input", type="float32"),
        RegisterConfig(address=0x000A, table="input", type="float32"),
    ),
)

PRESETS: Final[dict[str, RegisterMap]] = {
    "eastron-sdm630": EASTRON_SDM630,
}
