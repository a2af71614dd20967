"""Literal OCPP-J 1.6 frames: one CALL and one CALLRESULT for every action, written the way
the spec's examples are. Each payload is exactly what our serialiser writes back (UTC ``Z``
times, whole numbers without ``.0``), so a round trip must reproduce it unchanged."""

from __future__ import annotations

PROFILE = (
    '{"chargingProfileId":7,"transactionId":42,"stackLevel":1,'
    '"chargingProfilePurpose":"TxProfile","chargingProfileKind":"Absolute",'
    '"validFrom":"2024-05-01T00:00:00Z","validTo":"2024-05-02T00:00:00Z",'
    '"chargingSchedule":{"duration":3600,"startSchedule":"2024-05-01T12:00:00Z",'
    '"chargingRateUnit":"A","chargingSchedulePeriod":[{"startPeriod":0,"limit":16.5,'
    '"numberPhases":3},{"startPeriod":1800,"limit":32}],"minChargingRate":6.1}}'
)

SAMPLES = (
    '[{"timestamp":"2024-05-01T12:00:00.250Z","sampledValue":['
    '{"value":"12345.6","context":"Sample.Periodic","format":"Raw",'
    '"measurand":"Energy.Active.Import.Register","location":"Outlet","unit":"Wh"},'
    '{"value":"7.2","measurand":"Power.Active.Import","phase":"L1-N","unit":"kW"},'
    '{"value":"80","measurand":"SoC","location":"EV","unit":"Percent"}]}]'
)

# action -> CALL frame text
CALLS: dict[str, str] = {
    "Authorize": '[2,"a1","Authorize",{"idTag":"04A2B3C4D5E6F7"}]',
    "BootNotification": (
        '[2,"19223201","BootNotification",{"chargePointVendor":"VendorX",'
        '"chargePointModel":"SingleSocketCharger","chargePointSerialNumber":"SN-1",'
        '"chargeBoxSerialNumber":"CB-1","firmwareVersion":"1.2.3","iccid":"8931",'
        '"imsi":"2040","meterType":"DC meter","meterSerialNumber":"M-9"}]'
    ),
    "CancelReservation": '[2,"c1","CancelReservation",{"reservationId":5}]',
    "ChangeAvailability": '[2,"c2","ChangeAvailability",{"connectorId":0,"type":"Inoperative"}]',
    "ChangeConfiguration": (
        '[2,"c3","ChangeConfiguration",{"key":"HeartbeatInterval","value":"300"}]'
    ),
    "ClearCache": '[2,"c4","ClearCache",{}]',
    "ClearChargingProfile": (
        '[2,"c5","ClearChargingProfile",{"id":7,"connectorId":1,'
        '"chargingProfilePurpose":"TxProfile","stackLevel":1}]'
    ),
    "DataTransfer": (
        '[2,"d1","DataTransfer",{"vendorId":"com.example","messageId":"hello",'
        '"data":"{\\"x\\":1}"}]'
    ),
    "DiagnosticsStatusNotification": (
        '[2,"d2","DiagnosticsStatusNotification",{"status":"Uploaded"}]'
    ),
    "FirmwareStatusNotification": '[2,"f1","FirmwareStatusNotification",{"status":"Installed"}]',
    "GetCompositeSchedule": (
        '[2,"g1","GetCompositeSchedule",{"connectorId":1,"duration":86400,"chargingRateUnit":"W"}]'
    ),
    "GetConfiguration": (
        '[2,"g2","GetConfiguration",{"key":["ChargingScheduleAllowedChargingRateUnit",'
        '"SupportedFeatureProfiles"]}]'
    ),
    "GetDiagnostics": (
        '[2,"g3","GetDiagnostics",{"location":"ftp://logs.example.com/up/","retries":3,'
        '"retryInterval":60,"startTime":"2024-04-30T00:00:00Z",'
        '"stopTime":"2024-05-01T00:00:00Z"}]'
    ),
    "GetLocalListVersion": '[2,"g4","GetLocalListVersion",{}]',
    "Heartbeat": '[2,"h1","Heartbeat",{}]',
    "MeterValues": (
        f'[2,"m1","MeterValues",{{"connectorId":1,"transactionId":42,"meterValue":{SAMPLES}}}]'
    ),
    "RemoteStartTransaction": (
        f'[2,"r1","RemoteStartTransaction",{{"connectorId":1,"idTag":"TAG1",'
        f'"chargingProfile":{PROFILE}}}]'
    ),
    "RemoteStopTransaction": '[2,"r2","RemoteStopTransaction",{"transactionId":42}]',
    "ReserveNow": (
        '[2,"r3","ReserveNow",{"connectorId":2,"expiryDate":"2024-05-01T13:00:00Z",'
        '"idTag":"TAG1","parentIdTag":"FLEET","reservationId":5}]'
    ),
    "Reset": '[2,"r4","Reset",{"type":"Soft"}]',
    "SendLocalList": (
        '[2,"s1","SendLocalList",{"listVersion":3,"localAuthorizationList":['
        '{"idTag":"TAG1","idTagInfo":{"expiryDate":"2025-01-01T00:00:00Z",'
        '"parentIdTag":"FLEET","status":"Accepted"}},{"idTag":"TAG2"}],'
        '"updateType":"Differential"}]'
    ),
    "SetChargingProfile": (
        f'[2,"s2","SetChargingProfile",{{"connectorId":1,"csChargingProfiles":{PROFILE}}}]'
    ),
    "StartTransaction": (
        '[2,"s3","StartTransaction",{"connectorId":1,"idTag":"TAG1","meterStart":1000,'
        '"reservationId":5,"timestamp":"2024-05-01T12:00:00Z"}]'
    ),
    "StatusNotification": (
        '[2,"s4","StatusNotification",{"connectorId":1,"errorCode":"NoError",'
        '"info":"ok","status":"Charging","timestamp":"2024-05-01T12:00:00.123Z",'
        '"vendorId":"VendorX","vendorErrorCode":"E0"}]'
    ),
    "StopTransaction": (
        f'[2,"s5","StopTransaction",{{"idTag":"TAG1","meterStop":25500,'
        f'"timestamp":"2024-05-01T14:00:00Z","transactionId":42,"reason":"EVDisconnected",'
        f'"transactionData":{SAMPLES}}}]'
    ),
    "TriggerMessage": (
        '[2,"t1","TriggerMessage",{"requestedMessage":"StatusNotification","connectorId":1}]'
    ),
    "UnlockConnector": '[2,"u1","UnlockConnector",{"connectorId":1}]',
    "UpdateFirmware": (
        '[2,"u2","UpdateFirmware",{"location":"https://fw.example.com/v2.bin","retries":2,'
        '"retrieveDate":"2024-05-02T03:00:00Z","retryInterval":300}]'
    ),
}

# action -> CALLRESULT frame text
RESULTS: dict[str, str] = {
    "Authorize": (
        '[3,"a1",{"idTagInfo":{"expiryDate":"2025-01-01T00:00:00Z","parentIdTag":"FLEET",'
        '"status":"Accepted"}}]'
    ),
    "BootNotification": (
        '[3,"19223201",{"status":"Accepted","currentTime":"2013-02-01T20:53:32.486Z",'
        '"interval":300}]'
    ),
    "CancelReservation": '[3,"c1",{"status":"Rejected"}]',
    "ChangeAvailability": '[3,"c2",{"status":"Scheduled"}]',
    "ChangeConfiguration": '[3,"c3",{"status":"RebootRequired"}]',
    "ClearCache": '[3,"c4",{"status":"Accepted"}]',
    "ClearChargingProfile": '[3,"c5",{"status":"Unknown"}]',
    "DataTransfer": '[3,"d1",{"status":"UnknownVendorId","data":"none"}]',
    "DiagnosticsStatusNotification": '[3,"d2",{}]',
    "FirmwareStatusNotification": '[3,"f1",{}]',
    "GetCompositeSchedule": (
        '[3,"g1",{"status":"Accepted","connectorId":1,"scheduleStart":"2024-05-01T12:00:00Z",'
        '"chargingSchedule":{"duration":86400,"chargingRateUnit":"W",'
        '"chargingSchedulePeriod":[{"startPeriod":0,"limit":11000.5}]}}]'
    ),
    "GetConfiguration": (
        '[3,"g2",{"configurationKey":[{"key":"ChargingScheduleAllowedChargingRateUnit",'
        '"readonly":true,"value":"Current"},{"key":"SupportedFeatureProfiles",'
        '"readonly":true}],"unknownKey":["Foo"]}]'
    ),
    "GetDiagnostics": '[3,"g3",{"fileName":"diag-2024-05-01.zip"}]',
    "GetLocalListVersion": '[3,"g4",{"listVersion":-1}]',
    "Heartbeat": '[3,"h1",{"currentTime":"2024-05-01T12:00:00Z"}]',
    "MeterValues": '[3,"m1",{}]',
    "RemoteStartTransaction": '[3,"r1",{"status":"Accepted"}]',
    "RemoteStopTransaction": '[3,"r2",{"status":"Rejected"}]',
    "ReserveNow": '[3,"r3",{"status":"Occupied"}]',
    "Reset": '[3,"r4",{"status":"Accepted"}]',
    "SendLocalList": '[3,"s1",{"status":"VersionMismatch"}]',
    "SetChargingProfile": '[3,"s2",{"status":"NotSupported"}]',
    "StartTransaction": '[3,"s3",{"idTagInfo":{"status":"ConcurrentTx"},"transactionId":42}]',
    "StatusNotification": '[3,"s4",{}]',
    "StopTransaction": '[3,"s5",{"idTagInfo":{"status":"Expired"}}]',
    "TriggerMessage": '[3,"t1",{"status":"NotImplemented"}]',
    "UnlockConnector": '[3,"u1",{"status":"UnlockFailed"}]',
    "UpdateFirmware": '[3,"u2",{}]',
}
