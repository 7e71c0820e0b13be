# The one image for the API, the Celery workers, beat and Flower (docker-compose.celery.yml).
FROM python:3.11-slim

ENV PYTHONDONTWRITEBYTECODE=1 \
    PYTHONUNBUFFERED=1 \
    PIP_NO_CACHE_DIR=1 \
    PIP_DISABLE_PIP_VERSION_CHECK=1

# Tesseract for OCR jobs; fonts for the PDF and chart builders.
RUN apt-get update \
    && apt-get install -y --no-install-recommends tesseract-ocr tesseract-ocr-eng fonts-dejavu-core \
    && rm -rf /var/lib/apt/lists/*

WORKDIR /app/backend

# Dependencies first, from pyproject.toml alone, so a code change does not reinstall them.
COPY backend/pyproject.toml ./
RUN python -c "import tomllib; d = tomllib.load(open('pyproject.toml', 'rb')); \
print('\n'.join(d['project']['dependencies']))" > /tmp/requirements.txt \
    && pip install -r /tmp/requirements.txt \
    && rm /tmp/requirements.txt

# Editable install: `reportctl` runs this tree, whose alembic/ and celery_manager.py sit
# next to the package (migrations are found relative to the source).
COPY backend/ ./
# `--help` imports every command's module: a runtime import of a dev-only dependency fails the
# build here rather than every `reportctl` in production (tests/test_packaging.py checks too).
RUN pip install --no-deps -e . \
    && reportctl --help >/dev/null \
    && python celery_manager.py --help >/dev/null \
    && useradd --create-home --uid 10001 app \
    && mkdir -p /data/storage /app/var /tmp/prometheus \
    && chown -R app:app /data /app/var /tmp/prometheus

USER app
ENV ENVIRONMENT=prod \
    VAR_DIR=/app/var \
    STORAGE_ROOT=/data/storage \
    PROMETHEUS_MULTIPROC_DIR=/tmp/prometheus

# Each service's health check is in docker-compose.celery.yml (an API, a worker and beat are
# healthy in different ways).
EXPOSE 8000 5555 9808
CMD ["reportctl", "serve", "--host", "0.0.0.0", "--port", "8000"]
