"""The station core: the one owner of the station's state, without I/O.

Theory of operation (docs/architecture.md has the whole picture):

* :class:`controller.core.station.StationCore` holds everything the controller knows:
  chargers and connectors, sessions, what each charger was sent and has confirmed (limit
  books), holds and pins, learned demand, the battery's energy, the transaction counter.
* ``handle(event) -> list[Command]`` is the whole interface. Events
  (:mod:`controller.core.events`) carry ``now``; commands
  (:mod:`controller.core.commands`) tell the shell what to do: answer, persist, send a
  profile, wake the core at a time.
* A change that must be durable before it is acknowledged is proposed, committed by the
  shell, then applied (docs/persistence.md).
* Lifecycles are transition tables (:mod:`controller.core.lifecycle`).

Pure: no asyncio, sockets, sqlite or clock reads here (a test checks the imports).
"""
