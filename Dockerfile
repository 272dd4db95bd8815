# One image for every RidePulse service: `docker run <image> run <service>`.
# `--build-arg EXTRAS=load` adds the locust load generator (docker-compose.yml's load profile).
FROM python:3.11-slim

ENV PYTHONDONTWRITEBYTECODE=1 \
    PYTHONUNBUFFERED=1 \
    PIP_NO_CACHE_DIR=1 \
    PIP_DISABLE_PIP_VERSION_CHECK=1 \
    RIDEPULSE_HOST=0.0.0.0 \
    RIDEPULSE_DATA_DIR=/var/lib/ridepulse

WORKDIR /app

# Pinned dependencies first, read from pyproject alone, so a code change does not reinstall them.
COPY pyproject.toml ./
RUN python -c "import tomllib; print('\n'.join(tomllib.load(open('pyproject.toml', 'rb'))['project']['dependencies']))" \
        > /tmp/requirements.txt \
    && pip install -r /tmp/requirements.txt

COPY . .
ARG EXTRAS=""
RUN pip install ".${EXTRAS:+[$EXTRAS]}" \
    && useradd --system --uid 10001 --home-dir /var/lib/ridepulse --create-home ridepulse

# The source stays in /app only so `locust -f loadtests/locustfile.py` finds the locustfile.
USER ridepulse
ENTRYPOINT ["ridepulse"]
CMD ["--help"]
