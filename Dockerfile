# channelhub container image: build a wheel in one stage, run it as an unprivileged user.
FROM python:3.11-slim AS build
WORKDIR /src
RUN pip install --no-cache-dir build
COPY pyproject.toml README.md ./
COPY hub ./hub
COPY connectors ./connectors
COPY rules ./rules
RUN python -m build --wheel --outdir /dist

FROM python:3.11-slim
# On 0.0.0.0 `serve` refuses the demo password and a generated secret key, naming the fix:
# mount a config/ with agents of your own and pass CHANNELHUB_SECRET_KEY (docs/operations.md).
ENV PYTHONDONTWRITEBYTECODE=1 PYTHONUNBUFFERED=1 CHANNELHUB_HOST=0.0.0.0
RUN useradd --system --create-home --home-dir /app --uid 10001 channelhub
COPY --from=build /dist/*.whl /tmp/
RUN pip install --no-cache-dir /tmp/*.whl && rm /tmp/*.whl
WORKDIR /app
COPY --chown=channelhub:channelhub config ./config
RUN mkdir -p /app/data && chown channelhub:channelhub /app/data
USER channelhub
VOLUME ["/app/config", "/app/data"]
EXPOSE 8080
HEALTHCHECK --interval=30s --timeout=3s --start-period=20s --retries=3 \
  CMD python -c "import urllib.request,sys; urllib.request.urlopen('http://127.0.0.1:8080/healthz', timeout=2); sys.exit(0)"
ENTRYPOINT ["channelhub"]
CMD ["serve", "--config", "/app/config/hub.yaml"]
