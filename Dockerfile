# The web process: no torch, no GPU. Also runs the one-shot `migrate` service.
FROM python:3.11-slim
ENV PYTHONDONTWRITEBYTECODE=1 PYTHONUNBUFFERED=1 HF_HUB_OFFLINE=1 STUDIO_DATA_DIR=/data
WORKDIR /srv/studio
COPY pyproject.toml README.md alembic.ini ./
COPY app ./app
COPY worker ./worker
COPY planner ./planner
COPY datacheck ./datacheck
COPY migrations ./migrations
COPY templates ./templates
COPY static ./static
COPY examples ./examples
RUN pip install --no-cache-dir -e . && useradd --create-home --uid 1000 studio \
    && mkdir -p /data && chown studio /data
USER studio
EXPOSE 8000
CMD ["studio", "serve", "--host", "0.0.0.0", "--port", "8000"]
