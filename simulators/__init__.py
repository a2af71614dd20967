"""Simulated charge points and vehicles that drive the controller like real hardware.

Theory of operation
-------------------
Pure state, thin shell. Everything a charger *decides* lives in pure classes that take the
time as an argument and can be tested without sockets:

* :mod:`simulators.profiles`: the smart-charging profile stack (OCPP 1.6 section 3.13):
  purposes, stack levels, replacement, validity, amps to watts, composite schedules.
* :mod:`simulators.connector`: a connector's status lifecycle as a transition table (4.9).
* :mod:`simulators.vehicles`: a battery filling along a tapering charging curve.
* :mod:`simulators.charger`: one charge point: connectors, transactions, meters, its profile
  stack and configuration keys; it integrates what each connector draws between two instants.

The I/O shell is :mod:`simulators.chargepoint`: the connection (a
:class:`shell.websocket.WebSocketLink`, the one asyncio shell around the sans-I/O
:class:`protocol.Connection` that the controller, the simulators and the tests share),
reconnections, boot, heartbeats and meter samples. Around it, each with one job:

* :mod:`simulators.handlers`: the answers to the central system's calls, in arrival order.
* :mod:`simulators.outbox`: the charger's own messages, one answered message at a time, the
  transaction messages kept and retried until delivered (OCPP 1.6 sections 3.6 and 4.8).
* :mod:`simulators.messages`: those messages built from the model (pure).

An answer to the charger's own CALL takes effect while the link dispatches it (a
transactionId is known before any CALL written behind its StartTransaction.conf is handled),
as on a charger that reads its socket in order. The simulator never parses OCPP itself: every
frame goes through :mod:`protocol`. Faults (:mod:`simulators.faults`) are knobs on a running
charger: delayed, held, rejected or unanswered profiles; dropped, duplicated or garbled frames
(the ``outgoing`` hook of the link); disconnections with or without a reboot.

Time comes from a :class:`shell.clock.Clock`: :class:`shell.clock.SystemClock` against a live
controller, or a :class:`shell.clock.ManualClock` that a runner or test moves. Periodic work is
scheduled from a fixed origin (``sleep_until``), so moving the clock is never lost on a loop
that has not gone to sleep yet.

:mod:`simulators.scenarios` reads scenario files (a station in the controller's config format
plus listed or generated arrivals); ``scenarios/`` ships a motorway stop, a depot and a car park.

A whole day: :mod:`simulators.runner` plays a scenario against the controller, in process on a
virtual clock (stepping from event to event and waiting, after each step, until both ends are
quiet) or against a running controller in real time (:mod:`simulators.ends` holds both kinds
of controller end). It fills a :class:`simulators.records.DayRecord`, which
:mod:`simulators.report` turns into figures and a table and :mod:`simulators.plot` into a PNG;
:mod:`simulators.cli` is the ``ev-sim`` command. :mod:`simulators.bound` turns the same record
into the offline upper bound of the day's energy, a linear program (``ev-sim --bound``).
"""
