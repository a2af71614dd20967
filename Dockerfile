# Station power controller: REST on 4567, OCPP 1.6J on 9000, SQLite under /app/data.
FROM python:3.11-slim

ENV PYTHONDONTWRITEBYTECODE=1 PYTHONUNBUFFERED=1
WORKDIR /app

COPY pyproject.toml README.md ./
COPY allocator ./allocator
COPY protocol ./protocol
COPY controller ./controller
COPY simulators ./simulators
RUN pip install --no-cache-dir . \
    && useradd --system --uid 10001 --home-dir /app controller \
    && mkdir -p /app/data && chown controller /app/data

COPY config.json ./config.json
USER controller
VOLUME ["/app/data"]
EXPOSE 4567 9000

# exec form: the controller is PID 1 and receives SIGTERM itself, then closes
# connections and writes everything to the database before it exits.
STOPSIGNAL SIGTERM
ENTRYPOINT ["ev-controller", "--config", "/app/config.json", "--db", "/app/data/controller.db"]
