"""The asyncio shell shared by the controller, the simulators and the tests.

The station's logic lives in pure cores (``allocator``, ``protocol``, ``controller.core``)
that never read a clock, await or touch a socket. This package is the thin layer around
them that does:

* :mod:`shell.clock`: the one clock. ``now()`` is epoch seconds; timers are set at absolute
  times of that same clock (``call_at``), so a test or a simulated day moves time by hand
  (:class:`shell.clock.ManualClock`) and every deadline follows, including OCPP call
  timeouts.
* :mod:`shell.link`: one OCPP-J connection driven by asyncio around
  :class:`protocol.Connection`: text in, events dispatched, frames out, our CALLs as
  awaitables or callbacks with one outcome type, the call deadline on the clock.
* :mod:`shell.websocket`: runs a link over a ``websockets`` asyncio connection (the
  simulated chargers and the test peers); the controller runs its links over its own
  sans-I/O WebSocket transport instead (``controller.ocpp.transport``).
"""
